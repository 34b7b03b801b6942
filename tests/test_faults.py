"""What a run directory guarantees under faults: refused reruns, one writer, kill -9 at any
point, damaged checkpoints, and signals to a sweep (training/run_directory.py's rules)."""

import glob
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import sweep
import train
from configs import default as default_config
from tests.helpers import (REPO, copy_run, file_digests, final_params, holding_env,
                           tiny_config)
from training import checkpoints, export, finish, run_directory, tensorboard

# 3 steps an epoch; evaluations at steps 3, 6, 9; checkpoints at 6 and 9 (the end).
FAULT_CONFIG = dict(num_epochs=3, checkpoint_every_epochs=2, keep_checkpoints=3)
TIMING_KEYS = ("wall_time", "images_per_sec")


def rows(workdir):
  return run_directory.read_run(str(workdir)).rows


def untimed(rs):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]


def same_rows(a, b):
  return untimed(rows(a)) == untimed(rows(b))


def assert_bit_identical(a, b):
  assert same_rows(a, b), (rows(a), rows(b))
  for x, y in zip(final_params(a), final_params(b), strict=True):
    np.testing.assert_array_equal(x, y)


def assert_same_step_rows(a, b):
  """Run `a`'s step rows are reference `b`'s, timing aside: each step once, in order (a
  resume from an epoch's end starts no interval afresh, so the losses are the same too)."""
  step_rows = run_directory.read_steps(str(a))
  assert [r["step"] for r in step_rows] == [2, 4, 6, 8]  # FAULT_CONFIG logs every 2 steps
  assert untimed(step_rows) == untimed(run_directory.read_steps(str(b))), step_rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of FAULT_CONFIG."""
  workdir = tmp_path_factory.mktemp("reference")
  train.train_and_evaluate(tiny_config(**FAULT_CONFIG), str(workdir))
  return workdir


# --- A rerun with another config ---------------------------------------------------------------


@pytest.mark.parametrize("key,value", [
    ("rectifier", "relu"), ("rectifier", "prelu"), ("batch_size", 4), ("seed", 1),
    ("model_options.width", 0.125), ("model", "inception_bn"), ("learning_rate", 0.05),
    ("lr_decay_epochs", (1,)), ("dtype", "bfloat16"), ("train_examples", 500),
    ("augment.flip", True), ("train_eval_examples", 100), ("num_epochs", 2),
])
def test_a_rerun_with_a_result_changing_key_is_refused_and_writes_nothing(reference, key, value):
  before = file_digests(reference)
  config = tiny_config(**FAULT_CONFIG)
  if key == "model":
    config.model_options = default_config.model_options("inception_bn", width=0.0625)
  config.update_from_flattened_dict({key: value})
  with pytest.raises(run_directory.ConfigMismatchError, match=rf"  {key}: .* \(recorded\) -> "):
    train.train_and_evaluate(config, str(reference))
  assert file_digests(reference) == before


def test_a_finished_run_rerun_with_neutral_changes_returns_its_summary(reference):
  before = file_digests(reference)
  config = tiny_config(**{**FAULT_CONFIG, "eval_every_epochs": 2, "keep_checkpoints": 1,
                          "log_every_steps": 1})
  summary = train.train_and_evaluate(config, str(reference))
  assert summary == run_directory.read_run(str(reference)).summary
  assert file_digests(reference) == before


@pytest.mark.slow
def test_a_larger_num_epochs_continues_the_run(reference, tmp_path):
  shorter = tmp_path / "shorter"
  train.train_and_evaluate(tiny_config(**{**FAULT_CONFIG, "num_epochs": 2}), str(shorter))
  assert run_directory.read_run(str(shorter)).finished
  train.train_and_evaluate(tiny_config(**FAULT_CONFIG), str(shorter))
  assert run_directory.read_run(str(shorter)).config["num_epochs"] == 3
  assert_bit_identical(shorter, reference)


def _edit_config_json(run, **values):
  path = os.path.join(run, run_directory.CONFIG)
  record = run_directory.read_json(path)
  record.update(values)
  run_directory.write_json(path, record)


def test_a_hand_edited_config_json_is_refused_naming_the_changed_keys(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  _edit_config_json(run, learning_rate=0.05, seed=3)
  before = file_digests(run)
  with pytest.raises(run_directory.ConfigMismatchError,
                     match=r"(?s)config.json was changed after the checkpoint at step 6 .*"
                           r"  learning_rate: 0.02 \(the checkpoint's copy\) -> 0.05 "
                           r"\(config.json\)\n  seed: 0 .* -> 3 .*--config.init_from="):
    train.train_and_evaluate(tiny_config("prelu", learning_rate=0.05, seed=3), run)
  assert file_digests(run) == before


def test_a_hand_edited_neutral_key_in_config_json_is_accepted(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  _edit_config_json(run, keep_checkpoints=5)
  summary = train.train_and_evaluate(tiny_config("prelu", keep_checkpoints=5), run)
  assert summary == run_directory.read_run(str(prelu_run)).summary


# --- One writer ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_training_on_a_workdir_in_use_stops_at_once(tmp_path):
  cmd = [sys.executable, "train.py", "--config=configs/quickstart.py", f"--workdir={tmp_path}",
         "--config.model_options.width=0.0625", "--config.batch_size=8",
         "--config.steps_per_epoch=30", "--config.num_epochs=2", "--config.eval_batch_size=120",
         "--config.eval_every_epochs=1"]
  first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  deadline = time.time() + 120
  while not (tmp_path / run_directory.CONFIG).exists() and time.time() < deadline:
    time.sleep(0.2)
  second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
  out = first.communicate(timeout=600)[0]
  assert first.returncode == 0, out[-3000:]
  assert second.returncode == 1
  assert f"is in use by pid {first.pid} on host" in second.stderr
  assert len(second.stderr.strip().splitlines()) == 1  # one line, no traceback
  assert [r["step"] for r in rows(tmp_path)] == [30, 60]


@pytest.mark.parametrize("script, record, flags", [
    ("train.py", run_directory.CONFIG, ["--config=configs/quickstart.py"]),
    ("report.py", f"relu/seed0/{run_directory.SUMMARY}", [])])
def test_a_damaged_record_is_one_line_naming_the_file(tmp_path, script, record, flags):
  (tmp_path / record).parent.mkdir(parents=True, exist_ok=True)
  (tmp_path / record).write_text('{"num_epochs": 2, }')
  (tmp_path / record).with_name(run_directory.METRICS).write_text('{"epoch": 1, "step": 3}\n')
  done = subprocess.run([sys.executable, script, f"--workdir={tmp_path}", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert f"{tmp_path / record} is damaged: not valid JSON" in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no traceback


# --- kill -9 at any point ------------------------------------------------------------------------

KILL_WORKER = textwrap.dedent("""
    import json, os, signal
    import ml_collections
    import orbax.checkpoint as ocp
    import input_pipeline, train
    from training import checkpoints, run_directory, tensorboard

    point, at = os.environ["KILL_AT"].split(":")
    at = int(at)
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if point == "row":      # right after the metrics row at step `at` was written
      append_row = run_directory.RunDirectory.append_row
      def patched(self, row):
        append_row(self, row)
        if row["step"] == at: die()
      run_directory.RunDirectory.append_row = patched
    elif point == "save":   # inside orbax's save of step `at`, before it is finalized
      save, write = checkpoints.Checkpoints.save, ocp.JsonCheckpointHandler.async_save
      saving = []
      def patched_save(self, step, *args, **kwargs):
        saving.append(step)
        return save(self, step, *args, **kwargs)
      def patched_write(self, *args, **kwargs):
        if saving[-1] == at: die()
        return write(self, *args, **kwargs)
      checkpoints.Checkpoints.save = patched_save
      ocp.JsonCheckpointHandler.async_save = patched_write
    elif point == "digest":  # step `at` finalized by orbax, its digest not yet written
      digests = checkpoints._digests
      def patched(step_dir):
        if os.path.basename(step_dir) == str(at): die()
        return digests(step_dir)
      checkpoints._digests = patched
    elif point == "step":   # while training step `at` + 1 (between checkpoints)
      iterator = input_pipeline.train_iterator
      def patched(*args, **kwargs):
        it, count = iterator(*args, **kwargs), [0]
        class Dying:
          get_state, set_state = it.get_state, it.set_state
          def __next__(self):
            count[0] += 1
            if count[0] > at: die()
            return next(it)
        return Dying()
      input_pipeline.train_iterator = patched
    train.train_and_evaluate(ml_collections.ConfigDict(json.loads(os.environ["CONFIG"])),
                             os.environ["WORKDIR"])
""")


@pytest.mark.parametrize("kill_at,rows_before,resumed_from", [
    ("row:3", [3], None),       # before the first checkpoint: a row no checkpoint backs
    ("save:6", [3, 6], None),   # during the first save: no checkpoint, both rows redone
    ("digest:6", [3, 6], 6),    # saved, digest not yet written: the only checkpoint is used
    ("step:7", [3, 6], 6),      # between checkpoints
    ("digest:9", [3, 6, 9], 6),  # the last save without its digest: an unfinished checkpoint
])
@pytest.mark.slow
def test_kill_9_then_resume_ends_bit_identical_with_unique_ordered_rows(
    reference, tmp_path, caplog, kill_at, rows_before, resumed_from):
  config = tiny_config(**FAULT_CONFIG)
  env = {**os.environ, "CONFIG": config.to_json(), "WORKDIR": str(tmp_path),
         "KILL_AT": kill_at, "PYTHONPATH": str(REPO)}
  killed = subprocess.run([sys.executable, "-c", KILL_WORKER], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert [r["step"] for r in rows(tmp_path)] == rows_before
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, str(tmp_path))
  resumed = "Resumed from the checkpoint at step" in caplog.text
  assert resumed == (resumed_from is not None)
  if resumed_from is not None:
    assert f"Resumed from the checkpoint at step {resumed_from} " in caplog.text
  assert [r["step"] for r in rows(tmp_path)] == [3, 6, 9]
  assert_bit_identical(tmp_path, reference)
  assert_same_step_rows(tmp_path, reference)
  # What TensorBoard shows follows the record: no point of the killed session survives.
  scalars = tensorboard.read_scalars(str(tmp_path))
  assert scalars["error/test"] == [
      (r["step"], pytest.approx(r["test_error"])) for r in rows(tmp_path)]
  assert scalars["train_step/loss"] == [
      (r["step"], pytest.approx(r["train_loss"])) for r in run_directory.read_steps(
          str(tmp_path))]
  aside = tmp_path / run_directory.UNUSABLE
  unusable = sorted(os.listdir(aside)) if aside.exists() else []
  assert unusable == (["9", "9.reason.txt"] if kill_at == "digest:9" else [])


# --- Stopped as it finished ---------------------------------------------------------------------


def test_a_run_stopped_between_its_summary_and_its_artefacts_is_completed_by_a_rerun(
    prelu_run, tmp_path, monkeypatch):
  run = copy_run(prelu_run, tmp_path / "run")
  summary = run_directory.read_run(run).summary
  (tmp_path / "run" / run_directory.CURVES).write_bytes(b"")
  shutil.rmtree(tmp_path / "run" / export.DIRECTORY)
  shutil.rmtree(tmp_path / "run" / tensorboard.DIRECTORY)
  assert finish.incomplete_artefacts(run_directory.read_run(run)) == [
      run_directory.CURVES, export.DIRECTORY, tensorboard.DIRECTORY]
  # When the summary is written every other artefact is already complete on disk, so a
  # kill right after it loses nothing.
  write_json = run_directory.write_json

  def checking_write_json(path, obj):
    if path.endswith(run_directory.SUMMARY):
      assert finish.incomplete_artefacts(run_directory.read_run(run)) == []
    write_json(path, obj)

  monkeypatch.setattr(run_directory, "write_json", checking_write_json)
  assert train.train_and_evaluate(tiny_config("prelu"), run) == summary
  assert finish.incomplete_artefacts(run_directory.read_run(run)) == []


def test_a_finished_run_without_its_final_checkpoint_is_returned_as_it_is(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=(run_directory.CHECKPOINTS,
                                                   tensorboard.DIRECTORY))
  before = file_digests(run)
  summary = train.train_and_evaluate(tiny_config("prelu"), run)
  assert summary == run_directory.read_run(str(prelu_run)).summary
  assert file_digests(run) == before  # nothing retrained, no row dropped


# --- A full disk ---------------------------------------------------------------------------------

FULL_DISK_WORKER = textwrap.dedent("""
    import errno, os
    from absl import app, logging
    import train
    from training import checkpoints, command_line, run_directory

    ENOSPC = os.strerror(errno.ENOSPC)
    if os.environ["FULL_AT"] == "save":  # as orbax reports it: its threads log, then a ValueError
      def full(self, step, *args, **kwargs):
        logging.error("_SignalingThread.run() raised an exception: RESOURCE_EXHAUSTED: "
                      "Failed to write 13232 bytes to file 12: %s [os_error_code='28']", ENOSPC)
        raise ValueError(f"RESOURCE_EXHAUSTED: Error writing: {ENOSPC} [os_error_code='28']")
      checkpoints.Checkpoints.save = full
    else:  # a record: the OSError itself
      def full(self, row):
        raise OSError(errno.ENOSPC, ENOSPC, self.file(run_directory.METRICS))
      run_directory.RunDirectory.append_row = full
    train._define_flags()
    app.run(train.main, flags_parser=command_line.parse_flags)
""")


@pytest.mark.slow
@pytest.mark.parametrize("full_at", ["save", "row"])
def test_a_full_disk_is_one_line_naming_the_directory_and_the_run_resumes(
    reference, tmp_path, full_at):
  config = tiny_config(**FAULT_CONFIG)
  config_file = tmp_path.parent / f"{tmp_path.name}-config.py"  # train.py's --config: a file
  config_file.write_text("import json, os, ml_collections\n"
                         "def get_config():\n"
                         "  return ml_collections.ConfigDict(json.loads(os.environ['CONFIG']))\n")
  full = subprocess.run(
      [sys.executable, "-c", FULL_DISK_WORKER, f"--config={config_file}",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "PYTHONPATH": str(REPO), "FULL_AT": full_at,
           "CONFIG": config.to_json()})
  assert full.returncode == 1, full.stderr[-3000:]
  last = full.stderr.strip().splitlines()[-1]
  assert f"No space left on the disk of {tmp_path}" in last, full.stderr[-3000:]
  assert "free there now" in last and "rerun the same command" in last
  assert "Traceback" not in full.stderr and "RESOURCE_EXHAUSTED" not in full.stderr
  train.train_and_evaluate(config, str(tmp_path))  # space freed: the same command resumes
  assert_bit_identical(tmp_path, reference)


# --- Random kills (the audit's stress, at CI size) ----------------------------------------------

# Dies with SIGKILL just before the KILL_AFTER-th of these moments: a training step, and
# each fsync, replace and rename in the workdir by the main thread (every record, event
# file flush, checkpoint copy and digest, figure and export write; not the compilation
# cache's, which vary with its state, nor the writer threads', which vary with timing).
RANDOM_KILL_WORKER = textwrap.dedent("""
    import json, os, signal, threading
    import ml_collections
    import input_pipeline, train

    after, count = int(os.environ["KILL_AFTER"]), [0]
    workdir = os.path.realpath(os.environ["WORKDIR"])
    def in_workdir(target):
      if isinstance(target, int):  # fsync's file descriptor
        target = os.readlink(f"/proc/self/fd/{target}")
      return os.path.realpath(target).startswith(workdir)
    def counted(f, always=False):
      def dying(*args, **kwargs):
        if always or threading.current_thread() is threading.main_thread() and in_workdir(
            args[0]):
          count[0] += 1
          if count[0] == after: os.kill(os.getpid(), signal.SIGKILL)
        return f(*args, **kwargs)
      return dying
    os.fsync, os.replace, os.rename = counted(os.fsync), counted(os.replace), counted(os.rename)
    iterator = input_pipeline.train_iterator
    def patched(*args, **kwargs):
      it = iterator(*args, **kwargs)
      class Counted:
        get_state, set_state = it.get_state, it.set_state
        __next__ = counted(lambda self: next(it), always=True)
      return Counted()
    input_pipeline.train_iterator = patched
    train.train_and_evaluate(ml_collections.ConfigDict(json.loads(os.environ["CONFIG"])),
                             os.environ["WORKDIR"])
""")


@pytest.mark.slow
def test_five_kills_at_random_moments_then_a_rerun_end_bit_identical_and_complete(
    reference, tmp_path):
  # The audit's stress (20 kills of an 8-epoch run) at a size CI affords: five sessions of
  # one run, each killed at a random moment (a fixed seed), then a rerun to the end.
  # A fresh session passes 59 such moments (each file written whole is three: its
  # temporary file's fsync, the rename, the directory's fsync; the checkpoint at step 6 is
  # on disk from the 28th, with its digest from the 33rd; the one at 9 from the 39th and
  # 44th; the summary is the 58th); a session resumed from step 6 about 40, from step 9
  # about 30. This seed kills in the dataset record, at a training step, inside the first
  # save, at the curves (resumed from 6) and between the export and the summary (resumed
  # from 9); the rerun finishes the run.
  config, rng = tiny_config(**FAULT_CONFIG), random.Random(1)
  env = {**os.environ, "CONFIG": config.to_json(), "WORKDIR": str(tmp_path),
         "PYTHONPATH": str(REPO)}
  killed = 0
  for _ in range(5):
    session = subprocess.run([sys.executable, "-c", RANDOM_KILL_WORKER], cwd=REPO,
                             env={**env, "KILL_AFTER": str(rng.randint(1, 30))},
                             capture_output=True, text=True, timeout=600)
    assert session.returncode in (0, -signal.SIGKILL), session.stderr[-3000:]
    killed += session.returncode == -signal.SIGKILL
  assert killed >= 4  # a session that outlives its moment finishes the run
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert [r["step"] for r in rows(tmp_path)] == [3, 6, 9]
  assert_bit_identical(tmp_path, reference)
  assert_same_step_rows(tmp_path, reference)
  assert untimed([summary]) == untimed([run_directory.read_run(str(reference)).summary])
  assert finish.incomplete_artefacts(run_directory.read_run(str(tmp_path))) == []


# --- Damaged checkpoints -------------------------------------------------------------------------


def _flip_a_byte_of_the_largest_file(step_dir):
  files = [f for f in glob.glob(f"{step_dir}/state/**/*", recursive=True) if os.path.isfile(f)]
  largest = max(files, key=os.path.getsize)
  data = bytearray(open(largest, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(largest, "wb").write(bytes(data))
  return largest


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_and_is_kept_aside(
    reference, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(reference, run)
  damaged = _flip_a_byte_of_the_largest_file(run / "checkpoints" / "9")
  # Continue to 4 epochs: the run must resume from step 6, not from the damaged step 9.
  longer = tiny_config(**{**FAULT_CONFIG, "num_epochs": 4})
  train.train_and_evaluate(longer, str(run))
  aside = run / run_directory.UNUSABLE
  assert sorted(os.listdir(aside)) == ["9", "9.reason.txt"]
  reason = (aside / "9.reason.txt").read_text()
  assert os.path.relpath(damaged, run / "checkpoints" / "9") in reason
  assert "does not match its SHA-256 digest" in reason
  assert [r["step"] for r in rows(run)] == [3, 6, 9, 12]
  # Steps 7-9 were recomputed from checkpoint 6: the same rows as the reference's.
  strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]
  assert strip(rows(run)[:3]) == strip(rows(reference))


def test_without_digests_an_orbax_error_also_falls_back(reference, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(reference, run)
  # A run written before digests existed, and before provenance.json.
  for digest in glob.glob(f"{run}/checkpoints/*/{checkpoints.DIGEST}"):
    os.remove(digest)
  os.remove(run / run_directory.PROVENANCE)
  os.remove(run / "checkpoints" / "9" / "state" / "_METADATA")
  train.train_and_evaluate(tiny_config(**{**FAULT_CONFIG, "num_epochs": 4}), str(run))
  assert "Error" in (run / run_directory.UNUSABLE / "9.reason.txt").read_text()
  assert [r["step"] for r in rows(run)] == [3, 6, 9, 12]


def test_with_every_checkpoint_damaged_the_error_says_so_and_nothing_is_deleted(
    reference, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(reference, run)
  for step in ("6", "9"):
    _flip_a_byte_of_the_largest_file(run / "checkpoints" / step)
  with pytest.raises(checkpoints.NoUsableCheckpointError,
                     match=r"No usable checkpoint .*step 9 \(.*\); step 6 \(.*\)"):
    train.train_and_evaluate(tiny_config(**{**FAULT_CONFIG, "num_epochs": 4}), str(run))
  assert sorted(os.listdir(run / run_directory.UNUSABLE)) == [
      "6", "6.reason.txt", "9", "9.reason.txt"]
  assert [r["step"] for r in rows(run)] == [3, 6, 9]  # the record is left as it was


def test_load_checkpoint_refuses_a_damaged_checkpoint(reference, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(reference, run)
  _flip_a_byte_of_the_largest_file(run / "checkpoints" / "9")
  with pytest.raises(checkpoints.NoUsableCheckpointError, match="step 9 .* is damaged"):
    checkpoints.load_checkpoint(str(run))


# --- Signals to a sweep --------------------------------------------------------------------------

SWEEP_ARGS = ["--config=configs/quickstart.py", "--seeds=1", "--settings=relu,rrelu",
              "--config.model_options.width=0.0625", "--config.batch_size=8",
              "--config.steps_per_epoch=20", "--config.num_epochs=2",
              "--config.eval_batch_size=120", "--config.warmup_epochs=0",
              "--config.lr_decay_epochs=()", "--config.checkpoint_every_epochs=1",
              "--config.eval_every_epochs=1", "--config.log_every_steps=10",
              # One XLA device in every placement, the one in-process runs use: the runs of
              # --parallel=1 and 2 and of the in-process reference compute the same bits.
              "--config.cpu_devices=1", "--noreport"]


def _sweep(workdir, *extra):
  return [sys.executable, "sweep.py", f"--workdir={workdir}", *SWEEP_ARGS, *extra]


@pytest.fixture(scope="module")
def uninterrupted_sweep(tmp_path_factory):
  """SWEEP_ARGS's sweep run through in this process: what a stopped and resumed sweep
  must equal bit for bit, whatever its placement."""
  from configs import quickstart
  config = quickstart.get_config()
  config.model_options.width = 0.0625
  config.update_from_flattened_dict({
      "batch_size": 8, "steps_per_epoch": 20, "num_epochs": 2, "eval_batch_size": 120,
      "warmup_epochs": 0.0, "lr_decay_epochs": (), "checkpoint_every_epochs": 1,
      "eval_every_epochs": 1, "log_every_steps": 10, "cpu_devices": 1})
  workdir = str(tmp_path_factory.mktemp("uninterrupted-sweep"))
  sweep.run_sweep(config, workdir, ("relu", "rrelu"), (0,), report=False)
  return workdir


def _without_module_list(stderr):
  """stderr without the list of extension modules Python prints after a fatal error."""
  return "\n".join(l for l in stderr.splitlines() if "Extension modules:" not in l)


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [2, 1])
def test_sigterm_stops_a_sweep_and_every_training_and_a_rerun_resumes_exactly(
    tmp_path, parallel, uninterrupted_sweep):
  stopped = tmp_path / "stopped"
  proc = subprocess.Popen(_sweep(stopped, f"--parallel={parallel}"), cwd=REPO,
                          # Each training holds after its first row (step 20) until
                          # the signal reaches it.
                          env=holding_env(tmp_path, 20), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  first_rows = [sweep.run_dir(str(stopped), s, 0) + "/metrics.jsonl"
                for s in ("relu", "rrelu")][: parallel]
  deadline = time.time() + 300
  while not all(os.path.exists(p) and os.path.getsize(p) for p in first_rows):
    assert time.time() < deadline and proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.1)
  holders = [int(open(os.path.dirname(p) + "/.lock").read().split()[1]) for p in first_rows]
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert "Sweep stopped by SIGTERM" in err and "Rerun the same command to resume" in err
  assert "Traceback" not in err
  assert not any(_alive(pid) for pid in holders)  # no training left behind
  for path in first_rows:
    assert [r["step"] for r in run_directory.read_rows(path)] == [20]

  rerun = subprocess.run(_sweep(stopped, f"--parallel={parallel}"), cwd=REPO,
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, _without_module_list(rerun.stderr)[-5000:]
  for setting in ("relu", "rrelu"):
    a = sweep.run_dir(str(stopped), setting, 0)
    b = sweep.run_dir(uninterrupted_sweep, setting, 0)
    assert [r["step"] for r in rows(a)] == [20, 40]
    assert_bit_identical(a, b)
