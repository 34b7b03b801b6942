"""A run's clock (wall time and training throughput) and the progress line (with its ETA).

`wall_time` in metrics.jsonl is the seconds of training and evaluation that produced the
row: `RunClock` starts when the loop starts (after loading data), continues from the value
saved in the checkpoint when a run resumes, and does not count work a crash threw away.
`images_per_sec` is training throughput since the previous row, evaluation excluded. The
progress line's ETA is the steps left at the pace of this process's steps since its first
progress line (not the run's clock: a resumed run's earlier processes do not count; and not
from the start, which would count the compilation of the first step as training and put
the first ETAs several times too far out), and a terminal and a log file get the same line.

Every `log_every_steps` the loop also records a step row (steps.jsonl, records.StepRow):
the training loss averaged over the steps since the previous one (`IntervalLoss`, from the
epoch's running sums the loop fetches there anyway: no fetch of its own) and the images/s
over them (`RunClock.interval_images_per_sec`: evaluations, and the compilation of a
session's first step, left out); the progress line shows the same loss. The first
interval after a resume starts at the checkpoint's step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from absl import logging


class RunClock:
  """Wall time of the run (resumed from `elapsed` seconds) and training throughput."""

  def __init__(self, elapsed: float = 0.0, clock=time.monotonic):
    self._clock = clock
    self._origin = clock() - elapsed
    self._window_start, self._window_images = clock(), 0
    self._interval_start, self._interval_images = clock(), 0

  def elapsed(self) -> float:
    """Seconds of the run so far, across resumes."""
    return self._clock() - self._origin

  def count(self, images: int) -> None:
    self._window_images += images
    self._interval_images += images

  def images_per_sec(self) -> float:
    """Training images per second since the last `new_window` (call it after each
    evaluation, so that evaluations are left out)."""
    return self._window_images / max(self._clock() - self._window_start, 1e-9)

  def new_window(self) -> None:
    """Starts the throughput windows of both `images_per_sec` and the step rows."""
    self._window_start, self._window_images = self._clock(), 0
    self.new_interval()

  def interval_images_per_sec(self) -> float:
    """Training images per second since the previous call (or `new_window`,
    `new_interval`), for a step row; starts the next interval."""
    now = self._clock()
    rate = self._interval_images / max(now - self._interval_start, 1e-9)
    self._interval_start, self._interval_images = now, 0
    return rate

  def new_interval(self) -> None:
    """Starts the step rows' interval afresh, e.g. after the first step's compilation."""
    self._interval_start, self._interval_images = self._clock(), 0


class IntervalLoss:
  """The mean training loss over the steps since the last `take`, from the epoch's
  running sums (`steps.add_metrics`) each time the loop has them on the host anyway.

      interval = IntervalLoss(jax.device_get(epoch_metrics))  # the sums it starts from
      interval.observe(sums)   # at each log step and epoch end, the sums fetched there
      interval.new_epoch()     # the sums start again from zero
      interval.take()          # the mean since the last take; starts the next interval
  """

  def __init__(self, sums: dict[str, Any]):
    self._loss, self._count = _sum(sums, "loss"), _sum(sums, "count")
    self._interval_loss = self._interval_count = 0.0

  def observe(self, sums: dict[str, Any]) -> None:
    loss, count = _sum(sums, "loss"), _sum(sums, "count")
    self._interval_loss += loss - self._loss
    self._interval_count += count - self._count
    self._loss, self._count = loss, count

  def new_epoch(self) -> None:
    self._loss = self._count = 0.0

  def take(self) -> float:
    """The mean loss per example since the last take (nan if no step ran)."""
    mean = self._interval_loss / self._interval_count if self._interval_count else math.nan
    self._interval_loss = self._interval_count = 0.0
    return mean


def _sum(sums: dict[str, Any], key: str) -> float:
  return float(sums[key])  # the device's float32 sums, subtracted in Python's 64 bits


class ProgressLine:
  """A one-line progress bar on a terminal (process 0), log lines otherwise; both report
  the same step, loss, images/s and ETA."""

  def __init__(self, total_steps: int, steps_per_epoch: int, first_step: int, enabled: bool,
               clock=time.monotonic):
    self.total, self.per_epoch, self.first_step = total_steps, steps_per_epoch, first_step
    self.enabled = enabled
    self.tty = enabled and sys.stderr.isatty()
    self._clock = clock
    self._mark: tuple[int, float] | None = None  # (step, time) of the first progress line

  def eta(self, step: int) -> float:
    """Seconds left at the pace since the first progress line; nan until there is one
    interval to measure (the first line comes after the compiled first step)."""
    now = self._clock()
    if self._mark is None:
      self._mark = (step, now)
    mark_step, mark_time = self._mark
    rate = (step - mark_step) / max(now - mark_time, 1e-9)
    return (self.total - step) / rate if rate > 0 else math.nan

  def update(self, step: int, loss: float | None, images_per_sec: float) -> None:
    if not self.enabled or not (self.tty or loss is not None):
      return
    loss_text = f"loss {loss:.4f} " if loss is not None else ""
    text = (f"epoch {step / self.per_epoch:6.2f} step {step}/{self.total} {loss_text}"
            f"{images_per_sec:7.1f} img/s ETA {format_seconds(self.eta(step))}")
    if self.tty:
      filled = int(24 * step / max(self.total, 1))
      sys.stderr.write(f"\r[{'=' * filled}{' ' * (24 - filled)}] {text}")
      sys.stderr.flush()
    else:
      logging.info(text)

  def clear(self) -> None:
    if self.tty:
      sys.stderr.write("\n")


def format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
