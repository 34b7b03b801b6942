"""Dataset specs and random-access sources: `tfds:NAME`, `folder:PATH` and `digits`.

`load(spec)` returns a `Dataset` whose `train` and `test` members are random-access
sources (`len(src)`, `src[i] -> {"image": uint8 HWC, "label": int}`), the form that
grain reads (see batching.py). Nothing here imports TensorFlow: TFDS data is read
through `tfds.data_source` (ArrayRecord), see docs/sources.md §4.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from absl import logging
import numpy as np

from input_pipeline import folder as folder_lib

VALID_SPECS = (
    "'tfds:NAME' (a TFDS image classification dataset prepared as ArrayRecord, "
    "e.g. 'tfds:cifar10', 'tfds:cifar100'), "
    "'folder:PATH' (class folders PATH/train/<class>/*.jpg, optional PATH/test/<class>/; "
    "to evaluate on, also PATH/test/<class>/ alone or PATH/<class>/*.jpg), "
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
class SubsetSource:
  """The examples of `source` at `indices`, in that order (no copy)."""

  source: Source
  indices: np.ndarray

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self.source[int(self.indices[index])]


def take(source: Source, indices: np.ndarray) -> Source:
  """The sub-source of `source` at `indices`: a copy for in-memory arrays, a view otherwise."""
  if isinstance(source, ArraySource):
    return source.take(indices)
  return SubsetSource(source, np.asarray(indices, np.int64))


def labels_of(source: Source) -> np.ndarray:
  """Every label of `source` as int32 (reads each example unless the source holds arrays)."""
  if isinstance(source, ArraySource):
    return source.labels
  return np.fromiter((source[i]["label"] for i in range(len(source))), np.int32, len(source))


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
      "raw images" minus the mean image, docs/sources.md §3).
    skipped_files: unreadable files left out because skip_corrupt=True.
    full_train_examples: size of the training split before `train_examples` took a
      subset of it (equal to len(train) when the whole split is used).
    subset_seed: the seed of that stratified subset; None when the whole split is used.
  """

  train: Source
  test: Source
  num_classes: int
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  mean_image: np.ndarray
  skipped_files: tuple[str, ...] = ()
  full_train_examples: int = 0
  subset_seed: int | None = None


def default_cache_dir() -> Path:
  """$RECTIFIERS_CACHE, else ~/.cache/rectifiers."""
  return Path(os.environ.get("RECTIFIERS_CACHE", "~/.cache/rectifiers")).expanduser()


def load(spec: str, *, data_dir: str | None = None, train_split: str = "train",
         test_split: str = "test", image_size: int | None = None, grayscale: bool = False,
         holdout: int = 0, skip_corrupt: bool = False,
         cache_dir: str | None = None, train_examples: int = 0,
         subset_seed: int = 0, max_image_pixels: int = folder_lib.MAX_PIXELS,
         evaluation_split: str | None = None) -> Dataset:
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
    train_examples: train on a stratified subset of this many examples of the
      training split (class proportions kept, `stratified_subset`); 0 uses all of it.
      The mean image is the subset's.
    subset_seed: the seed of that subset. Subsets of one seed are nested: the
      500-example subset lies inside the 2,000-example one.
    max_image_pixels: folder only: images of more pixels (width x height, from the
      file's header) are refused by name before they are decoded.
    evaluation_split: folder only: the one split ('train' or 'test') an evaluation reads.
      A folder without train/ is then that split alone (folder.split_folders), and the
      other split is empty (so is the mean image, which an evaluation does not use).

  Returns:
    The Dataset.

  Raises:
    ValueError: unknown spec, options that do not apply to this kind of source, or (folder)
      images that are not 8-bit.
    DatasetNotPreparedError: a TFDS dataset is not prepared in `data_dir`.
    folder_lib.CorruptImagesError: unreadable images and skip_corrupt=False.
  """
  kind, _, arg = spec.partition(":")
  cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  if train_examples < 0:
    raise ValueError(f"train_examples must be >= 0 (0: the whole training split), got "
                     f"{train_examples}.")
  subset = _Subset(train_examples, subset_seed)
  if kind == "tfds" and arg:
    _only_folder_options(spec, image_size=image_size, holdout=holdout)
    return _load_tfds(arg, data_dir=data_dir, train_split=train_split,
                      test_split=test_split, grayscale=grayscale, cache_dir=cache,
                      subset=subset)
  if kind == "folder" and arg:
    _only_tfds_splits(spec, train_split, test_split)
    return _load_folder(Path(arg).expanduser(), image_size=image_size,
                        grayscale=grayscale, holdout=holdout, skip_corrupt=skip_corrupt,
                        cache_dir=cache, subset=subset, max_pixels=max_image_pixels,
                        evaluation_split=evaluation_split)
  if spec == "digits":
    _only_folder_options(spec, image_size=image_size, holdout=holdout)
    _only_tfds_splits(spec, train_split, test_split)
    return _load_digits(subset)
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


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Sorted indices of `size` examples drawn with the class proportions of `labels`.

  Each class gives its proportional share, rounded by largest remainder; members are
  drawn with np.random.RandomState, whose stream NumPy keeps fixed across versions,
  so the subset is the same on every machine and release. For one seed, a larger
  subset contains every smaller one whose class shares are not larger.
  """
  n = len(labels)
  if not 0 < size <= n:
    raise ValueError(f"size={size} must be in [1, {n}] for {n} examples.")
  classes, counts = np.unique(labels, return_counts=True)
  quota = size * counts / n
  share = np.floor(quota).astype(int)
  # Largest remainder; the stable sort breaks ties by class index.
  order = np.argsort(-(quota - share), kind="stable")
  share[order[: size - share.sum()]] += 1
  rng = np.random.RandomState(seed)
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, share)]
  return np.sort(np.concatenate(chosen))


def stratified_holdout(labels: np.ndarray, size: int,
                       seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into (keep, held_out), held_out a `stratified_subset` of `size`."""
  n = len(labels)
  if not 0 < size < n:
    raise ValueError(f"holdout={size} must be in [1, {n - 1}] for {n} examples.")
  held_out = stratified_subset(labels, size, seed)
  return np.setdiff1d(np.arange(n), held_out), held_out


@dataclasses.dataclass(frozen=True)
class _Subset:
  """The `train_examples` / `subset_seed` request of `load`."""

  size: int
  seed: int

  def apply(self, train: Source, labels: np.ndarray | None = None) -> tuple[Source, dict]:
    """(the training source to use, the Dataset fields that record it)."""
    n = len(train)
    if not self.size or self.size == n:
      return train, {"full_train_examples": n, "subset_seed": None}
    if self.size > n:
      raise ValueError(f"train_examples={self.size} but the training split has {n} "
                       f"examples; use at most {n} (0 for all of them).")
    labels = labels_of(train) if labels is None else labels
    indices = stratified_subset(labels, self.size, self.seed)
    return take(train, indices), {"full_train_examples": n, "subset_seed": self.seed}


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """(images (1797, 8, 8) float, labels (1797,) int): scikit-learn's copy of the UCI
  optical digits, as `sklearn.datasets.load_digits` returns them.

  Read from the CSV file scikit-learn ships, without importing scikit-learn: its import
  costs 2-3 s, more than the rest of a small run's start (every training subprocess pays it).
  """
  spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
  locations = list(spec.submodule_search_locations or ()) if spec else []
  csv = [Path(d) / "datasets" / "data" / "digits.csv.gz" for d in locations]
  if not csv or not csv[0].is_file():  # another layout: ask scikit-learn itself
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    return digits.images, digits.target
  data = np.loadtxt(csv[0], delimiter=",")  # 64 pixels then the label, one image a row
  return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _load_digits(subset: _Subset) -> Dataset:
  pixels, target = digits_arrays()
  # sklearn's pixels are counts (0..16) of set pixels in 4x4 blocks; scale to the usual 0..255.
  images = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = target.astype(np.int32)
  everything = ArraySource(images, labels)
  keep, held_out = stratified_holdout(labels, DIGITS_TEST_SIZE)
  train, recorded = subset.apply(everything.take(keep))
  return Dataset(train=train, test=everything.take(held_out), num_classes=10,
                 class_names=tuple(str(d) for d in range(10)), image_shape=(8, 8, 1),
                 mean_image=mean_image(train), **recorded)


def _load_folder(path: Path, *, image_size: int | None, grayscale: bool, holdout: int,
                 skip_corrupt: bool, cache_dir: Path, subset: _Subset,
                 max_pixels: int, evaluation_split: str | None) -> Dataset:
  decoded = folder_lib.load_folder(path, image_size=image_size, grayscale=grayscale,
                                   skip_corrupt=skip_corrupt, cache_dir=cache_dir,
                                   max_pixels=max_pixels, evaluation_split=evaluation_split)
  train = ArraySource(decoded.train_images, decoded.train_labels)
  if decoded.evaluation_only is not None and holdout:
    raise ValueError(f"holdout={holdout} takes a hold-out from PATH/train/, and {path} has "
                     f"no train/ folder: evaluate its {decoded.evaluation_only} images whole "
                     "(holdout=0).")
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
    if decoded.evaluation_only is None:
      logging.warning("%s has no test/ folder and holdout=0: the test split is empty.", path)
    test = ArraySource(np.zeros((0,) + train.images.shape[1:], np.uint8),
                       np.zeros((0,), np.int32))
  chosen, recorded = subset.apply(train)
  # A folder read for its test split alone has no training images, hence no mean image:
  # zeros, never used (an evaluation uses the run's).
  mean = (mean_image(chosen) if len(chosen)
          else np.zeros(train.images.shape[1:], np.float32))
  return Dataset(train=chosen, test=test, num_classes=len(decoded.class_names),
                 class_names=decoded.class_names,
                 image_shape=tuple(train.images.shape[1:]), mean_image=mean,
                 skipped_files=decoded.skipped_files, **recorded)


def folder_test_files(path: Path, holdout: int, skipped: Sequence[str] = ()) -> list[Path]:
  """The image files of folder dataset `path`'s test split, in the order `load` holds
  them, found without decoding: PATH/test's, or the stratified hold-out of PATH/train's
  that `load(holdout=...)` takes (`stratified_holdout`). `skipped` are the files, relative
  to `path`, that a run left out as unreadable (config.skip_corrupt): not its examples."""
  dirs, left_out = folder_lib.split_folders(path), set(skipped)

  def examples(split: str) -> tuple[list[Path], list[int]]:
    # A split's classes are a subset of train/'s, both sorted: this is load_folder's order.
    files, labels = [], []
    for label, class_files in enumerate(folder_lib.scan_split(dirs[split], path).values()):
      kept = [f for f in class_files if os.path.relpath(f, path) not in left_out]
      files += kept
      labels += [label] * len(kept)
    return files, labels

  if "test" in dirs:
    return examples("test")[0]
  if not holdout:
    return []
  files, labels = examples("train")
  _, held_out = stratified_holdout(np.asarray(labels, np.int32), holdout)
  return [files[i] for i in held_out]


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
               grayscale: bool, cache_dir: Path, subset: _Subset) -> Dataset:
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
  train: Source = _TfdsSource(raw_train, image_key, label_key)
  test = _TfdsSource(raw_test, image_key, label_key)
  key = json.dumps([name, str(info.version), train_split, len(train),
                    str(info.data_dir)]).encode()
  prefix, digest = f"tfds-{name.replace('/', '_').replace(':', '_')}", \
      hashlib.sha256(key).hexdigest()[:16]
  labels = None
  if subset.size and subset.size != len(train):
    # Stratifying needs every label, and reading a TFDS label decodes its whole record.
    labels = _cached_array(cache_dir / f"{prefix}-labels-{digest}.npy",
                           lambda: labels_of(train), f"the labels of {name}[{train_split}]",
                           (len(train),), np.int32)
  train, recorded = subset.apply(train, labels)
  suffix = "" if recorded["subset_seed"] is None else f"-subset{len(train)}s{subset.seed}"
  mean = _cached_array(cache_dir / f"{prefix}-mean-{digest}{suffix}.npy",
                       lambda: mean_image(train),
                       f"the mean image of {name}[{train_split}] ({len(train)} examples)",
                       shape, np.float32)
  label = features[label_key]
  return Dataset(train=train, test=test, num_classes=int(label.num_classes),
                 class_names=tuple(label.names), image_shape=shape, mean_image=mean,
                 **recorded)


def _cached_array(path: Path, compute: Callable[[], np.ndarray], what: str,
                  shape: tuple[int, ...], dtype: type) -> np.ndarray:
  """`compute()`, cached at `path`; a cache file that is unreadable or not of this shape and
  dtype (damaged) is computed again and replaced, with a warning naming it."""
  if path.exists():
    try:
      array = np.load(path, allow_pickle=False)
      if array.shape != tuple(shape) or array.dtype != dtype:
        raise ValueError(f"it holds {array.dtype} {array.shape}, not {np.dtype(dtype)} "
                         f"{tuple(shape)}")
      return array
    except Exception as e:  # pylint: disable=broad-except
      # np.load raises many types for a damaged file (EOFError, ValueError, OSError...).
      logging.warning("The cache file %s (%s) is unreadable (%s: %s); computing it again.",
                      path, what, type(e).__name__, e)
  logging.info("Computing %s, cached at %s.", what, path)
  array = compute()
  folder_lib.save_cache(path, lambda f: np.save(f, array))
  return array
