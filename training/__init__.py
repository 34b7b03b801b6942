"""What a training run needs besides the model, the data and the step (used by train.py,
sweep.py and report.py):

  run_directory   the run directory's files and rules: one writer (an OS lock), the config a
                  run was started with and what a rerun may change, metrics rows that never
                  outrun the checkpoint they resume from, the "finished" rule, atomic writes.
  checkpoints     orbax checkpoints with SHA-256 digests: save, restore the newest intact one
                  (moving unusable ones aside), `load_checkpoint` for notebooks.
  progress        one clock for wall time, images/s and ETA, and the progress line.
  signals         SIGINT/SIGTERM as a request to save and stop.
"""
