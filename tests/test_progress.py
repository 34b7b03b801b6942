"""training/progress.py: the run's clock (metrics.jsonl's wall_time and images_per_sec)."""

import math

import pytest

from training import progress


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


def test_the_clock_continues_from_a_resumed_runs_elapsed_time():
  clock = FakeClock()
  run = progress.RunClock(elapsed=30.0, clock=clock)
  assert run.elapsed() == 30.0
  clock.now += 12.5
  assert run.elapsed() == 42.5


def test_throughput_counts_training_images_since_the_last_window():
  clock = FakeClock()
  run = progress.RunClock(clock=clock)
  run.count(64)
  clock.now += 2.0
  run.count(64)
  assert run.images_per_sec() == 64.0
  run.new_window()  # after an evaluation: its time is not training time
  clock.now += 1.0
  run.count(10)
  assert run.images_per_sec() == 10.0
  assert run.elapsed() == 3.0


def test_throughput_of_an_empty_window_is_zero_not_an_error():
  assert progress.RunClock(clock=FakeClock()).images_per_sec() == 0.0


def test_format_seconds():
  assert progress.format_seconds(3725.9) == "1:02:05"
  assert progress.format_seconds(float("nan")) == "?"


def test_the_progress_line_logs_the_loss_steps_only_when_not_a_terminal(caplog):
  import logging  # pylint: disable=g-import-not-at-top
  line = progress.ProgressLine(total_steps=10, steps_per_epoch=5, first_step=0, enabled=True)
  line.tty = False
  with caplog.at_level(logging.INFO):
    line.update(5, None, 100.0)
    line.update(6, 0.25, 100.0)
  assert "step 5/" not in caplog.text
  assert "epoch   1.20 step 6/10 loss 0.2500" in caplog.text


def test_the_eta_leaves_out_the_compilation_before_the_first_progress_line():
  # The first step compiles for 60 s, then each step takes 1 s; lines every 10 steps.
  now = [0.0]
  line = progress.ProgressLine(total_steps=110, steps_per_epoch=10, first_step=0,
                               enabled=True, clock=lambda: now[0])
  now[0] = 60.0 + 10
  assert math.isnan(line.eta(10))       # no interval measured yet: "?"
  now[0] += 10
  assert line.eta(20) == pytest.approx(90.0)  # 90 steps left at 1 step/s, not 4.3x that
  now[0] += 10
  assert line.eta(30) == pytest.approx(80.0)
