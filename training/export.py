"""A trained model as a small, self-contained export: `WORKDIR/model/`.

    model/model.json         what is needed to rebuild and feed the network (below)
    model/variables.msgpack  flax.serialization msgpack of {"params", "batch_stats",
                             "mean_image"}: plain nested maps of arrays, no pickle

model.json holds the format version, the model's name and every option, the rectifier
spec, the computation dtype, the class names and the image shape the network was trained
on, the preprocessing constants (the training split's mean image is in the msgpack;
`input_scale` and the test-time augmentation config here), the step and epoch of the
weights, the dataset the run trained on, the code versions that trained it
(training/provenance.py) and the SHA-256 of variables.msgpack. It is written last, so an
export without it is incomplete, and a variables file that does not match its digest is
refused.

Every finished run writes one (train.py); at width 0.25 NIN's is ~270 KB, small enough to
commit with a study. To use one:

    from training import export
    m = export.load("results/cifar10-full/runs/relu/seed0")   # the run or its model/
    logits = m.logits(images_uint8)                           # (N, H, W, C) -> (N, classes)
    m.model.apply(m.variables, m.preprocess(images_uint8), train=False)  # the same
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np

import models
from configs import validation
from input_pipeline import augment
from training import run_directory

DIRECTORY = "model"
METADATA, VARIABLES = "model.json", "variables.msgpack"
FORMAT = 1


class ExportError(RuntimeError):
  """An export is missing, incomplete or damaged; the message names the file."""


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
    return list(self.metadata["class_names"])

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.metadata["image_shape"])

  def preprocess(self, images: Any) -> jax.Array:
    """uint8 (N, H, W, C) images as the network saw them at test time: minus the mean
    image, test-mode augmentation (a centre crop where training cropped), times
    input_scale."""
    return augment.preprocess(jnp.asarray(images), None, mean_image=jnp.asarray(self.mean_image),
                              config=validation.augment_config(self.metadata),
                              train=False) * self.metadata["input_scale"]

  def logits(self, images: Any) -> jax.Array:
    """Test-mode logits, float32 (N, num_classes)."""
    return self.model.apply(self.variables, self.preprocess(images), train=False)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def save(workdir: str, *, config: Mapping[str, Any], dataset: Mapping[str, Any],
         params: Any, batch_stats: Any, mean_image: np.ndarray, step: int, epoch: float,
         code_versions: Sequence[Mapping[str, Any]]) -> str:
  """Writes `workdir/model/` for these weights; returns its path. `config` and `dataset`
  are the run's records (config.json, dataset.json). Replaces an older export whole."""
  final = os.path.join(workdir, DIRECTORY)
  tmp = final + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  variables = {"params": jax.device_get(params), "mean_image": np.asarray(mean_image, np.float32)}
  if batch_stats is not None:
    variables["batch_stats"] = jax.device_get(batch_stats)
  with open(os.path.join(tmp, VARIABLES), "wb") as f:
    f.write(serialization.msgpack_serialize(
        jax.tree.map(np.asarray, variables), in_place=False))
    f.flush()
    os.fsync(f.fileno())
  metadata = {
      "format": FORMAT, "model": config["model"], "num_classes": dataset["num_classes"],
      "rectifier": config["rectifier"], "model_options": dict(config["model_options"]),
      "dtype": config["dtype"], "class_names": list(dataset["class_names"]),
      "image_shape": list(dataset["image_shape"]), "input_scale": config["input_scale"],
      "augment": dict(config["augment"]), "dataset": config["dataset"],
      "step": int(step), "epoch": epoch, "code_versions": list(code_versions),
      "variables_sha256": _sha256(os.path.join(tmp, VARIABLES))}
  run_directory.write_json(os.path.join(tmp, METADATA), run_directory.json_values(metadata))
  shutil.rmtree(final, ignore_errors=True)
  os.replace(tmp, final)
  return final


def export_directory(path: str) -> str:
  """`path` itself if it holds model.json, else `path/model`."""
  return path if os.path.exists(os.path.join(path, METADATA)) else os.path.join(path, DIRECTORY)


def has_export(path: str) -> bool:
  return os.path.exists(os.path.join(export_directory(path), METADATA))


def read_metadata(path: str) -> dict[str, Any]:
  """model.json of the export in `path` (a run directory or its model/)."""
  file = os.path.join(export_directory(path), METADATA)
  if not os.path.exists(file):
    raise ExportError(f"No exported model in {path}: {file} is missing (a run writes its "
                      "export when it finishes).")
  try:
    metadata = run_directory.read_json(file)
  except (OSError, ValueError) as e:
    raise ExportError(f"{file} is not readable JSON ({e}); re-export the run or use its "
                      "checkpoints.") from None
  if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
    raise ExportError(f"{file} is not an export of format {FORMAT} (found "
                      f"{metadata.get('format') if isinstance(metadata, dict) else metadata!r}).")
  return metadata


def check(path: str) -> tuple[dict[str, Any], str]:
  """(model.json, the variables file) of the complete, undamaged export in `path`;
  ExportError naming the file otherwise."""
  metadata = read_metadata(path)
  file = os.path.join(export_directory(path), VARIABLES)
  if not os.path.exists(file):
    raise ExportError(f"{file} is missing: the export in {path} is incomplete.")
  if _sha256(file) != metadata["variables_sha256"]:
    raise ExportError(f"{file} does not match the SHA-256 digest in its {METADATA}: the "
                      "file is damaged. Re-export the run or use its checkpoints.")
  return metadata, file


def load(path: str) -> ExportedModel:
  """The export in `path` (a run directory or its model/), checked against its digest."""
  metadata, file = check(path)
  with open(file, "rb") as f:
    restored = serialization.msgpack_restore(f.read())
  variables = {"params": restored["params"]}
  if "batch_stats" in restored:
    variables["batch_stats"] = restored["batch_stats"]
  return ExportedModel(model=models.from_config(metadata, metadata["num_classes"]),
                       variables=jax.tree.map(jnp.asarray, variables),
                       mean_image=np.asarray(restored["mean_image"], np.float32),
                       metadata=metadata)
