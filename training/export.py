"""A trained model as a small, self-contained export: `WORKDIR/model/`, checked whole.

    model/model.json         what is needed to rebuild and feed the network, and the
                             digests that hold the export together (below)
    model/variables.msgpack  flax.serialization msgpack of {"params", "batch_stats",
                             "mean_image"}: plain nested maps of arrays, no pickle
    model/forward.jax        the test-time forward pass, preprocessing included, as a
                             serialized `jax.export`: uint8 (N, H, W, C) images in the run's
                             image shape in, float32 (N, classes) logits out, the
                             parameters baked in, any N; it needs jax alone

model.json (format 2) holds the format, the model's name and every option, the rectifier
spec, the computation dtype, the class names and the image shape the network was trained
on, the preprocessing constants (the training split's mean image is in the msgpack;
`input_scale` and the test-time augmentation config here), the run's seed, the step and
epoch of the weights, the dataset, the code versions that trained it
(training/provenance.py) and its digests: `variables_sha256` and `forward_sha256`, the
SHA-256 of the two other files, and `fields_sha256`, {field: SHA-256 of its canonical
JSON} for every other field, canonical JSON being Python's
`json.dumps(value, sort_keys=True, separators=(",", ":"))` (ASCII: other characters
escaped). It is written last.

`check` and `load` refuse, in one `ExportError` line that names the file (and the field
where there is one) and says how to repair it: a `model/` or file that is a symbolic link
(an export is a run's own files, not a pointer to another's); a model.json of another
format (format 1, from before digests covered model.json, gives the upgrade command
below); a field that is edited, dropped or added; a file that is missing or does not
match its digest; variables whose keys or shapes do not fit the network that model.json
describes. Given the run the export belongs to (`run=`: evaluate.py, predict.py and a
finishing run's check, training/finish.py), they also refuse an export that disagrees
with the run's records, naming the file, the field and both values: config.json and
dataset.json (`RUN_FIELDS`) and summary.json's step and epoch (an unfinished run: one of
its metrics rows).

Every finished run writes one (training/finish.py); rerunning its training command,
`python train.py --config=configs/rerun.py:RUN --workdir=RUN`, writes a missing or damaged
one again from the final checkpoint. At width 0.25 NIN's is ~550 KB, small enough to
commit with a study. Exports of format 1 are upgraded in place, from their own variables
once their digest is checked, by `python -m training.export --upgrade PATH` (a run, or any
folder above runs: every export under it; idempotent).

Outside this checkout, with `jax` alone (`pip install jax flatbuffers`: jax.export's
serialization needs flatbuffers; numpy comes with jax), images uint8 (N, H, W, C):

    import json, jax, numpy as np
    fwd = jax.export.deserialize(open("RUN/model/forward.jax", "rb").read())
    names = json.load(open("RUN/model/model.json"))["class_names"]
    logits = fwd.call(images_uint8)   # (N, H, W, C) uint8 -> (N, classes)
    print([names[i] for i in np.argmax(logits, -1)])

It is lowered for CPU, CUDA, ROCm and TPU (`PLATFORMS`); a later jax reads it within
jax.export's compatibility window. In this checkout:

    from training import export
    m = export.load("results/cifar10-full/runs/relu/seed0")   # the run or its model/
    logits = m.logits(images_uint8)                           # (N, H, W, C) -> (N, classes)
    m.model.apply(m.variables, m.preprocess(images_uint8), train=False)  # the same
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np

import models
from configs import validation
from input_pipeline import augment
from training import records, run_directory

DIRECTORY = "model"
METADATA, VARIABLES, FORWARD = "model.json", "variables.msgpack", "forward.jax"
FORMAT = 2
FIELDS_DIGEST = records.FIELDS_SHA256
FILE_DIGESTS = {VARIABLES: records.VARIABLES_SHA256, FORWARD: records.FORWARD_SHA256}
REQUIRED = (records.EXPORT_FORMAT, records.MODEL, records.NUM_CLASSES, records.RECTIFIER,
            records.MODEL_OPTIONS, records.DTYPE, records.CLASS_NAMES, records.IMAGE_SHAPE,
            records.INPUT_SCALE, records.AUGMENT, records.DATASET, records.STEP, records.EPOCH,
            records.CODE_VERSIONS, *FILE_DIGESTS.values(), FIELDS_DIGEST)
# The platforms forward.jax is lowered for: one file runs wherever jax does.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
UPGRADE = "python -m training.export --upgrade"
# (model.json field, the run's record, its field): what ties an export to its run. `seed`
# is compared where both have it (an export upgraded outside its run has none).
RUN_FIELDS = tuple((f, run_directory.CONFIG, f) for f in (
    records.MODEL, records.RECTIFIER, records.MODEL_OPTIONS, records.DTYPE, records.INPUT_SCALE,
    records.AUGMENT, records.DATASET, records.SEED)) + tuple(
        (f, run_directory.DATASET, f) for f in (records.CLASS_NAMES, records.IMAGE_SHAPE,
                                                records.NUM_CLASSES))


class ExportError(RuntimeError):
  """An export is missing, incomplete, damaged or not its run's; the message (one line)
  names the file and says what to do."""


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
  """What turns uint8 (N, H, W, C) images into the network's test-time input:
  x = crop(images - mean_image) * input_scale, crop being the test-time one (a centre
  crop where training cropped at random; input_pipeline/augment.py)."""

  mean_image: np.ndarray              # float32 (H, W, C), the training split's mean
  augment: augment.AugmentConfig
  input_scale: float
  image_shape: tuple[int, ...]        # (H, W, C) of the images it takes

  def __call__(self, images: Any) -> jax.Array:
    return augment.preprocess(jnp.asarray(images), None, mean_image=jnp.asarray(self.mean_image),
                              config=self.augment, train=False) * self.input_scale

  @property
  def input_shape(self) -> tuple[int, ...]:
    """(H', W', C) of the network's input."""
    return augment.output_shape(self.image_shape, self.augment)


def preprocessing(record: Mapping[str, Any], mean_image: np.ndarray,
                  image_shape: Sequence[int]) -> Preprocessing:
  """The test-time preprocessing of a run: `record` is its config.json or its export's
  model.json (both hold `augment` and `input_scale`), `mean_image` its training split's
  mean, `image_shape` its images' (H, W, C). The one place evaluate.py and the export
  take it from."""
  return Preprocessing(mean_image=np.asarray(mean_image, np.float32),
                       augment=validation.augment_config(record),
                       input_scale=float(record[records.INPUT_SCALE]),
                       image_shape=tuple(int(n) for n in image_shape))


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  """A loaded export: the network, its variables and its preprocessing.

  Attributes:
    model: the Flax module (`model.apply(variables, x, train=False)`).
    variables: {"params": ...} and, for networks with BatchNorm, "batch_stats".
    mean_image: float32 (H, W, C), the training split's per-pixel mean.
    metadata: model.json as a dict (class_names, image_shape, step, code_versions, ...).
  """

  model: Any
  variables: dict[str, Any]
  mean_image: np.ndarray
  metadata: dict[str, Any]

  @property
  def class_names(self) -> list[str]:
    return list(self.metadata[records.CLASS_NAMES])

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.metadata[records.IMAGE_SHAPE])

  @property
  def step(self) -> int:
    return int(self.metadata[records.STEP])

  @property
  def preprocessing(self) -> Preprocessing:
    return preprocessing(self.metadata, self.mean_image, self.image_shape)

  def preprocess(self, images: Any) -> jax.Array:
    """uint8 (N, H, W, C) images as the network saw them at test time (`Preprocessing`)."""
    return self.preprocessing(images)

  def logits(self, images: Any) -> jax.Array:
    """Test-mode logits, float32 (N, num_classes)."""
    return self.model.apply(self.variables, self.preprocess(images), train=False)


# --- Digests -------------------------------------------------------------------------------


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_json(value: Any) -> bytes:
  """The bytes a field's digest is taken over: sorted keys, no spaces, ASCII."""
  return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def field_digests(metadata: Mapping[str, Any]) -> dict[str, str]:
  """{field: SHA-256 of its canonical JSON} for every field but `fields_sha256`."""
  return {k: hashlib.sha256(canonical_json(v)).hexdigest()
          for k, v in metadata.items() if k != FIELDS_DIGEST}


def _edited_fields(metadata: Mapping[str, Any]) -> list[str]:
  """What in model.json does not match its fields_sha256: "'rectifier'", "'seed' (dropped)",
  "'x' (added)"; ["fields_sha256 (missing)"] when there is nothing to compare with."""
  recorded = metadata.get(FIELDS_DIGEST)
  if not isinstance(recorded, dict):
    return [f"{FIELDS_DIGEST} (missing)"]
  actual = field_digests(metadata)
  return ([repr(k) for k in recorded if k in actual and actual[k] != recorded[k]]
          + [f"{k!r} (dropped)" for k in recorded if k not in actual]
          + [f"{k!r} (added)" for k in actual if k not in recorded])


# --- Where an export is, and what to do about a bad one ----------------------------------


def export_directory(path: str) -> str:
  """`path` itself if it holds model.json, else `path/model`."""
  return path if os.path.lexists(os.path.join(path, METADATA)) else os.path.join(path, DIRECTORY)


def has_export(path: str) -> bool:
  return os.path.lexists(os.path.join(export_directory(path), METADATA))


def _run_path(directory: str) -> str | None:
  """The run an export directory belongs to (the folder above it, holding a config.json)."""
  parent = os.path.dirname(os.path.normpath(directory))
  return parent if os.path.exists(os.path.join(parent, run_directory.CONFIG)) else None


def repair(directory: str, run: run_directory.RunRecord | None = None) -> str:
  """What to do about the bad export in `directory`: the command that writes it again
  (rerunning the run's training writes it from the final checkpoint: train.py, finish.py)
  where that checkpoint exists, and the checkpoint's evaluation; else restoring a copy."""
  path = run.path if run is not None else _run_path(directory)
  if path is None:
    return f"Restore {directory} from a copy."
  if run is None:
    try:
      run = run_directory.read_run(path)
    except run_directory.RunDirectoryError:
      pass  # a damaged record: its final step is unknown.
  step = run.summary.get(records.STEP) if run is not None and run.summary else None
  command = f"python train.py --config=configs/rerun.py:{path} --workdir={path}"
  if step is not None and os.path.isdir(os.path.join(path, run_directory.CHECKPOINTS, str(step))):
    return (f"Write it again from the run's final checkpoint: {command} (or evaluate that "
            f"checkpoint: python evaluate.py --workdir={path} --step={step}).")
  where = f"at step {step} " if step is not None else ""
  return (f"The run has no checkpoint {where}to write it again from ({command} would); "
          f"restore {directory} from a copy (a committed study's: git checkout -- {directory}).")


def _refuse_links(directory: str) -> None:
  """An export is the run's own files: a link could make it another run's."""
  for p in (os.path.normpath(directory), *(os.path.join(directory, f)
                                           for f in (METADATA, VARIABLES, FORWARD))):
    if os.path.islink(p):
      raise ExportError(f"{p} is a symbolic link (to {os.readlink(p)}): an export must be "
                        "its run's own files. Copy the files there instead of linking them.")


def _short(value: Any, limit: int = 80) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


# --- Reading and checking ------------------------------------------------------------------


def _read(directory: str, run: run_directory.RunRecord | None) -> dict[str, Any]:
  """model.json of the export in `directory`, read and of this format."""
  _refuse_links(directory)
  file = os.path.join(directory, METADATA)
  if not os.path.exists(file):
    raise ExportError(f"No exported model in {os.path.dirname(directory) or directory}: "
                      f"{file} is missing (a run writes its export when it finishes).")
  try:
    metadata = run_directory.read_json(file)
  except (OSError, ValueError) as e:
    raise ExportError(f"{file} is not readable JSON ({str(e).splitlines()[0]}). "
                      f"{repair(directory, run)}") from None
  found = metadata.get(records.EXPORT_FORMAT)
  if found == 1:
    raise ExportError(f"{file} is an export of format 1, which this code reads no more (its "
                      f"model.json has no digest of its own): upgrade it, from its own "
                      f"variables once their digest is checked, with: {UPGRADE} "
                      f"{_run_path(directory) or directory}")
  if found != FORMAT:
    raise ExportError(f"{file} is not an export of format {FORMAT} (its format: "
                      f"{_short(found)}). {repair(directory, run)}")
  return metadata


def read_metadata(path: str) -> dict[str, Any]:
  """model.json of the export in `path` (a run directory or its model/), read but not
  checked (`check` does)."""
  return _read(export_directory(path), None)


def recorded_step(path: str) -> int | None:
  """The step model.json names, or None when it cannot be read."""
  try:
    step = read_metadata(path).get(records.STEP)
  except (ExportError, OSError):
    return None
  return step if isinstance(step, int) else None


def disagreements(metadata: Mapping[str, Any], run: run_directory.RunRecord
                  ) -> list[str]:
  """Where model.json and the run's records differ: "its rectifier 'relu', config.json's
  'rrelu'", ...; fields either side lacks are not compared (but for the step)."""
  out = []
  by_file = {run_directory.CONFIG: run.config, run_directory.DATASET: run.dataset}
  for field, name, key in RUN_FIELDS:
    record = by_file[name]
    if field in metadata and key in record and metadata[field] != record[key]:
      out.append(f"its {field} {_short(metadata[field])}, {name}'s {_short(record[key])}")
  step = metadata.get(records.STEP)
  summary: Mapping[str, Any] | None = run.summary
  if summary is not None and records.STEP in summary:
    for key in (records.STEP, records.EPOCH):
      if key in summary and metadata.get(key) != summary[key]:
        out.append(f"its {key} {_short(metadata.get(key))}, {run_directory.SUMMARY}'s "
                   f"{summary[key]}")
  elif run.rows and step not in [r[records.STEP] for r in run.rows]:
    out.append(f"its step {_short(step)}, which no row of {run_directory.METRICS} has (its "
               f"last: {run.rows[-1][records.STEP]})")
  return out


def check(path: str, run: run_directory.RunRecord | None = None) -> dict[str, Any]:
  """model.json of the complete, undamaged export in `path` (a run directory or its
  model/), each file matching its digest and, given `run` (the run it belongs to), agreeing
  with the run's records; ExportError, one line naming the file, otherwise."""
  directory = export_directory(path)
  metadata = _read(directory, run)
  file = os.path.join(directory, METADATA)
  edited = _edited_fields(metadata)
  if run is not None and (differ := disagreements(metadata, run)):
    why = (f"model.json was edited: {', '.join(edited)} "
           f"{'does' if len(edited) == 1 else 'do'} not match {FIELDS_DIGEST}" if edited else
           "model.json matches its digests: the export is another run's, or the run's "
           "records were edited")
    raise ExportError(f"{file} disagrees with the run's records: {'; '.join(differ)} "
                      f"({why}). {repair(directory, run)}")
  if edited:
    raise ExportError(f"{file} was edited or damaged after it was written: its "
                      f"{'field' if len(edited) == 1 else 'fields'} {', '.join(edited)} "
                      f"{'does' if len(edited) == 1 else 'do'} not match its "
                      f"{FIELDS_DIGEST}. {repair(directory, run)}")
  if missing := [k for k in REQUIRED if k not in metadata]:
    raise ExportError(f"{file} lacks the field(s) {', '.join(missing)}. "
                      f"{repair(directory, run)}")
  for name, key in FILE_DIGESTS.items():
    other = os.path.join(directory, name)
    if not os.path.exists(other):
      raise ExportError(f"{other} is missing: the export in {path} is incomplete. "
                        f"{repair(directory, run)}")
    if _sha256(other) != metadata[key]:
      raise ExportError(f"{other} does not match the SHA-256 digest in its {METADATA} "
                        f"({key}): the file is damaged. {repair(directory, run)}")
  return metadata


def _paths(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
  """{"params/conv1/kernel": shape, ...} of a nested map of arrays."""
  if isinstance(tree, Mapping):
    return {k: v for key, sub in tree.items() for k, v in _paths(sub, f"{prefix}{key}/").items()}
  return {prefix.rstrip("/"): tuple(tree.shape if hasattr(tree, "shape") else np.shape(tree))}


def _build(metadata: Mapping[str, Any], restored: Any, file: str) -> ExportedModel:
  """The ExportedModel of model.json `metadata` and the variables `restored` from `file`;
  ExportError when they do not fit each other (an edit of width or classes, a dropped
  key), never flax's shape error."""
  meta_file = os.path.join(os.path.dirname(file), METADATA)
  try:
    model = models.from_config(metadata, metadata[records.NUM_CLASSES])
    prep = preprocessing(metadata, np.zeros(metadata[records.IMAGE_SHAPE], np.float32),
                         metadata[records.IMAGE_SHAPE])
    expected = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, *prep.input_shape), jnp.float32), train=False))
  except Exception as e:  # pylint: disable=broad-except
    # Whatever an edited model.json makes the network builder raise (KeyError, TypeError,
    # ValueError, flax's errors) is that file's fault.
    raise ExportError(f"{meta_file} describes no network this code builds "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
                      ) from None
  want = {**_paths(dict(expected)), "mean_image": tuple(prep.image_shape)}
  have = _paths(restored) if isinstance(restored, Mapping) else {}
  problems = ([f"{k} is missing" for k in want if k not in have]
              + [f"{k} is not the network's" for k in have if k not in want]
              + [f"{k} has shape {have[k]}, the network's {want[k]}"
                 for k in want if k in have and have[k] != want[k]])
  if problems:
    raise ExportError(
        f"{file} does not fit the network {meta_file} describes ({metadata[records.MODEL]}, "
        f"{_short(metadata[records.MODEL_OPTIONS], 120)}, {metadata[records.NUM_CLASSES]} "
        f"classes, images {metadata[records.IMAGE_SHAPE]}): {'; '.join(problems[:4])}"
        f"{' ...' if len(problems) > 4 else ''}.")
  variables = {k: restored[k] for k in ("params", "batch_stats") if k in restored}
  return ExportedModel(model=model, variables=jax.tree.map(jnp.asarray, variables),
                       mean_image=np.asarray(restored["mean_image"], np.float32),
                       metadata=dict(metadata))


def _restore(file: str) -> Any:
  with open(file, "rb") as f:
    try:
      return serialization.msgpack_restore(f.read())
    except Exception as e:  # pylint: disable=broad-except  (msgpack's many errors)
      raise ExportError(f"{file} is not a msgpack of arrays ({type(e).__name__}).") from None


def load(path: str, run: run_directory.RunRecord | None = None) -> ExportedModel:
  """The export in `path` (a run directory or its model/), checked whole (`check`; given
  `run`, also against the run's records)."""
  metadata = check(path, run)
  file = os.path.join(export_directory(path), VARIABLES)
  return _build(metadata, _restore(file), file)


# --- Writing -------------------------------------------------------------------------------


def serialized_forward(exported: ExportedModel) -> bytes:
  """`exported`'s test-time forward pass, preprocessing included, as `jax.export` bytes:
  uint8 (b, H, W, C) -> float32 (b, classes) for any batch size b, on `PLATFORMS`."""
  h, w, c = exported.image_shape

  def forward(images: jax.Array) -> jax.Array:
    return exported.logits(images).astype(jnp.float32)

  shape = jax.export.symbolic_shape(f"b, {h}, {w}, {c}")
  # Without Python source locations: they would put this checkout's absolute paths in the
  # file, and make its bytes depend on where the checkout lies.
  # The option has no public context manager: it is set for the lowering and put back.
  option = "jax_traceback_in_locations_limit"
  limit = getattr(jax.config, option)
  jax.config.update(option, 0)
  try:
    return bytes(jax.export.export(jax.jit(forward), platforms=PLATFORMS)(
        jax.ShapeDtypeStruct(shape, jnp.uint8)).serialize())
  finally:
    jax.config.update(option, limit)


def _write_file(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _swap_in(tmp: str, final: str) -> None:
  """Puts directory `tmp` in the place of `final`: readers see the old export, none, or
  the new one, never a part of one."""
  old = final + ".old"
  _remove(old)  # a leftover of a write cut off between the two renames
  if os.path.lexists(final):
    os.rename(final, old)
  os.rename(tmp, final)
  _remove(old)


def _remove(path: str) -> None:
  if os.path.islink(path):
    os.unlink(path)
  else:
    shutil.rmtree(path, ignore_errors=True)


def _write(final: str, metadata: Mapping[str, Any], variables_bytes: bytes,
           exported: ExportedModel) -> str:
  """Writes the export of `metadata` (without its digests), `variables_bytes` (the msgpack)
  and `exported` (the same, loaded) into `final` through `final`.tmp; model.json last."""
  tmp = final + ".tmp"
  _remove(tmp)
  os.makedirs(tmp)
  _write_file(os.path.join(tmp, VARIABLES), variables_bytes)
  _write_file(os.path.join(tmp, FORWARD), serialized_forward(exported))
  digests = {*FILE_DIGESTS.values(), FIELDS_DIGEST}
  full = run_directory.json_values({
      **{k: v for k, v in metadata.items() if k not in digests}, records.EXPORT_FORMAT: FORMAT,
      **{key: _sha256(os.path.join(tmp, name)) for name, key in FILE_DIGESTS.items()}})
  full[FIELDS_DIGEST] = field_digests(full)
  run_directory.write_json(os.path.join(tmp, METADATA), full)
  _swap_in(tmp, final)
  return final


def save(workdir: str, *, config: Mapping[str, Any], dataset: Mapping[str, Any],
         params: Any, batch_stats: Any, mean_image: np.ndarray, step: int, epoch: float,
         code_versions: Sequence[Mapping[str, Any]]) -> str:
  """Writes `workdir/model/` for these weights; returns its path. `config` and `dataset`
  are the run's records (config.json, dataset.json). Replaces an older export whole."""
  variables = {"params": jax.device_get(params), "mean_image": np.asarray(mean_image, np.float32)}
  if batch_stats is not None:
    variables["batch_stats"] = jax.device_get(batch_stats)
  variables = jax.tree.map(np.asarray, variables)
  metadata = run_directory.json_values({
      records.EXPORT_FORMAT: FORMAT, records.MODEL: config[records.MODEL],
      records.NUM_CLASSES: dataset[records.NUM_CLASSES],
      records.RECTIFIER: config[records.RECTIFIER],
      records.MODEL_OPTIONS: dict(config[records.MODEL_OPTIONS]),
      records.DTYPE: config[records.DTYPE], records.CLASS_NAMES: list(dataset[records.CLASS_NAMES]),
      records.IMAGE_SHAPE: list(dataset[records.IMAGE_SHAPE]),
      records.INPUT_SCALE: config[records.INPUT_SCALE], records.AUGMENT: dict(config[records.AUGMENT]),
      records.DATASET: config[records.DATASET], records.SEED: config[records.SEED],
      records.STEP: int(step), records.EPOCH: epoch, records.CODE_VERSIONS: list(code_versions)})
  data = serialization.msgpack_serialize(variables, in_place=False)
  final = os.path.join(workdir, DIRECTORY)
  return _write(final, metadata, data, _build(metadata, variables, os.path.join(final, VARIABLES)))


# --- Upgrading older exports -----------------------------------------------------------------


def upgrade(directory: str) -> str:
  """Brings the export in `directory` (a model/ folder) to FORMAT from its own variables,
  once they match their format-1 digest (and, inside a run, model.json agrees with the
  run's records); returns what it did, in a few words. Idempotent. Inside a run, it holds
  the run's lock (run_directory rule 1: one writer)."""
  run_path = _run_path(directory)
  if run_path is None:
    return _upgrade(directory, None)
  with run_directory.DirectoryLock(run_path, what="run"):
    return _upgrade(directory, run_directory.read_run(run_path))


def _upgrade(directory: str, run: run_directory.RunRecord | None) -> str:
  _refuse_links(directory)
  file = os.path.join(directory, METADATA)
  try:
    metadata = run_directory.read_json(file)
  except (OSError, ValueError) as e:
    raise ExportError(f"{file} is not readable JSON ({str(e).splitlines()[0]}).") from None
  if metadata.get(records.EXPORT_FORMAT) == FORMAT:
    check(directory, run)
    return f"already format {FORMAT} (checked whole), unchanged"
  if metadata.get(records.EXPORT_FORMAT) != 1:
    raise ExportError(f"{file} is not an export of format 1 or {FORMAT} (its format: "
                      f"{_short(metadata.get(records.EXPORT_FORMAT))}); nothing to upgrade.")
  variables = os.path.join(directory, VARIABLES)
  if not os.path.exists(variables):
    raise ExportError(f"{variables} is missing: there is nothing to upgrade.")
  if _sha256(variables) != metadata.get(records.VARIABLES_SHA256):
    raise ExportError(f"{variables} does not match the SHA-256 digest in its {METADATA}: "
                      "the file is damaged, and an upgrade would certify it.")
  if missing := [k for k in REQUIRED if k not in metadata and k not in (
      records.FORWARD_SHA256, FIELDS_DIGEST)]:
    raise ExportError(f"{file} lacks the field(s) {', '.join(missing)}: not an export this "
                      "code wrote.")
  if run is not None:
    # Format 1 recorded no seed: compare the fields it has, then take the run's seed.
    if differ := disagreements(metadata, run):
      raise ExportError(f"{file} disagrees with the run's records: {'; '.join(differ)}; not "
                        "upgraded.")
    if records.SEED in run.config:
      metadata[records.SEED] = run.config[records.SEED]
  with open(variables, "rb") as f:
    data = f.read()
  _write(directory, metadata, data, _build(metadata, _restore(variables), variables))
  return f"upgraded format 1 -> {FORMAT} (variables kept, digest checked; forward.jax written)"


def find_exports(path: str) -> list[str]:
  """The export directories at or under `path` (a run, its model/, or any folder above
  runs), sorted; symbolic links are not followed."""
  if has_export(path):
    return [export_directory(path)]
  found = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    if os.path.basename(root) == DIRECTORY and METADATA in files:
      found.append(root)
    found += [os.path.join(root, d) for d in dirs
              if d == DIRECTORY and os.path.islink(os.path.join(root, d))]
  return sorted(found)


def upgrade_all(path: str) -> list[tuple[str, str, bool]]:
  """(export directory, what happened, whether it is now of FORMAT) for each export at or
  under `path` (`find_exports`)."""
  if not os.path.exists(path):
    raise ExportError(f"No directory {path}.")
  found = find_exports(path)
  if not found:
    raise ExportError(f"No export under {path} (no {DIRECTORY}/{METADATA}): nothing to "
                      "upgrade.")
  out = []
  for directory in found:
    try:
      out.append((directory, upgrade(directory), True))
    except (ExportError, run_directory.RunDirectoryError) as e:
      out.append((directory, f"not upgraded: {e}", False))
  return out


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  del argv
  logging.set_verbosity(logging.WARNING)  # not JAX's INFO lines about absent backends
  try:
    results = upgrade_all(flags.FLAGS.upgrade)
  except ExportError as e:
    logging.error("%s", e)
    sys.exit(1)
  for directory, what, _ in results:
    print(f"{directory}: {what}")
  sys.exit(0 if all(ok for _, _, ok in results) else 1)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("upgrade", None, "A run, or a folder above runs: upgrades every export "
                      f"there to format {FORMAT}.")
  flags.mark_flags_as_required(["upgrade"])
  app.run(main)
