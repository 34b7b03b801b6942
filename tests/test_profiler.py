"""training/profiler.py: which steps `config.profile_steps` traces (the trace's file is
checked on a real run in tests/test_train.py)."""

import jax
import pytest

from training import profiler


@pytest.fixture
def calls(monkeypatch):
  seen = []
  monkeypatch.setattr(jax.profiler, "start_trace", lambda d: seen.append(("start", d)))
  monkeypatch.setattr(jax.profiler, "stop_trace", lambda: seen.append(("stop",)))
  return seen


def run(p, total, log_every, last_step=None):
  """Drives `p` as the loop does; returns the steps after which the trace was on."""
  traced = []
  for step in range(1, total + 1):
    p.after_step(step, logged=step % log_every == 0, state=None,
                 last=step == (last_step or total))
    if p._stop_after is not None:
      traced.append(step)
  return traced


def test_it_traces_the_n_steps_after_the_first_logged_interval(calls):
  with profiler.StepProfiler("/p", 3) as p:
    on = run(p, total=20, log_every=5)
  # Started after step 5 (the first logged one), stopped after step 8: steps 6, 7 and 8.
  assert calls == [("start", "/p"), ("stop",)]
  assert on == [5, 6, 7]
  assert (p._first, p._traced) == (6, True)


def test_it_traces_once_per_session_though_more_intervals_are_logged(calls):
  p = profiler.StepProfiler("/p", 2)
  run(p, total=40, log_every=5)
  assert calls == [("start", "/p"), ("stop",)]


def test_the_runs_last_step_stops_the_trace_early(calls):
  p = profiler.StepProfiler("/p", 10)
  run(p, total=8, log_every=5)
  assert calls == [("start", "/p"), ("stop",)]


def test_a_run_that_ends_while_tracing_stops_it_on_leaving(calls):
  with profiler.StepProfiler("/p", 10) as p:
    for step in range(1, 7):
      p.after_step(step, logged=step == 5, state=None)
    assert calls == [("start", "/p")]
  assert calls == [("start", "/p"), ("stop",)]


@pytest.mark.parametrize("steps,enabled", [(0, True), (5, False)])
def test_nothing_is_traced_when_off_or_on_another_process(calls, steps, enabled):
  with profiler.StepProfiler("/p", steps, enabled=enabled) as p:
    run(p, total=20, log_every=5)
  assert calls == []


def test_a_first_logged_step_that_is_the_last_starts_no_trace(calls):
  p = profiler.StepProfiler("/p", 3)
  run(p, total=5, log_every=5)
  assert calls == []
