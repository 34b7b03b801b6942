"""What a training run needs besides the model and the data (used by train.py, sweep.py,
evaluate.py, predict.py and reporting/; docs/architecture.md has the whole map, in the
order the modules import each other):

  provenance         which code trained a run (commit, uncommitted changes, versions).
  records            the records' schema: a metrics row, the summary, the dataset and
                     config records, an evaluation, and the values derived from them.
  run_directory      the run directory's files and rules: one writer (an OS lock), the
                     config a run was started with and what a rerun may change, metrics
                     rows that never outrun the checkpoint they resume from, the
                     "finished" rule, a sweep's layout.
  tensorboard        a run's metrics as TensorBoard events, kept in step with its rows.
  checkpoints        orbax checkpoints with SHA-256 digests: save, restore the newest
                     intact one (moving unusable ones aside), `load_checkpoint`.
  export             a finished run's model: written, checked whole and against its run,
                     portable (`forward.jax`), older exports upgraded.
  disk_space         a full disk as one line.
  progress           the run's clock (wall time, images/s) and the progress line (ETA).
  signals            SIGINT/SIGTERM as a request to save and stop; several processes
                     agree on the step.
  devices            one CPU device per core; a mesh the batch divides.
  compilation_cache  JAX's persistent compilation cache.
  profiler           a jax.profiler trace of a few training steps (config.profile_steps).
  figures            figures outside pyplot (no backend state); one run's curves.
  command_line       one-line errors for bad flags and config files.
  supervisor         a multi-process run's parent process: one line naming a lost
                     process where JAX would abort with a dump.
  process            what the scripts set up in their own process (logs, the compilation
                     cache, CPU devices, jax.distributed); the library never calls it.
  exit_codes         how an entry point ends: one exit status per kind of ending, and
                     its one line.
  optimizer          SGD with momentum, weight decay on named parameters, the schedule.
  steps              what the devices run: the train and evaluation steps, the probes of
                     the activation statistics, the random streams, their jitted forms.
  evaluation         the one evaluation component (`Evaluator`).
  builder            the one way a config becomes a run's parts (`data_mesh`, `build`,
                     `setup`).
  divergence         when a run counts as diverged, and how to go on.
  resume             where a run starts: its checkpoint, config.init_from's, or fresh.
  finish             how a run finishes (the summary last) and what a finished run lacks.
"""
