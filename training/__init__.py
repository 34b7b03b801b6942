"""What a training run needs besides the model, the data and the step (used by train.py,
sweep.py and report.py; docs/architecture.md has the whole map):

  run_directory      the run directory's files and rules: one writer (an OS lock), the
                     config a run was started with and what a rerun may change, metrics
                     rows that never outrun the checkpoint they resume from, the
                     "finished" rule, atomic writes, a sweep's layout.
  records            the records' schema: a metrics row, the summary, the dataset and
                     config records, and the values derived from them.
  checkpoints        orbax checkpoints with SHA-256 digests: save, restore the newest
                     intact one (moving unusable ones aside), `load_checkpoint`.
  tensorboard        a run's metrics as TensorBoard events, kept in step with its rows.
  progress           the run's clock (wall time, images/s) and the progress line (ETA).
  signals            SIGINT/SIGTERM as a request to save and stop; several processes
                     agree on the step.
  devices            one CPU device per core; a mesh the batch divides.
  compilation_cache  JAX's persistent compilation cache.
  figures            figures outside pyplot (no backend state); one run's curves.
  command_line       one-line errors for bad --config.KEY=VALUE flags.
  process            what the scripts set up in their own process (logs, the compilation
                     cache, CPU devices, jax.distributed); the library never calls it.
  supervisor         a multi-process run's parent process: one line naming a lost
                     process where JAX would abort with a dump.
  exit_codes         how an entry point ends: one exit status per kind of ending, and
                     its one line.
"""
