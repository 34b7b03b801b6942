"""The exported model (training/export.py): checked whole, tied to its run, portable (its
forward pass runs with jax alone), and older exports upgraded by one command."""

import functools
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import serialization

import evaluate
import input_pipeline
import models
from tests.helpers import REPO, copy_run
from training import export, run_directory


def digest(value) -> str:
  """The SHA-256 of a field's canonical JSON, computed here as the docstring defines it."""
  return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"))
                        .encode()).hexdigest()


def file_sha256(path) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def model_json(run):
  return os.path.join(run, "model", "model.json")


def edit(run, resign=False, **changes):
  """Changes model.json's fields (None drops one); `resign` recomputes its field digests,
  as a deliberate edit would."""
  meta = json.loads(open(model_json(run)).read())
  for key, value in changes.items():
    if value is None:
      meta.pop(key)
    else:
      meta[key] = value
  if resign:
    meta["fields_sha256"] = {k: digest(v) for k, v in meta.items() if k != "fields_sha256"}
  open(model_json(run), "w").write(json.dumps(meta, indent=2))


def one_line_error(call, match=None) -> str:
  with pytest.raises(export.ExportError) as info:
    call()
  text = str(info.value)
  assert "\n" not in text, text
  if match:
    assert re.search(match, text), text
  return text


def test_a_loaded_export_predicts_what_the_run_measured(prelu_run):
  m = export.load(str(prelu_run), run_directory.read_run(str(prelu_run)))
  assert m.class_names == [str(i) for i in range(10)] and m.image_shape == (8, 8, 1)
  assert m.metadata["rectifier"] == "prelu" and m.step == 6
  test = input_pipeline.load("digits").test
  errors = np.mean(np.argmax(np.asarray(m.logits(test.images)), -1) != test.labels)
  summary = json.loads((prelu_run / "summary.json").read_text())
  assert errors == pytest.approx(summary["test_error"], abs=1e-6)
  sizes = {f: os.path.getsize(prelu_run / "model" / f) for f in os.listdir(prelu_run / "model")}
  assert sorted(sizes) == ["forward.jax", "model.json", "variables.msgpack"]
  assert sum(sizes.values()) < 150_000, sizes


def test_model_json_holds_the_digest_of_every_field_and_file(prelu_run):
  meta = json.loads(open(model_json(prelu_run)).read())
  assert meta["format"] == 2 and meta["seed"] == 0
  assert meta["variables_sha256"] == file_sha256(prelu_run / "model" / "variables.msgpack")
  assert meta["forward_sha256"] == file_sha256(prelu_run / "model" / "forward.jax")
  assert meta["fields_sha256"] == {k: digest(v) for k, v in meta.items()
                                   if k != "fields_sha256"}


@pytest.mark.parametrize("field, value", [
    ("rectifier", "relu"), ("class_names", [str(i) for i in reversed(range(10))]),
    ("step", 3), ("input_scale", 1.0), ("model_options", {"width": 0.125})])
def test_an_edited_model_json_is_refused_in_one_line_naming_the_file_and_field(
    prelu_run, tmp_path, field, value):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  edit(run, **{field: value})
  text = one_line_error(lambda: export.load(run), rf"model\.json was edited.*'{field}'")
  assert model_json(run) in text
  # Loaded with its run, the field's two values are named too.
  text = one_line_error(lambda: export.load(run, run_directory.read_run(run)),
                        rf"model\.json disagrees with the run's records: its {field} ")
  assert "model.json was edited" in text and "'" + field + "'" in text


def test_a_dropped_or_added_field_is_refused_naming_it(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  edit(run, seed=None, note="hand-made")
  one_line_error(lambda: export.check(run), r"'seed' \(dropped\), 'note' \(added\)")


@pytest.mark.parametrize("record, key, value", [
    ("config.json", "rectifier", "rrelu"), ("config.json", "seed", 7),
    ("config.json", "model_options", {"width": 0.5}), ("dataset.json", "image_shape", [8, 8, 3]),
    ("dataset.json", "class_names", list("abcdefghij")), ("summary.json", "step", 9),
    ("summary.json", "epoch", 3.5)])
def test_an_export_that_disagrees_with_its_run_is_refused_naming_file_field_and_values(
    prelu_run, tmp_path, record, key, value):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  path = os.path.join(run, record)
  content = json.loads(open(path).read())
  before, content[key] = content[key], value
  open(path, "w").write(json.dumps(content))
  text = one_line_error(lambda: export.check(run, run_directory.read_run(run)),
                        rf"model\.json disagrees with the run's records: its {key} ")
  assert f"{record}'s" in text and repr(value)[:20] in text and repr(before)[:20] in text
  assert "model.json matches its digests" in text
  assert export.check(run)  # alone, the export itself is whole


def test_another_runs_export_is_refused(prelu_run, tmp_path):
  # Two seeds of one setting differ only in their seed (and weights): the seed ties them.
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  edit(run, resign=True, seed=1)
  one_line_error(lambda: evaluate.evaluate_run(run),
                 r"its seed 1, config\.json's 0 \(model\.json matches its digests")


@pytest.mark.parametrize("what", ["directory", "file"])
def test_a_symlinked_export_is_refused(prelu_run, tmp_path, what):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  other = copy_run(prelu_run, tmp_path / "other", drop=("checkpoints",))
  target = os.path.join(run, "model") if what == "directory" else os.path.join(
      run, "model", "variables.msgpack")
  os.rename(target, target + ".moved")
  os.symlink(os.path.join(other, os.path.relpath(target, run)), target)
  one_line_error(lambda: export.load(run), rf"{re.escape(target)} is a symbolic link")


@pytest.mark.parametrize("change, says", [
    (lambda m: {"model_options": {**m["model_options"], "width": 0.125}},
     r"params/.* has shape .*, the network's"),
    (lambda m: {"num_classes": 5, "class_names": list("abcde")}, r"params/.*10\).*5\)"),
    (lambda m: {"image_shape": [16, 16, 1]},
     r"mean_image has shape \(8, 8, 1\), the network's \(16, 16, 1\)"),
    (lambda m: {"rectifier": "relu"}, r"params/.*slope is not the network's"),
    (lambda m: {"model": "resnet"}, "describes no network this code builds"),
    (lambda m: {"input_scale": None}, "lacks the field"),
], ids=["width", "classes", "image shape", "rectifier", "model", "dropped key"])
def test_edits_that_change_shapes_or_drop_a_key_are_one_export_error_line(
    prelu_run, tmp_path, change, says):
  # Edits whose field digests were recomputed: the shapes are what is left to catch them.
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  edit(run, resign=True, **change(export.read_metadata(run)))
  text = one_line_error(lambda: export.load(run), says)
  assert "Scope" not in text and "Traceback" not in text


def test_variables_without_a_key_are_one_export_error_line(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  file = os.path.join(run, "model", "variables.msgpack")
  variables = serialization.msgpack_restore(open(file, "rb").read())
  del variables["params"]["conv1"]
  open(file, "wb").write(serialization.msgpack_serialize(variables))
  edit(run, resign=True, variables_sha256=file_sha256(file))
  one_line_error(lambda: export.load(run), r"params/conv1/kernel is missing")


# --- The portable forward pass ---------------------------------------------------------------

OUTSIDE = textwrap.dedent("""
    import importlib.util, json, sys
    import jax, numpy as np
    for name in ("training", "models", "input_pipeline", "configs"):
      assert importlib.util.find_spec(name) is None, name  # not the checkout's code
    run = sys.argv[1]
    fwd = jax.export.deserialize(open(f"{run}/model/forward.jax", "rb").read())
    names = json.load(open(f"{run}/model/model.json"))["class_names"]
    images = np.load("images.npy")
    five, two = np.asarray(fwd.call(images)), np.asarray(fwd.call(images[:2]))
    assert "flax" not in sys.modules and "rectifiers" not in sys.modules
    np.save("five.npy", five); np.save("two.npy", two)
    print(json.dumps([names[i] for i in five.argmax(-1)]))
""")


@pytest.mark.slow
def test_the_forward_pass_runs_outside_the_checkout_with_jax_alone(prelu_run, tmp_path):
  images = input_pipeline.load("digits").test.images[:5]
  np.save(tmp_path / "images.npy", images)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  out = subprocess.run([sys.executable, "-c", OUTSIDE, str(prelu_run)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  expected = np.asarray(export.load(str(prelu_run)).logits(images))
  five, two = np.load(tmp_path / "five.npy"), np.load(tmp_path / "two.npy")
  assert five.dtype == np.float32 and five.shape == (5, 10) and two.shape == (2, 10)
  np.testing.assert_allclose(five, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(two, expected[:2], rtol=1e-5, atol=1e-5)
  assert json.loads(out.stdout) == [str(i) for i in expected.argmax(-1)]


def test_the_forward_pass_file_names_no_path_of_the_checkout(prelu_run):
  data = (prelu_run / "model" / "forward.jax").read_bytes()
  assert str(REPO).encode() not in data and b"nin.py" not in data


@pytest.mark.parametrize("name, options, image_shape", [
    ("ndsb", {"width": 0.0625}, (48, 48, 1)),
    pytest.param("inception_bn", {"width": 0.0625}, (28, 28, 3), marks=pytest.mark.slow)])
def test_every_network_exports_a_batch_polymorphic_forward_pass(tmp_path, name, options,
                                                                image_shape):
  model = models.create(name, num_classes=3, rectifier="rrelu", **options)
  # Random variables of the right shapes (BatchNorm variances positive): initialising
  # Inception-BN, even jitted, costs half a minute of compiling on two cores.
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          np.zeros((1, *image_shape), np.float32))
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, s: (np.ones(s.shape, s.dtype) if path[-1].key == "var" else
                       rng.normal(0, 0.1, s.shape).astype(s.dtype)), shapes)
  config = {"model": name, "rectifier": "rrelu",
            "model_options": {**models.default_options(name), **options}, "dtype": "float32",
            "input_scale": 1 / 255, "augment": {"crop": "none"}, "dataset": "test", "seed": 0}
  dataset = {"num_classes": 3, "class_names": ["a", "b", "c"], "image_shape": list(image_shape)}
  mean = np.random.default_rng(0).uniform(0, 255, image_shape).astype(np.float32)
  export.save(str(tmp_path), config=config, dataset=dataset, params=variables["params"],
              batch_stats=variables.get("batch_stats"), mean_image=mean, step=1, epoch=1.0,
              code_versions=[])
  m = export.load(str(tmp_path))
  fwd = jax.export.deserialize((tmp_path / "model" / "forward.jax").read_bytes())
  images = np.random.default_rng(1).integers(0, 256, (3, *image_shape), dtype=np.uint8)
  expected = np.asarray(jax.jit(m.logits)(images))  # test mode: each row on its own
  for n in (1, 3):
    np.testing.assert_allclose(np.asarray(fwd.call(images[:n])), expected[:n], rtol=1e-4,
                               atol=1e-4)


# --- A damaged export and what to do about it -----------------------------------------------


def damage_variables(run):
  path = os.path.join(run, "model", "variables.msgpack")
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(path, "wb").write(bytes(data))


def test_a_damaged_export_is_refused_naming_the_file(prelu_run, tmp_path):
  damaged = copy_run(prelu_run, tmp_path / "damaged", drop=("checkpoints",))
  damage_variables(damaged)
  text = one_line_error(lambda: evaluate.evaluate_run(damaged),
                        "variables.msgpack does not match")
  # Without its final checkpoint, the way back is a copy.
  assert "no checkpoint at step 6" in text and "restore" in text


def test_with_step_a_damaged_export_falls_back_to_that_checkpoint_with_a_warning(
    prelu_run, tmp_path, caplog):
  run = copy_run(prelu_run, tmp_path / "run")
  damage_variables(run)
  text = one_line_error(lambda: evaluate.evaluate_run(run), "variables.msgpack does not match")
  assert f"python evaluate.py --workdir={run} --step=6" in text
  with caplog.at_level(logging.WARNING):
    result = evaluate.evaluate_run(run, step=6, name="own")
  summary = run_directory.read_run(run).summary
  assert result["model_source"] == "checkpoint" and result["step"] == 6
  assert (result["error"], result["loss"]) == (summary["test_error"], summary["test_loss"])
  assert "Evaluating the checkpoint at step 6 instead" in caplog.text


@pytest.mark.slow
def test_the_command_the_error_gives_writes_the_export_again(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run")
  edit(run, rectifier="relu")
  text = one_line_error(lambda: export.check(run, run_directory.read_run(run)))
  command = re.search(r"(python train\.py [^()]*?) \(or evaluate", text).group(1)
  assert command == f"python train.py --config=configs/rerun.py:{run} --workdir={run}"
  out = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "writing them again from its final checkpoint" in out.stderr
  record = run_directory.read_run(run)
  assert export.check(run, record)["rectifier"] == "prelu"
  result = evaluate.evaluate_run(run, name="own")
  assert (result["error"], result["model_source"]) == (record.summary["test_error"], "export")


def test_evaluate_takes_the_preprocessing_from_one_function(prelu_run):
  from_export = evaluate.load_trained(str(prelu_run))
  from_checkpoint = evaluate.load_trained(str(prelu_run), step=3)
  assert (from_export.source, from_checkpoint.source) == ("export", "checkpoint")
  a, b = from_export.preprocessing, from_checkpoint.preprocessing
  assert (a.augment, a.input_scale, a.image_shape) == (b.augment, b.input_scale, b.image_shape)
  np.testing.assert_array_equal(a.mean_image, b.mean_image)
  np.testing.assert_array_equal(a.mean_image, np.load(prelu_run / "mean_image.npy"))


# --- Format 1 and the upgrade ---------------------------------------------------------------


def downgrade(run):
  """The export as the code of format 1 wrote it: no forward.jax, no field digests, no seed."""
  meta = json.loads(open(model_json(run)).read())
  os.remove(os.path.join(run, "model", "forward.jax"))
  old = {k: meta[k] for k in ("model", "num_classes", "rectifier", "model_options", "dtype",
                              "class_names", "image_shape", "input_scale", "augment",
                              "dataset", "step", "epoch", "code_versions")}
  old = {"format": 1, **old, "variables_sha256": meta["variables_sha256"]}
  open(model_json(run), "w").write(json.dumps(old, indent=2) + "\n")


def test_a_format_1_export_is_refused_with_the_upgrade_command(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  downgrade(run)
  one_line_error(lambda: evaluate.evaluate_run(run),
                 rf"format 1.*python -m training\.export --upgrade {re.escape(run)}$")


def test_upgrade_brings_format_1_exports_to_format_2_from_their_own_variables(
    prelu_run, tmp_path):
  root = tmp_path / "study"
  runs = [copy_run(prelu_run, root / "runs" / s / "seed0", drop=("checkpoints",))
          for s in ("prelu", "relu")]
  variables = file_sha256(os.path.join(runs[0], "model", "variables.msgpack"))
  for run in runs:
    downgrade(run)
  out = subprocess.run([sys.executable, "-m", "training.export", f"--upgrade={root}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.splitlines() == [
      f"{run}/model: upgraded format 1 -> 2 (variables kept, digest checked; forward.jax "
      "written)" for run in runs]
  for run in runs:
    record = run_directory.read_run(run)
    meta = export.check(run, record)
    assert meta["format"] == 2 and meta["seed"] == 0
    assert file_sha256(os.path.join(run, "model", "variables.msgpack")) == variables
    assert sorted(os.listdir(os.path.join(run, "model"))) == [
        "forward.jax", "model.json", "variables.msgpack"]
    assert evaluate.evaluate_run(run, name="own")["error"] == record.summary["test_error"]
  before = {run: file_sha256(model_json(run)) for run in runs}
  assert [what for _, what, _ in export.upgrade_all(str(root))] == [
      "already format 2 (checked whole), unchanged"] * 2
  assert {run: file_sha256(model_json(run)) for run in runs} == before


def test_upgrade_refuses_a_format_1_export_whose_variables_are_damaged(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  downgrade(run)
  damage_variables(run)
  before = file_sha256(model_json(run))
  [(directory, what, ok)] = export.upgrade_all(run)
  assert not ok and "variables.msgpack does not match" in what
  assert file_sha256(model_json(run)) == before
  assert not os.path.exists(os.path.join(run, "model", "forward.jax"))
  out = subprocess.run([sys.executable, "-m", "training.export", f"--upgrade={run}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1 and "not upgraded" in out.stdout


def test_upgrade_waits_for_no_one_a_run_in_use_is_left_as_it_is(prelu_run, tmp_path):
  run = copy_run(prelu_run, tmp_path / "run", drop=("checkpoints",))
  downgrade(run)
  before = file_sha256(model_json(run))
  with run_directory.DirectoryLock(run):  # a training writes the run
    [(_, what, ok)] = export.upgrade_all(run)
  assert not ok and "in use by" in what and file_sha256(model_json(run)) == before
  [(_, what, ok)] = export.upgrade_all(run)
  assert ok and what.startswith("upgraded format 1 -> 2")
