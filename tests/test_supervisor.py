"""training/supervisor.py: a child's exit passed on, signals forwarded once, and JAX's
termination of a multi-process run's survivor replaced by one line naming the lost process."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import REPO
from training import supervisor

# What JAX 0.10's coordination client writes before it aborts a survivor (as seen, abridged).
LOST_WORKER = (
    "F1201 23:10:02.1 12 client.cc:80] Terminating process because the JAX distributed "
    "service detected fatal errors. This most likely indicates that another task died; see "
    "the other task logs for more details. Disable Python buffering, i.e. `python -u`, to be "
    "sure to see all the previous output. absl::Status: UNAVAILABLE: The following tasks are "
    "unhealthy (stopped sending heartbeats):\n1\nThe tasks have crashed. Check the task "
    "logs for an earlier error, or scheduler events (e.g. preemption, eviction) to debug "
    "further. [type.googleapis.com/tensorflow.CoordinationServiceError='']\n")
LOST_COORDINATOR = (
    "F1201 23:10:02.1 12 client.cc:80] Terminating process because the JAX distributed "
    "service detected fatal errors. This most likely indicates that another task died; see "
    "the other task logs for more details. Disable Python buffering, i.e. `python -u`, to be "
    "sure to see all the previous output. absl::Status: UNAVAILABLE: Failed to send RPC to "
    "coordination service. Either the leader task was preempted/died/restarted unexpectedly "
    "or this task is experiencing network issues.\n")


def supervised(child: str, *, process_id=1, num_processes=2, **kwargs):
  """`python -c` a supervisor of `python -c child` (signal handlers need a main thread)."""
  parent = (f"import sys; from training import supervisor; sys.exit(supervisor.supervise("
            f"['-c', {child!r}], {process_id!r}, {num_processes!r}))")
  return subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, **kwargs)


def test_the_childs_output_and_exit_status_pass_through():
  proc = supervised("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
  out, err = proc.communicate(timeout=60)
  assert (proc.returncode, out, err) == (3, "out\n", "err\n")


def test_a_child_ended_by_a_signal_exits_128_plus_the_signal():
  proc = supervised("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
  proc.communicate(timeout=60)
  assert proc.returncode == 128 + signal.SIGKILL


def test_the_child_knows_it_is_the_child():
  proc = supervised("from training import supervisor; print(supervisor.is_child())")
  assert proc.communicate(timeout=60)[0] == "True\n"
  assert not supervisor.is_child()


@pytest.mark.parametrize("report,lost", [(LOST_WORKER, "[1]"), (LOST_COORDINATOR, "[0]")])
def test_jax_terminating_the_child_becomes_one_line_naming_the_lost_process(report, lost):
  child = textwrap.dedent(f"""
      import faulthandler, os, sys
      faulthandler.enable()
      print("training", file=sys.stderr, flush=True)
      sys.stderr.write({report!r}); sys.stderr.flush()
      os.abort()
  """)
  proc = supervised(child, process_id=0 if lost == "[1]" else 1)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 1
  lines = err.splitlines()
  assert lines[0] == "training" and len(lines) == 2, err
  assert lines[1].startswith(f"Lost a process of the run: process(es) {lost} of 2 stopped "
                             "answering; JAX's coordination service ended process ")
  assert lines[1].endswith("Rerun every process to resume from the last checkpoint.")
  assert "Fatal Python error" not in err and "Terminating process" not in err


def test_a_lost_process_the_child_reported_itself_is_one_line_even_if_jax_ends_it_after():
  # The race of a lost process 1: process 0's collective fails and it says so (through
  # training/process.py), while JAX's service, which it hosts, ends it for the same loss.
  child = textwrap.dedent(f"""
      import faulthandler, os, sys
      from absl import logging
      from training import process
      faulthandler.enable()
      process.jax.process_count = lambda: 2  # a run of two processes,
      process.jax.process_index = lambda: 0  # of which this is process 0
      os._exit = lambda status: None  # its exit comes after JAX's below
      process.exit_naming_lost_processes(ValueError("Gloo: connection closed by peer"))
      sys.stderr.write({LOST_WORKER!r}); sys.stderr.flush()
      os.abort()
  """)
  proc = supervised(child, process_id=0)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 1, err
  assert err.count("stopped answering") == 1, err
  assert "process(es) [1] of 2 stopped answering" in err
  assert "Fatal Python error" not in err and "Terminating process" not in err


def test_the_report_names_the_unhealthy_tasks_but_never_this_process():
  assert supervisor.lost_processes(LOST_WORKER, 0) == [1]
  assert supervisor.lost_processes(LOST_WORKER, 1) == []
  assert supervisor.lost_processes(LOST_COORDINATOR, 1) == [0]
  named = LOST_WORKER.replace("):\n1\n", "):\n/job:jax_worker/replica:0/task:2, "
                                         "/job:jax_worker/replica:0/task:3\n")
  assert supervisor.lost_processes(named, 0) == [2, 3]
  assert supervisor.lost_processes("absl::Status: INTERNAL: something else", 1) is None
  line = supervisor.termination_line("absl::Status: INTERNAL: x", None, None)
  assert line.startswith("Lost a process of the run: another process (or the coordinator) "
                         "stopped answering; JAX's coordination service ended this process "
                         "(INTERNAL: x).")


def test_a_signal_to_the_supervisor_reaches_the_child_once():
  child = textwrap.dedent("""
      import signal, sys, time
      got = []
      signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
      print("ready", flush=True)
      deadline = time.time() + 30
      while not got and time.time() < deadline:
        time.sleep(0.05)
      time.sleep(0.5)  # a second delivery would land here
      print("signals", len(got), flush=True)
      sys.exit(130)
  """)
  proc = supervised(child, start_new_session=True)
  assert proc.stdout.readline() == "ready\n"
  os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a cluster or a terminal would
  out, err = proc.communicate(timeout=60)
  assert (proc.returncode, out) == (130, "signals 1\n"), err


def test_killing_the_supervisor_kills_the_child():
  child = ("import os, time; from training import supervisor; "
           "supervisor.die_with_supervisor(); print(os.getpid(), flush=True); time.sleep(120)")
  proc = supervised(child)
  pid = int(proc.stdout.readline())
  proc.kill()
  proc.wait(timeout=60)
  deadline = time.time() + 10
  while time.time() < deadline:
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return
    time.sleep(0.05)
  pytest.fail(f"the child {pid} outlived its supervisor")
