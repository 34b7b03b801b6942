"""`config.profile_steps`: a `jax.profiler` trace of a few training steps, in WORKDIR/profile/.

    python train.py --config=... --workdir=RUN --config.profile_steps=20
    tensorboard --logdir RUN/profile     # the Profile tab (pip install -e ".[profile]")

The trace starts at the end of the session's first logged interval (its first
`log_every_steps` boundary: the first step's compilation and the input pipeline's start are
behind it) and covers the next `profile_steps` steps; it waits for them to finish before it
stops, and a run that ends or fails first stops it there. `jax.profiler.start_trace` writes
`plugins/profile/<time>/<host>.xplane.pb` under the directory, the layout TensorBoard's
profile plugin reads. Process 0 traces its own devices; each session of a resumed run
traces again, into a new folder. The key changes nothing the run computes
(run_directory.NEUTRAL_KEYS).
"""

from __future__ import annotations

from typing import Any

from absl import logging
import jax


class StepProfiler:
  """Traces `steps` training steps after the first logged interval (0: none); use as a
  context manager around the loop, calling `after_step` after each step."""

  def __init__(self, directory: str, steps: int, enabled: bool = True):
    self.directory, self.steps = directory, steps
    self.enabled = enabled and steps > 0
    self._stop_after: int | None = None  # while tracing: the last step it covers
    self._first = 0  # the first step traced
    self._traced = False

  def after_step(self, step: int, logged: bool, state: Any, last: bool = False) -> None:
    """After training step `step` (1-based); `logged`: it ended a logged interval; `last`:
    the run's last step; `state`: its output, waited for before the trace stops."""
    if not self.enabled:
      return
    if self._stop_after is None:
      if logged and not last and not self._traced:
        jax.profiler.start_trace(self.directory)
        self._first, self._stop_after = step + 1, step + self.steps
        logging.info("Profiling steps %d to %d into %s ...", step + 1, self._stop_after,
                     self.directory)
    elif step >= self._stop_after or last:
      self.stop(state, step)

  def stop(self, state: Any = None, step: int | None = None) -> None:
    """Ends the trace after `state` (that of step `step`) is computed, if one runs."""
    if self._stop_after is None:
      return
    try:
      if state is not None:
        jax.block_until_ready(state)
    finally:
      jax.profiler.stop_trace()
      self._stop_after, self._traced = None, True
    if step is not None:
      logging.info("Wrote the profile of steps %d to %d to %s (tensorboard --logdir %s).",
                   self._first, step, self.directory, self.directory)
    else:
      logging.info("Wrote the profile, cut short, to %s.", self.directory)

  def __enter__(self) -> StepProfiler:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.stop()
