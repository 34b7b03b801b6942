"""TensorBoard event files: tags, steps and values read back, and what a resumed run shows.

The events are read with training.tensorboard's own reader (TFRecord framing with CRC
checks, tensorboardX's Event proto) and, where the `tensorboard` package is installed,
with TensorBoard's Python loader (`event_accumulator`), fresh and left running.
"""

import glob
import json
import math
import os
import shutil
import time

import pytest

from tests.helpers import REPO
from training import run_directory
from training import tensorboard as tb


def _row(epoch: int, *, train_eval: bool = True, offset: float = 0.0) -> dict:
  row = {"epoch": epoch, "step": 10 * epoch, "train_error": 0.5 / epoch + offset,
         "train_loss": 2.0 / epoch + offset, "test_error": 0.6 / epoch + offset,
         "test_loss": 2.5 / epoch + offset, "test_examples": 360,
         "learning_rate": 0.05 * epoch, "images_per_sec": 100.0 + epoch,
         "wall_time": 3.0 * epoch}
  if train_eval:
    row.update(train_eval_error=0.4 / epoch + offset, train_eval_loss=1.5 / epoch + offset,
               train_eval_examples=500)
  return row


def _step_row(step: int, *, offset: float = 0.0) -> dict:
  """A steps.jsonl row (records.StepRow), every 5 steps between the rows' 10."""
  return {"step": step, "epoch": step / 10, "train_loss": 2.0 / step + offset,
          "learning_rate": 0.005 * step, "images_per_sec": 100.0 + step,
          "wall_time": 0.3 * step}


def _close(points, expected):
  """(step, value) lists equal up to float32 rounding (event files store float32)."""
  return (len(points) == len(expected)
          and all(s == t and math.isclose(v, w, rel_tol=1e-6)
                  for (s, v), (t, w) in zip(points, expected)))


def test_each_row_becomes_scalars_at_its_step_under_the_documented_tags(tmp_path):
  rows, step_rows = [_row(e) for e in (1, 2, 3)], [_step_row(s) for s in range(5, 31, 5)]
  with tb.EventWriter(str(tmp_path)) as events:
    for row in rows:
      for step_row in step_rows:
        if row["step"] - 10 < step_row["step"] <= row["step"]:
          events.write_step(step_row)
      events.write_row(row)
  scalars = tb.read_scalars(str(tmp_path))
  assert set(scalars) == {"error/train", "error/test", "error/train_eval", "loss/train",
                          "loss/test", "loss/train_eval", "learning_rate", "images_per_sec",
                          "epoch", "train_step/loss", "train_step/learning_rate",
                          "train_step/images_per_sec"}
  for column, tag in tb.SCALAR_TAGS.items():
    assert _close(scalars[tag], [(r["step"], r[column]) for r in rows]), tag
  for column, tag in tb.STEP_TAGS.items():
    assert _close(scalars[tag], [(r["step"], r[column]) for r in step_rows]), tag
  assert os.path.dirname(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))[0]) \
      == str(tmp_path / "tensorboard")


def test_rows_without_train_eval_columns_write_no_train_eval_series(tmp_path):
  with tb.EventWriter(str(tmp_path)) as events:
    events.write_row(_row(1, train_eval=False))
  scalars = tb.read_scalars(str(tmp_path))
  assert "error/train_eval" not in scalars and "loss/train_eval" not in scalars
  assert _close(scalars["error/test"], [(10, 0.6)])


def test_the_config_is_a_json_code_block_in_a_text_summary_at_step_0(tmp_path):
  record = {"rectifier": "rrelu", "model_options": {"width": 0.25}, "lr_decay_epochs": [20]}
  with tb.EventWriter(str(tmp_path)) as events:
    events.write_config(record)
  texts = [(e.step, v) for e in tb.read_events(str(tmp_path)) for v in e.summary.value
           if v.tag.startswith(tb.CONFIG_TAG)]
  assert len(texts) == 1
  step, value = texts[0]
  assert step == 0 and value.metadata.plugin_data.plugin_name == "text"
  text = value.tensor.string_val[0].decode()
  assert text.startswith("```json\n") and text.endswith("\n```")
  assert json.loads(text[len("```json\n"):-len("\n```")]) == record


def test_wall_times_follow_the_run_clock_of_the_rows(tmp_path):
  rows = [_row(e) for e in (1, 2, 3)]
  with tb.EventWriter(str(tmp_path), rows=rows):
    pass
  times = {e.step: e.wall_time for e in tb.read_events(str(tmp_path)) if e.summary.value}
  assert times[30] - times[10] == pytest.approx(rows[2]["wall_time"] - rows[0]["wall_time"])
  assert times[30] == pytest.approx(time.time(), abs=60)


def _resume(tmp_path, old_rows: int = 5, kept: int = 3) -> tuple[list[dict], list[dict]]:
  """Session 1 writes rows 1..old_rows and the step rows up to them; session 2 resumes
  after `kept` rows and writes new rows and step rows (other values) up to epoch 6.
  Returns the rows metrics.jsonl and steps.jsonl would hold."""
  with tb.EventWriter(str(tmp_path)) as events:
    events.write_config({"session": 1})
    for e in range(1, old_rows + 1):
      events.write_step(_step_row(10 * e - 5))
      events.write_step(_step_row(10 * e))
      events.write_row(_row(e))
  rows = [_row(e) for e in range(1, kept + 1)]
  step_rows = [_step_row(s) for s in range(5, 10 * kept + 1, 5)]
  new = [_row(e, offset=0.01) for e in range(kept + 1, 7)]
  new_steps = [_step_row(s, offset=0.01) for s in range(10 * kept + 5, 61, 5)]
  with tb.EventWriter(str(tmp_path), rows=rows, step_rows=step_rows) as events:
    events.write_config({"session": 2})
    for i, row in enumerate(new):
      events.write_step(new_steps[2 * i])
      events.write_step(new_steps[2 * i + 1])
      events.write_row(row)
  return rows + new, step_rows + new_steps


def test_a_resumed_run_shows_the_kept_and_the_new_rows_and_nothing_stale(tmp_path):
  expected, expected_steps = _resume(tmp_path)
  raw = tb.read_scalars(str(tmp_path), session_start=False, preempt=False)
  assert len(raw["error/test"]) == 5 + 6  # both sessions' points are on disk ...
  assert len(raw["train_step/loss"]) == 10 + 12
  for loader in ({"session_start": True, "preempt": False},   # ... the Python loader's rule
                 {"session_start": False, "preempt": True}):  # ... the Rust loader's rule
    scalars = tb.read_scalars(str(tmp_path), **loader)
    for column, tag in tb.SCALAR_TAGS.items():
      assert _close(scalars[tag], [(r["step"], r[column]) for r in expected]), (loader, tag)
    for column, tag in tb.STEP_TAGS.items():
      assert _close(scalars[tag], [(r["step"], r[column]) for r in expected_steps]), (loader,
                                                                                      tag)


def test_each_session_keeps_at_most_the_previous_event_file(tmp_path):
  for session in range(3):
    with tb.EventWriter(str(tmp_path), rows=[_row(1)]) as events:
      events.write_row(_row(2, offset=session))
  files = sorted(os.listdir(tmp_path / "tensorboard"))
  assert len(files) == 2 and files[-1].endswith(".000003") and files[0].endswith(".000002")
  assert _close(tb.read_scalars(str(tmp_path))["error/train"], [(10, 0.5), (20, 2.25)])


def test_a_restart_without_rows_deletes_every_old_event_file(tmp_path):
  _resume(tmp_path)
  with tb.EventWriter(str(tmp_path)) as events:  # no checkpoint: training starts over
    pass
  assert len(os.listdir(tmp_path / "tensorboard")) == 1
  assert tb.read_scalars(str(tmp_path), session_start=False, preempt=False) == {}


def test_a_disabled_writer_creates_and_deletes_nothing(tmp_path):
  with tb.EventWriter(str(tmp_path / "a"), enabled=False) as events:
    events.write_config({"a": 1})
    events.write_row(_row(1))
  assert not (tmp_path / "a").exists()
  _resume(tmp_path)
  before = sorted(os.listdir(tmp_path / "tensorboard"))
  with tb.EventWriter(str(tmp_path), enabled=False, rows=[_row(1)]):
    pass
  assert sorted(os.listdir(tmp_path / "tensorboard")) == before


def test_a_damaged_record_is_reported(tmp_path):
  with tb.EventWriter(str(tmp_path)) as events:
    events.write_row(_row(1))
  path = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))[0]
  data = bytearray(open(path, "rb").read())
  data[-8] ^= 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(ValueError, match="checksum"):
    tb.read_events(str(tmp_path))


def test_write_run_builds_the_events_of_a_recorded_run(tmp_path):
  source = REPO / "results" / "cifar10-mini" / "runs" / "relu" / "seed0"
  shutil.copytree(source, tmp_path / "run")
  tb.write_run(str(tmp_path / "run"))
  rows = run_directory.read_run(str(tmp_path / "run")).rows
  scalars = tb.read_scalars(str(tmp_path / "run"))
  assert _close(scalars["error/test"], [(r["step"], r["test_error"]) for r in rows])
  assert "error/train_eval" not in scalars  # this study has no train_eval columns
  with pytest.raises(FileNotFoundError, match="not a run directory"):
    tb.write_run(str(tmp_path / "empty"))


# --- TensorBoard's own loader, where it is installed ------------------------------------------


def _accumulator_scalars(accumulator, tags):
  return {tag: [(s.step, s.value) for s in accumulator.Scalars(tag)] for tag in tags}


def test_the_tensorboard_command_the_readme_names_is_installed():
  import sys  # pylint: disable=g-import-not-at-top
  # A dependency (pyproject.toml), so the install that runs these tests has it.
  assert shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or shutil.which(
      "tensorboard"), "pip install . should install tensorboard (pyproject.toml)"


def test_tensorboards_python_loader_sees_the_resumed_run_fresh_and_left_running(tmp_path):
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  with tb.EventWriter(str(tmp_path)) as events:
    for e in range(1, 6):
      events.write_row(_row(e))
  running = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  running.Reload()
  assert [s.step for s in running.Scalars("error/test")] == [10, 20, 30, 40, 50]

  rows, new = [_row(e) for e in (1, 2, 3)], [_row(4, offset=0.01)]
  with tb.EventWriter(str(tmp_path), rows=rows) as events:
    events.write_config({"session": 2})
    for row in new:
      events.write_row(row)
  fresh = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  fresh.Reload()
  running.Reload()
  tags = list(tb.SCALAR_TAGS.values())
  expected = {tag: [(r["step"], r[c]) for r in rows + new] for c, tag in tb.SCALAR_TAGS.items()}
  for accumulator in (fresh, running):
    got = _accumulator_scalars(accumulator, tags)
    assert all(_close(got[tag], expected[tag]) for tag in tags), got
  assert fresh.Tags()["tensors"] == ["config/text_summary"]
