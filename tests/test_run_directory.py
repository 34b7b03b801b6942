"""The run directory's rules without training: config differences, rows, the lock, finishing."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import REPO
from training import run_directory as rd

DEFAULTS = {"seed": 0, "rectifier": "relu", "num_epochs": 10, "eval_every_epochs": 1,
            "keep_checkpoints": 2, "batch_size": 128, "new_key": "old behaviour",
            "model_options": {"width": 1.0}}


def test_config_differences_list_each_differing_key_with_both_values():
  old = {**DEFAULTS, "rectifier": "rrelu", "model_options": {"width": 0.25}}
  new = {**DEFAULTS, "rectifier": "relu", "model_options": {"width": 0.5}, "batch_size": 64}
  assert rd.config_differences(old, new, DEFAULTS) == [
      ("batch_size", 128, 64), ("model_options.width", 0.25, 0.5), ("rectifier", "rrelu", "relu")]


def test_keys_missing_from_an_older_record_stand_for_their_defaults():
  old = {k: v for k, v in DEFAULTS.items() if k != "new_key"}
  assert rd.config_differences(old, DEFAULTS, DEFAULTS) == []
  changed = {**DEFAULTS, "new_key": "new behaviour"}
  assert rd.config_differences(old, changed, DEFAULTS) == [
      ("new_key", "old behaviour", "new behaviour")]


def test_tuples_lists_and_integral_floats_compare_equal():
  assert rd.config_differences({"e": (13,), "w": 2}, {"e": [13.0], "w": 2.0}, {}) == []


def test_neutral_keys_may_change_and_num_epochs_may_not_fall_below_the_reached_epoch():
  new = {**DEFAULTS, "eval_every_epochs": 5, "keep_checkpoints": 9, "num_epochs": 20}
  rd.check_resumable(DEFAULTS, new, DEFAULTS, reached_epoch=10, where="W")
  rd.check_resumable(DEFAULTS, {**DEFAULTS, "num_epochs": 6}, DEFAULTS, reached_epoch=6,
                     where="W")
  with pytest.raises(rd.ConfigMismatchError, match=r"num_epochs: 10 \(recorded\) -> 5 \(now\) "
                                                   r"\(the run has reached epoch 6\)"):
    rd.check_resumable(DEFAULTS, {**DEFAULTS, "num_epochs": 5}, DEFAULTS, reached_epoch=6,
                       where="W")


def test_a_result_changing_key_is_refused_with_every_difference_and_the_fix():
  new = {**DEFAULTS, "seed": 3, "batch_size": 32, "eval_every_epochs": 2}
  with pytest.raises(rd.ConfigMismatchError) as e:
    rd.check_resumable(DEFAULTS, new, DEFAULTS, reached_epoch=1, where="runs/x")
  message = str(e.value)
  assert "batch_size: 128 (recorded) -> 32 (now)" in message
  assert "seed: 0 (recorded) -> 3 (now)" in message
  assert "eval_every_epochs" not in message
  assert "Use a new workdir" in message and "runs/x/config.json" in message


def test_rows_skip_a_torn_last_line_but_refuse_a_damaged_one(tmp_path):
  path = tmp_path / rd.METRICS
  path.write_text('{"epoch": 1, "step": 3}\n{"epoch": 2, "st')
  assert rd.read_rows(str(path)) == [{"epoch": 1, "step": 3}]
  path.write_text('{"epoch": 1, "st\n{"epoch": 2, "step": 6}\n')
  with pytest.raises(rd.RunDirectoryError, match="metrics.jsonl is damaged: line 1 is not JSON"):
    rd.read_rows(str(path))


@pytest.mark.parametrize("line", ["[1, 2]", '{"epoch": 1}', '"a row"'])
@pytest.mark.parametrize("last", [False, True])
def test_a_metrics_row_that_is_valid_json_but_no_row_names_the_file_and_line(
    tmp_path, line, last):
  path = tmp_path / rd.METRICS
  rows = ['{"epoch": 1, "step": 3}', line] if last else [line, '{"epoch": 1, "step": 3}']
  path.write_text("\n".join(rows) + "\n")
  with pytest.raises(rd.RunDirectoryError) as e:
    rd.read_rows(str(path))
  assert f"{path} is damaged: line {2 if last else 1} is not a metrics row" in str(e.value)


@pytest.mark.parametrize("name", [rd.CONFIG, rd.SUMMARY, rd.DATASET, rd.PROVENANCE])
@pytest.mark.parametrize("content", ['{"num_epochs": 2, }', "[1, 2]", "\udcff"])
def test_a_damaged_json_record_names_its_file_and_what_to_do(tmp_path, name, content):
  (tmp_path / name).write_bytes(content.encode("utf-8", "surrogateescape"))
  # A ValueError too, as the json module's errors were, for callers that caught those.
  with pytest.raises(rd.DamagedRecordError) as e:
    rd.read_run(str(tmp_path))
  assert isinstance(e.value, rd.RunDirectoryError) and isinstance(e.value, ValueError)
  message = str(e.value)
  assert message.startswith(f"{tmp_path / name} is damaged: ")
  assert "Restore it from a copy, or " in message
  where = {"{": "not valid JSON (Expecting property name", "[": "JSON list, not an object",
           "\udcff": "not text"}[content[0]]
  assert where in message and ("line 1 column 19" in message) == (content[0] == "{")


def test_a_resume_keeps_rows_through_its_step_drops_the_summary_and_rows_stay_ordered(tmp_path):
  with rd.RunDirectory(str(tmp_path)) as run:
    for step in (3, 6, 9):
      run.append_row({"epoch": step // 3, "step": step})
    with pytest.raises(rd.RunDirectoryError, match="Row at step 6 after one at step 9"):
      run.append_row({"epoch": 2, "step": 6})
    run.finish({"step": 9})
    run.resume_from(6)
    assert [r["step"] for r in run.read().rows] == [3, 6]
    assert run.read().summary is None
    run.resume_from(None)
    assert run.read().rows == []


def test_an_error_after_the_run_started_is_recorded_as_its_failure_a_stop_is_not(tmp_path):
  def train(error, start=True):
    with pytest.raises(type(error)):
      with rd.RunDirectory(str(tmp_path)) as run:
        if start:
          run.start(DEFAULTS, {}, np.zeros((2, 2, 1), np.float32))
        raise error
  train(rd.ConfigMismatchError("refused"), start=False)  # a refusal before anything is written
  assert not (tmp_path / rd.FAILURE).exists()
  train(KeyboardInterrupt("stopped by SIGTERM"))
  assert rd.read_run(str(tmp_path)).failure is None
  train(FloatingPointError("Non-finite training loss at step 5"))
  assert rd.read_run(str(tmp_path)).failure["error"] == (
      "FloatingPointError: Non-finite training loss at step 5")
  assert rd.read_run(str(tmp_path)).failed
  with rd.RunDirectory(str(tmp_path)) as run:  # training again: no longer failed
    run.start(DEFAULTS, {}, np.zeros((2, 2, 1), np.float32))
    assert run.read().failure is None


def test_the_training_fingerprints_are_written_once_and_a_resumed_run_keeps_them(tmp_path):
  mean, calls = np.zeros((2, 2, 1), np.float32), []

  def computed(*values):
    return lambda: calls.append(values) or np.array(values, np.uint64)

  with rd.RunDirectory(str(tmp_path)) as run:
    run.start(DEFAULTS, {}, mean)  # a run from before fingerprints were recorded
  assert rd.read_train_fingerprints(str(tmp_path)) is None
  with rd.RunDirectory(str(tmp_path)) as run:
    run.start(DEFAULTS, {}, mean, computed(9, 4))  # resumed under this code: written
  with rd.RunDirectory(str(tmp_path)) as run:
    run.start(DEFAULTS, {}, mean, computed(1, 2))  # resumed again: kept, not computed
  with rd.RunDirectory(str(tmp_path), writer=False) as run:  # another process of the run
    run.start(DEFAULTS, {}, mean, computed(3))
  assert calls == [(9, 4)]
  assert rd.read_train_fingerprints(str(tmp_path)).tolist() == [4, 9]
  (tmp_path / rd.TRAIN_FINGERPRINTS).write_bytes(b"damaged")
  with pytest.raises(rd.RunDirectoryError, match="train_fingerprints.npy is not a readable"):
    rd.read_train_fingerprints(str(tmp_path))


def test_finished_means_a_summary_at_the_last_row_that_reached_num_epochs(tmp_path):
  rows = [{"epoch": 1, "step": 3}, {"epoch": 2, "step": 6}]
  assert rd.is_finished_record({"num_epochs": 2}, rows, {"step": 6})
  assert not rd.is_finished_record({"num_epochs": 2}, rows, None)
  assert not rd.is_finished_record({"num_epochs": 3}, rows, {"step": 6})
  assert not rd.is_finished_record({"num_epochs": 2}, rows, {"step": 3})  # a stale summary
  assert not rd.is_finished_record({"num_epochs": 2}, [], {"step": 6})


def test_json_files_are_replaced_whole(tmp_path):
  path = str(tmp_path / "x.json")
  rd.write_json(path, {"a": (1, 2)})
  assert rd.read_json(path) == {"a": [1, 2]}
  assert os.listdir(tmp_path) == ["x.json"]  # no temporary file left behind


def test_a_nan_or_an_infinity_is_never_written_and_the_error_names_the_key(tmp_path):
  path = str(tmp_path / "x.json")
  rd.write_json(path, {"a": 1})
  with pytest.raises(rd.NonFiniteValueError, match=r"x.json: b.c, d.1 are not finite"):
    rd.write_json(path, {"b": {"c": float("nan")}, "d": [0.0, float("inf")]})
  assert rd.read_json(path) == {"a": 1}  # the old file stays
  with rd.RunDirectory(str(tmp_path / "run")) as run:
    with pytest.raises(rd.NonFiniteValueError, match=r"metrics.jsonl: test_loss is not finite"):
      run.append_row({"step": 3, "test_loss": float("nan")})
    assert run.read().rows == []


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from training import run_directory
    shared = sys.argv[2:] == ["shared"]
    with run_directory.DirectoryLock(sys.argv[1], shared=shared, reader="an evaluation"):
      print("locked", flush=True)
      time.sleep(60)
""")


def _hold_lock(path, shared=False):
  proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)]
                          + (["shared"] if shared else []), cwd=REPO,
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
  assert proc.stdout.readline().strip() == "locked"
  return proc


def _end(proc):
  proc.kill()
  proc.wait()


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path):
  holder = _hold_lock(tmp_path)
  try:
    with pytest.raises(rd.RunInUseError, match=rf"is in use by pid {holder.pid} on host "):
      with rd.RunDirectory(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
  holder = _hold_lock(tmp_path)
  holder.kill()  # SIGKILL: no clean-up ran; the lock file stays.
  holder.wait()
  assert (tmp_path / rd.LOCK).exists()
  with rd.RunDirectory(str(tmp_path)):
    assert f"pid {os.getpid()} " in (tmp_path / rd.LOCK).read_text()


def test_a_training_refused_while_an_evaluation_reads_names_the_evaluation_not_the_last_writer(
    tmp_path):
  with rd.RunDirectory(str(tmp_path)):  # a training that ended before
    pass
  reader = _hold_lock(tmp_path, shared=True)
  try:
    with pytest.raises(rd.RunInUseError) as refused:
      with rd.RunDirectory(str(tmp_path)):
        pass
  finally:
    _end(reader)
  message = str(refused.value)
  assert f"is being read by an evaluation, pid {reader.pid} on host " in message, message
  assert f"pid {os.getpid()} " not in message  # the training that ended is not named
  assert "cannot be written while it is read" in message


def test_an_evaluation_refused_while_a_training_writes_names_the_training(tmp_path):
  writer = _hold_lock(tmp_path)
  try:
    with pytest.raises(rd.RunInUseError, match=rf"is in use by pid {writer.pid} on host .*"
                                               r"which is writing it"):
      with rd.DirectoryLock(str(tmp_path), shared=True, reader="an evaluation"):
        pass
  finally:
    _end(writer)


def test_each_holder_leaves_its_line_only_while_it_holds_the_lock(tmp_path):
  readers = lambda: [n for n in os.listdir(tmp_path) if n.startswith(rd.READER_PREFIX)]
  with rd.DirectoryLock(str(tmp_path), shared=True, reader="an evaluation"):
    with rd.DirectoryLock(str(tmp_path), shared=True, reader="a second evaluation"):
      assert len(readers()) == 2
      assert sorted(line.split(",")[0] for line in rd.readers(str(tmp_path))) == [
          "a second evaluation", "an evaluation"]
    assert rd.readers(str(tmp_path))[0].startswith(f"an evaluation, pid {os.getpid()} ")
  assert readers() == [] and rd.readers(str(tmp_path)) == []
  with rd.RunDirectory(str(tmp_path)):
    assert f"pid {os.getpid()} " in (tmp_path / rd.LOCK).read_text()
  assert (tmp_path / rd.LOCK).read_text() == ""  # the writer's line goes with it


def test_the_line_of_a_killed_reader_names_nobody_and_goes_with_the_next_writer(tmp_path):
  reader = _hold_lock(tmp_path, shared=True)
  _end(reader)  # SIGKILL: its line stays behind
  [line] = [n for n in os.listdir(tmp_path) if n.startswith(rd.READER_PREFIX)]
  assert rd.readers(str(tmp_path)) == []
  with rd.RunDirectory(str(tmp_path)):
    assert not (tmp_path / line).exists()


def test_parent_json_is_read_relative_to_the_run_and_older_absolute_records_still_work(
    tmp_path):
  child = tmp_path / "study" / "child"
  child.mkdir(parents=True)
  rd.write_json(str(child / rd.PARENT), {"workdir": "../parent", "step": 3})
  assert rd.read_parent(str(child))["workdir"] == str(tmp_path / "study" / "parent")
  moved = tmp_path / "moved"
  os.rename(tmp_path / "study", moved)  # a study moved whole keeps the link
  assert rd.read_parent(str(moved / "child"))["workdir"] == str(moved / "parent")
  rd.write_json(str(moved / "child" / rd.PARENT), {"workdir": "/somewhere/parent", "step": 3})
  assert rd.read_parent(str(moved / "child"))["workdir"] == "/somewhere/parent"
  assert rd.read_parent(str(tmp_path)) is None


def test_an_unwritable_workdir_fails_clearly(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(rd.RunDirectoryError, match="Cannot write to the run directory .*a_file/run"):
    with rd.RunDirectory(str(blocker / "run")):
      pass


def test_a_workdir_with_records_but_no_config_is_refused(tmp_path):
  (tmp_path / rd.METRICS).write_text('{"epoch": 1, "step": 3}\n')
  with pytest.raises(rd.RunDirectoryError, match="no config.json"):
    rd.RunDirectory(str(tmp_path), writer=False).check_config(DEFAULTS, DEFAULTS)


def test_read_sweep_finds_setting_and_seed_directories(tmp_path):
  for setting, seed in (("relu", 0), ("rrelu", 1)):
    path = rd.sweep_run_path(str(tmp_path), setting, seed)
    os.makedirs(path)
    with open(os.path.join(path, rd.METRICS), "w") as f:
      f.write(json.dumps({"epoch": 1, "step": 3}) + "\n")
  os.makedirs(tmp_path / "relu" / "notes")
  runs = rd.read_sweep(str(tmp_path))
  assert [(r.setting, r.seed, len(r.rows)) for r in runs] == [("relu", 0, 1), ("rrelu", 1, 1)]


def test_differing_settings_ignore_rectifier_seed_and_neutral_keys():
  a = rd.RunRecord("a", {**DEFAULTS, "rectifier": "relu", "seed": 0}, {}, [], None)
  b = rd.RunRecord("b", {**DEFAULTS, "rectifier": "prelu", "seed": 1, "eval_every_epochs": 3},
                   {}, [], None)
  assert rd.differing_settings([a, b]) == set()
  c = rd.RunRecord("c", {**DEFAULTS, "model_options": {"width": 2.0}}, {}, [], None)
  assert rd.differing_settings([a, c]) == {"model_options.width"}
