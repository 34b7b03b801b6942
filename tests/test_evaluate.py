"""evaluate.py and the code-version record: a finished run re-tested on any data, from its
export alone, without touching its record (the export itself: tests/test_export.py)."""

import hashlib
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import evaluate
import input_pipeline
import report
from input_pipeline import fingerprints
from reporting import loading
from tests.helpers import REPO, copy_run, sweep_of_copies, tiny_config
from training import export, provenance, records, run_directory


def record_digests(path) -> dict[str, str]:
  """SHA-256 of every file of a run except what evaluating may add."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), path)
      if rel.startswith(run_directory.EVALUATIONS) or name == run_directory.LOCK:
        continue
      with open(os.path.join(root, name), "rb") as f:
        out[rel] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_evaluating_a_run_on_its_own_test_split_equals_its_summary_exactly(prelu_run):
  result = evaluate.evaluate_run(str(prelu_run), name="own")
  summary = json.loads((prelu_run / "summary.json").read_text())
  assert (result["error"], result["loss"], result["examples"]) == (
      summary["test_error"], summary["test_loss"], summary["test_examples"])
  assert result["model_source"] == "export" and result["step"] == summary["step"]
  assert result["class_names"] == [str(i) for i in range(10)]
  assert json.loads((prelu_run / "evaluations" / "own.json").read_text())["error"] == \
      summary["test_error"]


def test_evaluating_changes_nothing_in_the_runs_record(prelu_run):
  before = record_digests(prelu_run)
  evaluate.evaluate_run(str(prelu_run), split="train", name="train-split", allow_overlap=True)
  evaluate.evaluate_run(str(prelu_run), step=3, name="step3")
  assert record_digests(prelu_run) == before


def test_the_export_alone_suffices(prelu_run, tmp_path):
  alone = copy_run(prelu_run, tmp_path / "alone", drop=("checkpoints", "mean_image.npy"))
  result = evaluate.evaluate_run(alone, name="own")
  summary = json.loads((prelu_run / "summary.json").read_text())
  assert (result["error"], result["loss"]) == (summary["test_error"], summary["test_loss"])
  assert result["model_source"] == "export"


def test_a_finished_run_without_its_export_says_it_evaluates_its_checkpoint(
    prelu_run, tmp_path, caplog):
  run = copy_run(prelu_run, tmp_path / "run")
  os.remove(os.path.join(run, "model", "model.json"))
  with caplog.at_level(logging.WARNING):
    result = evaluate.evaluate_run(run, name="own")
  assert result["model_source"] == "checkpoint"
  assert "has no exported model" in caplog.text and "model.json is missing" in caplog.text


def test_an_unfinished_run_needs_a_step_and_then_gives_that_evaluation(prelu_run, tmp_path):
  unfinished = copy_run(prelu_run, tmp_path / "unfinished", drop=("summary.json", "model"))
  with pytest.raises(evaluate.EvaluationError, match=r"has not finished.*--step=N.*\[3, 6\]"):
    evaluate.evaluate_run(unfinished)
  result = evaluate.evaluate_run(unfinished, step=3)
  row = run_directory.read_run(unfinished).rows[0]
  assert (result["error"], result["loss"], result["model_source"]) == (
      row["test_error"], row["test_loss"], "checkpoint")


def test_not_a_run_and_a_run_without_a_model_are_refused(prelu_run, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(evaluate.EvaluationError, match="not a run directory"):
    evaluate.evaluate_run(str(tmp_path / "empty"))
  bare = copy_run(prelu_run, tmp_path / "bare", drop=("checkpoints", "model"))
  with pytest.raises(evaluate.EvaluationError, match="no exported model and no checkpoint"):
    evaluate.evaluate_run(bare)


def test_evaluation_refuses_while_a_writer_holds_the_run(prelu_run, tmp_path):
  held = copy_run(prelu_run, tmp_path / "held")
  with run_directory.DirectoryLock(held):
    with pytest.raises(run_directory.RunInUseError, match=r"in use by pid \d+"):
      evaluate.evaluate_run(held)
  with run_directory.DirectoryLock(held, shared=True):  # readers do not exclude each other
    evaluate.evaluate_run(held)


def write_folder(root, classes, size, mode="L"):
  for c in classes:
    (root / "test" / c).mkdir(parents=True)
    (root / "train" / c).mkdir(parents=True)
    for i in range(2):
      for split in ("train", "test"):
        Image.new(mode, (size, size), 40 * i).save(root / split / c / f"{i}.png")
  return f"folder:{root}"


def test_a_dataset_of_other_classes_and_shape_is_refused_in_one_line_naming_both(
    prelu_run, tmp_path):
  spec = write_folder(tmp_path / "other", ["a", "b"], 6)
  out = subprocess.run([sys.executable, "evaluate.py", f"--workdir={prelu_run}",
                        f"--dataset={spec}", f"--cache_dir={tmp_path / 'cache'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert "Cannot evaluate" in last and "['a', 'b']" in last and "'9'" in last
  assert "6x6x1" in last and "8x8x1" in last


def test_a_same_shaped_folder_with_the_runs_classes_is_evaluated(prelu_run, tmp_path):
  spec = write_folder(tmp_path / "same", [str(i) for i in range(10)], 8)
  result = evaluate.evaluate_run(str(prelu_run), spec=spec, name="blank",
                                 cache_dir=str(tmp_path / "cache"))
  assert result["examples"] == 20 and result["dataset"] == spec and result["split"] == "test"
  assert result["name"] == "blank" and 0 <= result["error"] <= 1


def test_a_sweep_directory_evaluates_every_finished_run(prelu_run, tmp_path):
  root = sweep_of_copies(prelu_run, tmp_path / "sweep")
  os.remove(os.path.join(root, "prelu", "seed1", "summary.json"))  # unfinished: skipped
  results = evaluate.evaluate_sweep(root, split="train", name="train", allow_overlap=True)
  assert sorted(os.path.relpath(p, root) for p in results) == [
      "prelu/seed0", "relu/seed0", "relu/seed1"]
  assert not os.path.exists(os.path.join(root, "prelu", "seed1", "evaluations"))


@pytest.mark.slow
def test_report_builds_its_tables_from_an_evaluation(prelu_run, tmp_path):
  root = sweep_of_copies(prelu_run, tmp_path / "sweep")
  with pytest.raises(ValueError, match="No evaluation 'train' for relu/seed0"):
    report.write_report(root, evaluation="train")
  evaluate.evaluate_sweep(root, split="train", name="train", allow_overlap=True)
  paths = report.write_report(root, evaluation="train")
  text = open(paths["results"]).read()
  train_error = json.loads(open(os.path.join(root, "relu", "seed0", "evaluations",
                                             "train.json")).read())["error"]
  assert "evaluation `train`" in text and "1,437 images" in text
  assert f"{100 * train_error:.2f}" in text
  assert not os.path.exists(os.path.join(root, "results.md"))  # the training report is apart
  # Its own training images, evaluated with --allow_overlap: the report says so, per run.
  assert "images the runs trained on" in text and "relu/seed0 1,437" in text
  # A run from before fingerprints: its overlap cannot be checked, and the report says so.
  file = os.path.join(root, "prelu", "seed1", "evaluations", "train.json")
  record = json.loads(open(file).read())
  record["train_overlap"] = None
  open(file, "w").write(json.dumps(record))
  text = open(report.write_report(root, evaluation="train")["results"]).read()
  assert "training images of prelu/seed1 cannot be checked" in text


def test_a_run_records_the_code_that_trained_it(prelu_run):
  [entry] = run_directory.read_run(str(prelu_run)).code_versions
  assert entry["from_step"] == 0
  assert entry["commit"] != "unknown" and isinstance(entry["dirty"], bool)
  assert set(entry["versions"]) == set(provenance.LIBRARIES)
  assert export.read_metadata(str(prelu_run))["code_versions"] == [entry]


def test_a_resume_under_another_version_records_every_step_version_pair(tmp_path):
  a = {"commit": "a" * 40, "dirty": False, "versions": {"jax": "1"}}
  b = {**a, "commit": "b" * 40}
  with run_directory.RunDirectory(str(tmp_path)) as run:
    assert run.record_code_version(0, a) == [{"from_step": 0, **a}]
    assert run.record_code_version(300, a) == [{"from_step": 0, **a}]     # same: no entry
    assert run.record_code_version(600, b) == [{"from_step": 0, **a}, {"from_step": 600, **b}]
    # A resume from an older checkpoint drops what the run no longer keeps.
    assert run.record_code_version(300, a) == [{"from_step": 0, **a}]
    assert run.record_code_version(0, b) == [{"from_step": 0, **b}]      # a restart


@pytest.mark.slow
def test_report_names_the_code_versions_when_a_study_has_several(prelu_run, tmp_path):
  root = sweep_of_copies(prelu_run, tmp_path / "sweep")
  runs = loading.read_runs(root)
  assert loading.code_versions_line(runs) is None
  path = os.path.join(root, "prelu", "seed1", run_directory.PROVENANCE)
  history = json.loads(open(path).read())["code_versions"]
  run_directory.write_json(path, {"code_versions": history + [
      {**history[0], "from_step": 3, "commit": "f" * 40}]})
  line = loading.code_versions_line(loading.read_runs(root))
  assert line.startswith("These runs were trained by 2 code versions")
  assert "commit ffffffffff" in line and "prelu/seed1 from step 3" in line
  assert line in open(report.write_report(root)["results.md"]).read()


def _bad_dataset(kind: str, root) -> list[str]:
  """evaluate.py's flags for a dataset it cannot load, of one `kind`."""
  if kind == "missing path":
    return [f"--dataset=folder:{root / 'nowhere'}"]
  if kind == "unprepared tfds":
    return ["--dataset=tfds:cifar10", f"--data_dir={root / 'tfds'}"]
  classes = [str(i) for i in range(10)]
  if kind == "empty folder":
    for c in classes:
      (root / "train" / c).mkdir(parents=True)
    return [f"--dataset=folder:{root}", "--split=train"]
  spec = write_folder(root, classes, 8, mode="I;16" if kind == "16-bit images" else "L")
  if kind == "corrupt files":
    (root / "test" / "0" / "0.png").write_bytes(b"not an image")
  return [f"--dataset={spec}"]


@pytest.mark.parametrize("kind, says", [
    ("missing path", "nowhere"), ("empty folder", "no image"),
    ("unprepared tfds", "tfds build"), ("16-bit images", "not 8-bit"),
    ("corrupt files", "could not be decoded")])
def test_a_dataset_that_cannot_be_loaded_is_one_line_on_the_command_line(
    prelu_run, tmp_path, kind, says):
  out = subprocess.run([sys.executable, "evaluate.py", f"--workdir={prelu_run}",
                        f"--cache_dir={tmp_path / 'cache'}", *_bad_dataset(kind, tmp_path / "d")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert says in out.stderr.lower(), out.stderr[-2000:]


# --- Images the run trained on (#31.2) and folders of one split (#31.4) ---------------------


def _digits_folder(root, sources_and_counts) -> str:
  """A folder of PNGs root/<digit>/*.png (8x8, mode L): of each source (an ArraySource of
  digits), the first `count` images of every class."""
  for k, (source, count) in enumerate(sources_and_counts):
    for digit in range(10):
      (root / str(digit)).mkdir(parents=True, exist_ok=True)
      for i in np.flatnonzero(source.labels == digit)[:count]:
        Image.fromarray(source.images[i, ..., 0], "L").save(root / str(digit) / f"{k}-{i}.png")
  return f"folder:{root}"


def test_a_run_records_the_fingerprints_of_the_examples_it_trained_on(prelu_run):
  digits = input_pipeline.load("digits")
  np.testing.assert_array_equal(run_directory.read_train_fingerprints(str(prelu_run)),
                                np.sort(fingerprints.of_images(digits.train.images)))


def test_a_folder_holding_images_the_run_trained_on_is_refused_unless_allowed(
    prelu_run, tmp_path):
  digits = input_pipeline.load("digits")
  # test/ alone (no train/): 1 training and 2 test images of each digit.
  spec = _digits_folder(tmp_path / "leak" / "test", [(digits.train, 1), (digits.test, 2)])
  spec = spec.removesuffix("/test")
  out = subprocess.run([sys.executable, "evaluate.py", f"--workdir={prelu_run}",
                        f"--dataset={spec}", f"--cache_dir={tmp_path / 'cache'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert f"10 of the 30 test images of '{spec}' are images {prelu_run} trained on" in last
  assert "--allow_overlap" in last and "--list_test_files" in last
  assert not (prelu_run / "evaluations" / "leak-test.json").exists()
  result = evaluate.evaluate_run(str(prelu_run), spec=spec, allow_overlap=True,
                                 cache_dir=str(tmp_path / "cache"))
  assert result["train_overlap"] == 10 and result["examples"] == 30
  assert json.loads((prelu_run / "evaluations" / "leak-test.json").read_text())[
      "train_overlap"] == 10


def test_a_plain_class_folder_of_images_it_did_not_train_on_is_evaluated(prelu_run, tmp_path):
  digits = input_pipeline.load("digits")
  spec = _digits_folder(tmp_path / "clean", [(digits.test, 3)])  # clean/<digit>/*.png
  result = evaluate.evaluate_run(str(prelu_run), spec=spec, name="clean",
                                 cache_dir=str(tmp_path / "cache"))
  assert result["train_overlap"] == 0 and result["examples"] == 30
  assert result["class_names"] == [str(d) for d in range(10)]


def test_a_run_from_before_fingerprints_is_evaluated_saying_overlap_cannot_be_checked(
    prelu_run, tmp_path, caplog):
  older = copy_run(prelu_run, tmp_path / "older", drop=(run_directory.TRAIN_FINGERPRINTS,))
  with caplog.at_level(logging.WARNING):
    result = evaluate.evaluate_run(older, split="train", name="train")
  assert result["train_overlap"] is None
  assert "predates recorded training fingerprints" in caplog.text
  assert "cannot be checked" in caplog.text


def _fake_run(path, **overrides) -> str:
  """A run directory holding only the records --list_test_files reads."""
  config = tiny_config("relu", **overrides)
  dataset = input_pipeline.load(config.dataset, holdout=config.holdout,
                                cache_dir=str(path.parent / "cache")) if \
      config.dataset.startswith("folder:") else None
  path.mkdir(parents=True)
  run_directory.write_json(str(path / run_directory.CONFIG), records.config_record(config))
  run_directory.write_json(str(path / run_directory.DATASET), {
      records.TEST_EXAMPLES: len(dataset.test) if dataset else 10000,
      records.SKIPPED_FILES: []})
  return str(path)


def test_list_test_files_prints_a_folder_runs_held_out_files(tmp_path):
  root = tmp_path / "data"
  digits = input_pipeline.load("digits")
  _digits_folder(root / "train", [(digits.train, 4)])
  run = _fake_run(tmp_path / "run", dataset=f"folder:{root}", holdout=10)
  out = subprocess.run([sys.executable, "evaluate.py", f"--workdir={run}",
                        "--list_test_files"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  files = out.stdout.split()
  assert len(files) == 10 and all(f.startswith("train/") for f in files)
  assert (f"is tested on 10 files of 'folder:{root}', a stratified hold-out of 10 of "
          f"train/'s images; relative to {root}:") in out.stderr
  # The same images, in the same order, as the run's pipeline holds its test split.
  held = input_pipeline.load(f"folder:{root}", holdout=10, grayscale=True,
                             cache_dir=str(tmp_path / "cache"))
  listed = np.stack([np.asarray(Image.open(root / f))[..., None] for f in files])
  np.testing.assert_array_equal(listed, held.test.images)


def test_list_test_files_says_a_tfds_split_has_no_files(tmp_path):
  run = _fake_run(tmp_path / "run", dataset="tfds:cifar10")
  assert evaluate.test_files(run) == ([], (
      f"{run} is tested on TFDS split 'test' of 'tfds:cifar10': TFDS records, not files; "
      "there are none to list."))
