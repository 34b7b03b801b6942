"""evaluate.py under faults: a full disk, a kill, Ctrl-C. Each ends with one line, and
evaluations/ never holds a partial result or a temporary file for long."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import evaluate
from tests.helpers import REPO, copy_run, file_digests
from training import run_directory, signals

# evaluate.py's command line with a fault: FAULT=full, the disk fills as the evaluation is
# written (its fsync fails); FAULT=sigint, Ctrl-C (SIGINT to itself) while the data loads.
EVALUATE_WITH_A_FAULT = textwrap.dedent("""
    import errno, os, signal
    from absl import app
    import evaluate
    from training import builder, command_line
    if os.environ["FAULT"] == "full":
      fsync = os.fsync
      def full(fd):
        if "/evaluations/" in os.readlink(f"/proc/self/fd/{fd}"):
          raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)
      os.fsync = full
    else:
      load = builder.load_dataset
      def interrupted(config, **options):
        os.kill(os.getpid(), signal.SIGINT)
        return load(config, **options)
      builder.load_dataset = interrupted
    evaluate._define_flags()
    app.run(evaluate.main, flags_parser=command_line.parse_flags)
""")


def _evaluate_with(fault, run):
  return subprocess.run([sys.executable, "-c", EVALUATE_WITH_A_FAULT, f"--workdir={run}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": str(REPO), "FAULT": fault})


def test_a_full_disk_is_one_line_about_the_evaluation_and_leaves_no_temporary_file(
    prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  before = file_digests(run)
  out = _evaluate_with("full", run)
  assert out.returncode == 1, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert f"No space left on the disk of {run} (writing {run}/evaluations/" in last, last
  assert last.endswith("The evaluation was not written, and the run's record is untouched. "
                       "Free space there (or raise the quota) and rerun the same command.")
  assert "checkpoint" not in last and "Traceback" not in out.stderr
  assert os.listdir(os.path.join(run, run_directory.EVALUATIONS)) == []
  assert file_digests(run) == before


def test_ctrl_c_while_the_data_loads_exits_130_in_one_line_and_writes_nothing(prelu_run,
                                                                             tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  before = file_digests(run)
  out = _evaluate_with("sigint", run)
  assert out.returncode == 130, out.stderr[-3000:]
  assert out.stderr.strip().splitlines()[-1].endswith(
      "Stopped by SIGINT before the evaluation was written: nothing partial is on disk. "
      "Rerun the same command to evaluate."), out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  assert not os.path.exists(os.path.join(run, run_directory.EVALUATIONS))
  assert file_digests(run) == before


def test_the_temporary_file_of_a_killed_evaluation_is_removed_by_the_next(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  evaluations = os.path.join(run, run_directory.EVALUATIONS)
  os.makedirs(evaluations)
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  host = socket.gethostname()
  left = [f"digits-test.json.tmp{dead.pid}@{host}-k3j_9x0a",  # SIGKILLed mid-write
          f"digits-test.json.tmp{dead.pid}"]  # and older code's
  running = f"other.json.tmp{os.getpid()}@{host}-a8b7c6d5"  # an evaluation still writing
  for name in left + [running]:
    open(os.path.join(evaluations, name), "w").close()
  evaluate.evaluate_run(run)
  assert sorted(os.listdir(evaluations)) == ["digits-test.json", running]


def test_a_signal_during_an_evaluation_in_process_is_not_swallowed(prelu_run, tmp_path):
  # A library may swallow the KeyboardInterrupt (one raised in a callback from C is only
  # printed); the stop request still stops the evaluation before it writes.
  run = copy_run(prelu_run, tmp_path / "run")
  with signals.RaiseOnSignal() as stop:
    stop.received = signal.SIGINT  # received, and its exception swallowed on the way
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
      evaluate.evaluate_run(run, stop=stop)
  assert not os.path.exists(os.path.join(run, run_directory.EVALUATIONS, "digits-test.json"))
