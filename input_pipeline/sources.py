"""Dataset specs and random-access sources: `tfds:NAME`, `folder:PATH` and `digits`.

`load(spec)` returns a `Dataset` whose `train` and `test` members are random-access
sources (`len(src)`, `src[i] -> {"image": uint8 HWC, "label": int}`), the form that
grain reads (see batching.py). Nothing here imports TensorFlow: TFDS data is read
through `tfds.data_source` (ArrayRecord), see references.md §3.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from input_pipeline import folder as folder_lib

VALID_SPECS = (
    "'tfds:NAME' (a TFDS image classification dataset prepared as ArrayRecord, "
    "e.g. 'tfds:cifar10', 'tfds:cifar100'), "
    "'folder:PATH' (class folders PATH/train/<class>/*.jpg, optional PATH/test/<class>/), "
    "'digits' (scikit-learn's bundled 8x8 handwritten digits)"
)
DIGITS_TEST_SIZE = 360  # 1,797 = 1,437 train + 360 test.
HOLDOUT_SEED = 0


class Source(Protocol):
  """A random-access source of examples, as grain reads them."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict[str, Any]: ...


class DatasetNotPreparedError(RuntimeError):
  """A TFDS dataset is not prepared (as ArrayRecord) in the data directory."""


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
  """Examples held in memory as `images` (N, H, W, C) uint8 and `labels` (N,) int32."""

  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.images.ndim != 4 or self.images.dtype != np.uint8:
      raise ValueError(
          f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}.")
    if self.labels.shape != (len(self.images),):
      raise ValueError(
          f"labels must have shape ({len(self.images)},), got {self.labels.shape}.")

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self.images[index], "label": int(self.labels[index])}

  def take(self, indices: np.ndarray) -> ArraySource:
    """The sub-source at `indices` (copies)."""
    return ArraySource(self.images[indices], self.labels[indices])


@dataclasses.dataclass(frozen=True, eq=False)
class _TfdsSource:
  """Adapts a TFDS data source to {"image": uint8 HWC, "label": int}."""

  source: Sequence[Any]
  image_key: str
  label_key: str

  def __len__(self) -> int:
    return len(self.source)

  def _convert(self, record: dict[str, Any]) -> dict[str, Any]:
    image = np.asarray(record[self.image_key], np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    return {"image": image, "label": int(record[self.label_key])}

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._convert(self.source[index])


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A classification dataset: train/test sources plus what models and runs need.

  Attributes:
    train: the training source.
    test: the evaluation source (may be empty for a folder without test/ and holdout=0).
    num_classes: number of classes; labels are in [0, num_classes).
    class_names: class names by label index (for folders: sorted folder names).
    image_shape: (H, W, C) of every image.
    mean_image: float32 (H, W, C) per-pixel mean of the train split (the paper's
      "raw images" minus the mean image, references.md §2).
    skipped_files: unreadable files left out because skip_corrupt=True.
  """

  train: Source
  test: Source
  num_classes: int
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  mean_image: np.ndarray
  skipped_files: tuple[str, ...] = ()


def default_cache_dir() -> Path:
  """$RECTIFIERS_CACHE, else ~/.cache/rectifiers."""
  return Path(os.environ.get("RECTIFIERS_CACHE", "~/.cache/rectifiers")).expanduser()


def load(spec: str, *, data_dir: str | None = None, train_split: str = "train",
         test_split: str = "test", image_size: int | None = None, grayscale: bool = False,
         holdout: int = 0, skip_corrupt: bool = False,
         cache_dir: str | None = None) -> Dataset:
  """Loads the dataset named by `spec`; see VALID_SPECS for the forms.

  Args:
    spec: 'tfds:NAME', 'folder:PATH' or 'digits'.
    data_dir: TFDS data directory (default: TFDS's own, e.g. ~/tensorflow_datasets).
    train_split: TFDS split for training, slicing allowed (e.g. 'train[:45000]').
    test_split: TFDS split for evaluation (e.g. 'train[45000:]' or 'test').
    image_size: folder only: resize every image to (image_size, image_size).
      None keeps the decoded size, which must then agree across images.
    grayscale: folder only: decode as one channel (Pillow mode L) instead of RGB.
    holdout: folder without test/ only: size of a deterministic stratified hold-out
      taken from train/ as the test split (the paper's NDSB split uses 5,336).
    skip_corrupt: folder only: leave out unreadable images (and log how many)
      instead of stopping with the list of their paths.
    cache_dir: where decoded folders and TFDS mean images are cached
      (default: $RECTIFIERS_CACHE or ~/.cache/rectifiers).

  Returns:
    The Dataset.

  Raises:
    ValueError: unknown spec, or options that do not apply to this kind of source.
    DatasetNotPreparedError: a TFDS dataset is not prepared in `data_dir`.
    folder_lib.CorruptImagesError: unreadable images and skip_corrupt=False.
  """
  kind, _, arg = spec.partition(":")
  cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  if kind == "tfds" and arg:
    _only_folder_options(spec, image_size=image_size, holdout=holdout)
    return _load_tfds(arg, data_dir=data_dir, train_split=train_split,
                      test_split=test_split, grayscale=grayscale, cache_dir=cache)
  if kind == "folder" and arg:
    _only_tfds_splits(spec, train_split, test_split)
    return _load_folder(Path(arg).expanduser(), image_size=image_size,
                        grayscale=grayscale, holdout=holdout, skip_corrupt=skip_corrupt,
                        cache_dir=cache)
  if spec == "digits":
    _only_folder_options(spec, image_size=image_size, holdout=holdout)
    _only_tfds_splits(spec, train_split, test_split)
    return _load_digits()
  raise ValueError(f"Unknown dataset spec {spec!r}. Valid forms: {VALID_SPECS}.")


def _only_folder_options(spec: str, *, image_size: int | None, holdout: int) -> None:
  if image_size is not None or holdout:
    raise ValueError(
        f"image_size={image_size!r} and holdout={holdout!r} apply only to 'folder:' "
        f"specs, not to {spec!r}; leave them at None and 0 (TFDS: use split slicing, "
        "e.g. train_split='train[:45000]', test_split='train[45000:]').")


def _only_tfds_splits(spec: str, train_split: str, test_split: str) -> None:
  if (train_split, test_split) != ("train", "test"):
    raise ValueError(
        f"train_split={train_split!r}, test_split={test_split!r}: split strings apply "
        f"only to 'tfds:' specs, not to {spec!r}; leave them at 'train' and 'test' "
        "(folders: use holdout).")


def mean_image(source: Source, chunk: int = 1024) -> np.ndarray:
  """Per-pixel mean over all examples of `source`, float32 (H, W, C)."""
  if isinstance(source, ArraySource):
    return source.images.mean(axis=0, dtype=np.float64).astype(np.float32)
  if not len(source):
    raise ValueError("Cannot compute a mean image of an empty split.")

  def chunk_sum(start):
    images = [source[i]["image"] for i in range(start, min(start + chunk, len(source)))]
    return np.sum(images, axis=0, dtype=np.float64)

  # Reading a TFDS record decodes a PNG, mostly outside the GIL: threads help.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    total = sum(pool.map(chunk_sum, range(0, len(source), chunk)))
  return (total / len(source)).astype(np.float32)


def stratified_holdout(labels: np.ndarray, size: int,
                       seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into (keep, held_out), held_out of `size` with class proportions kept.

  Each class gives its proportional share, rounded by largest remainder; members are
  drawn with np.random.RandomState, whose stream NumPy keeps fixed across versions,
  so the split is the same on every machine and release.
  """
  n = len(labels)
  if not 0 < size < n:
    raise ValueError(f"holdout={size} must be in [1, {n - 1}] for {n} examples.")
  classes, counts = np.unique(labels, return_counts=True)
  quota = size * counts / n
  share = np.floor(quota).astype(int)
  # Largest remainder; the stable sort breaks ties by class index.
  order = np.argsort(-(quota - share), kind="stable")
  share[order[: size - share.sum()]] += 1
  rng = np.random.RandomState(seed)
  held = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, share)]
  held_out = np.sort(np.concatenate(held))
  keep = np.setdiff1d(np.arange(n), held_out)
  return keep, held_out


def _load_digits() -> Dataset:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  # sklearn's pixels are counts (0..16) of set pixels in 4x4 blocks; scale to the usual 0..255.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  everything = ArraySource(images, labels)
  keep, held_out = stratified_holdout(labels, DIGITS_TEST_SIZE)
  train = everything.take(keep)
  return Dataset(train=train, test=everything.take(held_out), num_classes=10,
                 class_names=tuple(str(d) for d in range(10)), image_shape=(8, 8, 1),
                 mean_image=mean_image(train))


def _load_folder(path: Path, *, image_size: int | None, grayscale: bool, holdout: int,
                 skip_corrupt: bool, cache_dir: Path) -> Dataset:
  decoded = folder_lib.load_folder(path, image_size=image_size, grayscale=grayscale,
                                   skip_corrupt=skip_corrupt, cache_dir=cache_dir)
  train = ArraySource(decoded.train_images, decoded.train_labels)
  if decoded.test_images is not None:
    if holdout:
      raise ValueError(
          f"holdout={holdout} but {path} has a test/ folder; a hold-out is taken only "
          "from folders without one. Set holdout=0 (or remove test/).")
    test = ArraySource(decoded.test_images, decoded.test_labels)
  elif holdout:
    keep, held_out = stratified_holdout(train.labels, holdout)
    train, test = train.take(keep), train.take(held_out)
  else:
    logging.warning("%s has no test/ folder and holdout=0: the test split is empty.", path)
    test = ArraySource(np.zeros((0,) + train.images.shape[1:], np.uint8),
                       np.zeros((0,), np.int32))
  return Dataset(train=train, test=test, num_classes=len(decoded.class_names),
                 class_names=decoded.class_names,
                 image_shape=tuple(train.images.shape[1:]), mean_image=mean_image(train),
                 skipped_files=decoded.skipped_files)


def _not_prepared_message(name: str, builder: Any, data_dir: str | None) -> str:
  data_dir_flag = f" --data_dir={data_dir}" if data_dir else ""
  return (
      f"TFDS dataset {name!r} is not prepared as ArrayRecord: searched {builder.data_dir}"
      f" (data_dir={data_dir or 'TFDS default'}). Prepare it once (needs TensorFlow and "
      "the internet):\n"
      '  pip install ".[prepare]"\n'
      f"  tfds build {name} --file_format=array_record{data_dir_flag}\n"
      "then pass the same data_dir here (or set TFDS_DATA_DIR).")


def _load_tfds(name: str, *, data_dir: str | None, train_split: str, test_split: str,
               grayscale: bool, cache_dir: Path) -> Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    raw_train, raw_test = tfds.data_source(
        name, split=[train_split, test_split], data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"Unknown TFDS dataset {name!r} in spec 'tfds:{name}'. "
                     f"Valid forms: {VALID_SPECS}.") from e
  except Exception as e:  # TFDS raises several types when nothing is prepared.
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
      raise DatasetNotPreparedError(_not_prepared_message(name, builder, data_dir)) from e
    raise
  info = raw_train.dataset_info
  image_key, label_key = info.supervised_keys or ("image", "label")
  features = info.features
  if image_key not in features or label_key not in features:
    raise ValueError(f"TFDS dataset {name!r} has no ({image_key!r}, {label_key!r}) "
                     "features; only image classification datasets are supported.")
  shape = tuple(features[image_key].shape)
  if len(shape) != 3 or None in shape:
    raise ValueError(f"TFDS dataset {name!r} has images of shape {shape}; a fixed "
                     "(H, W, C) shape is required (use a folder: spec with image_size).")
  if grayscale and shape[-1] != 1:
    raise ValueError(f"grayscale=True but TFDS dataset {name!r} has {shape[-1]} "
                     "channels; TFDS images keep their native channels.")
  train = _TfdsSource(raw_train, image_key, label_key)
  test = _TfdsSource(raw_test, image_key, label_key)
  key = json.dumps([name, str(info.version), train_split, len(train),
                    str(info.data_dir)]).encode()
  mean_path = cache_dir / f"tfds-{name.replace('/', '_').replace(':', '_')}-mean-" \
                          f"{hashlib.sha256(key).hexdigest()[:16]}.npy"
  if mean_path.exists():
    mean = np.load(mean_path)
  else:
    logging.info("Computing the mean image of %s[%s] (%d examples), cached at %s.",
                 name, train_split, len(train), mean_path)
    mean = mean_image(train)
    folder_lib.atomic_save(mean_path, lambda f: np.save(f, mean))
  label = features[label_key]
  return Dataset(train=train, test=test, num_classes=int(label.num_classes),
                 class_names=tuple(label.names), image_shape=shape, mean_image=mean)
