"""Class-folder image datasets (Kaggle NDSB layout): scan, decode with Pillow, cache.

Layout: ROOT/train/<class>/<file> and optionally ROOT/test/<class>/<file>, the layout of
the Kaggle NDSB data (docs/sources.md §2) and of ../shared/data/cifar10-mini. Class indices
are the sorted folder names of train/. An evaluation, which reads one split, also takes a
folder without train/ (`split_folders`): ROOT/<split>/<class>/<file>, or, when ROOT has
neither train/ nor test/, ROOT/<class>/<file> as that split; class indices are then the
sorted folder names of that split's folder. The images lie under ROOT: a split or class folder
that links outside it is refused by name (links inside it are followed, and ROOT itself
may be a link). Decoded arrays are cached in one .npz keyed by the folder's content
(relative paths, sizes, mtimes) and the decoding options.

Images larger than `max_pixels` (width x height, read from the file's header) are refused
by name before they are decoded: a 140 KB PNG can hold 12000x12000 pixels, 1.8 GB once
decoded, and the decoder threads would hold several at once. The largest NDSB image is
under 400x400.

Images must hold 8-bit samples. Pillow would clip 16-bit and float images to 8 bits (a
16-bit PNG's 1000 and 65535 both become 255) or keep the high byte of 16-bit colour
samples; there is no scaling that is right for every dataset, so those files are refused
by name and mode, to be converted by the user with the scaling that suits the data.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
from pathlib import Path
import re
from typing import Any, Callable, IO

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageMode

from input_pipeline import atomic_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff",
                              ".webp", ".ppm", ".pgm"})
# The default limit on an image's pixels (width x height): 40 million, e.g. 6300x6300.
MAX_PIXELS = 40_000_000
# Bump when the cached content changes meaning. 2: images that are not 8-bit are refused
# (format 1 cached them clipped).
_CACHE_FORMAT = 2
_MAX_LISTED = 20
# Pillow's raw modes that read 16-bit samples into an 8-bit mode, keeping the high byte
# ("RGB;16" without B/L/N is 5-6-5 packed colour, 8-bit once unpacked).
_WIDE_RAWMODE = re.compile(r"(;16[BLN]|^L;16)$")


def _listing(problems: dict[str, str]) -> str:
  listed = "\n".join(f"  {p}: {m}" for p, m in list(problems.items())[:_MAX_LISTED])
  more = len(problems) - _MAX_LISTED
  return listed + (f"\n  ... and {more} more" if more > 0 else "")


class CorruptImagesError(ValueError):
  """Some image files could not be decoded; `errors` maps each path to its error."""

  def __init__(self, errors: dict[str, str]):
    self.errors = dict(errors)
    super().__init__(
        f"{len(self.errors)} image file(s) could not be decoded:\n{_listing(self.errors)}\n"
        "Fix or delete them, or pass skip_corrupt=True (config.skip_corrupt=True) to "
        "leave them out.")


class NotEightBitError(ValueError):
  """An image's samples are wider than 8 bits or floats; the message says what it holds."""


class TooLargeError(ValueError):
  """An image has more pixels than the limit; the message gives its size."""


def _too_large(images: dict[str, str], max_pixels: int) -> ValueError:
  return ValueError(
      f"{len(images)} image file(s) have more than max_image_pixels={max_pixels:,} pixels "
      f"and were not decoded:\n{_listing(images)}\nDownscale them, remove them, or raise "
      "config.max_image_pixels if the machine has the memory to decode them.")


def _not_eight_bit(images: dict[str, str]) -> ValueError:
  """The error for image files (path: what they hold) that are not 8-bit."""
  return ValueError(
      f"{len(images)} image file(s) are not 8-bit:\n{_listing(images)}\nDecoding them to "
      "8 bits would clip them (or keep only their high byte), and no one scaling is right "
      "for every dataset. Convert them to 8-bit images with the scaling that suits the "
      "data (16-bit: e.g. round(value / 257); floats: the range that maps onto 0..255), "
      "then load the folder again.")


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedFolder:
  """The decoded content of a class folder; test_* are None without a test/ folder."""

  class_names: tuple[str, ...]
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray | None
  test_labels: np.ndarray | None
  skipped_files: tuple[str, ...]
  # The split a folder without train/ holds, read for an evaluation of it (its train_* are
  # then empty unless it is "train"); None for the training layout.
  evaluation_only: str | None = None


def save_cache(path: Path, write: Callable[[IO[bytes]], object]) -> None:
  """Writes a cache file through `write`, whole or not at all (input_pipeline/atomic_file),
  creating its directory."""
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_file.write(path, write)


def scan_split(split_dir: Path, root: Path) -> dict[str, list[Path]]:
  """Image files of each class folder of a split folder, both sorted by name: the order
  `load_folder` decodes them in. A split or class folder that is a link to a folder
  outside `root` is refused (`_check_inside`)."""
  classes = sorted(d.name for d in split_dir.iterdir()
                   if d.is_dir() and not d.name.startswith("."))
  for folder in [split_dir] + [split_dir / c for c in classes]:
    _check_inside(folder, root)
  return {c: sorted(f for f in (split_dir / c).iterdir()
                    if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
          for c in classes}


def _check_inside(folder: Path, root: Path) -> None:
  """Refuses `folder` when it is a link to a folder outside the dataset folder `root`: a
  dataset is what lies under its folder (its cache key, its record and what evaluate.py
  compares are taken from there), and a link out of it would make a copy of the dataset
  folder, or its move, silently change or lose data. Links inside it, and a dataset
  folder that is itself a link, are followed."""
  if folder.is_symlink() and not folder.resolve().is_relative_to(root.resolve()):
    raise ValueError(
        f"The folder {folder} is a link to {folder.resolve()}, outside the dataset folder "
        f"{root}: a dataset's images must lie under its folder. Copy that folder into "
        f"{root} (a link to the whole dataset folder is followed).")


def wide_samples(image: Image.Image) -> str | None:
  """What makes `image` not 8-bit (its mode, or 16-bit samples Pillow reads into an 8-bit
  mode), or None when its samples are 8-bit (or fewer)."""
  try:
    eight_bit = ImageMode.getmode(image.mode).typestr.endswith(("u1", "b1"))
  except KeyError:  # a mode Pillow has no description of: not one we can vouch for.
    eight_bit = False
  if not eight_bit:
    return f"PIL mode {image.mode}"
  for tile in getattr(image, "tile", None) or ():
    args = tile[-1]  # (codec, extents, offset, args); args is the raw mode or starts with it
    rawmode = args if isinstance(args, str) else next(iter(args or ()), None)
    if isinstance(rawmode, str) and _WIDE_RAWMODE.search(rawmode):
      return f"PIL mode {image.mode} from 16-bit samples (raw mode {rawmode})"
  return None


def decode_image(path: Path, image_size: int | None, grayscale: bool,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """Decodes one image to uint8 (H, W, C), C = 1 (grayscale) or 3 (RGB).

  Raises:
    TooLargeError: it has more than `max_pixels` pixels (checked before decoding).
    NotEightBitError: its samples are wider than 8 bits, or floats (`wide_samples`).
  """
  try:
    opened = Image.open(path)
  except Image.DecompressionBombError as e:  # Pillow's own hard limit, above a raised one
    raise TooLargeError(str(e)) from None
  with opened as image:
    if (pixels := image.size[0] * image.size[1]) > max_pixels:
      raise TooLargeError(f"{image.size[0]}x{image.size[1]} = {pixels:,} pixels")
    if (wide := wide_samples(image)) is not None:
      raise NotEightBitError(wide)
    converted = image.convert("L" if grayscale else "RGB")
    if image_size is not None and converted.size != (image_size, image_size):
      converted = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(converted, np.uint8)
  return array[..., None] if grayscale else array


def _decode_all(paths: list[Path], image_size: int | None, grayscale: bool, max_pixels: int
                ) -> tuple[list[np.ndarray | None], dict[str, str], dict[str, str],
                           dict[str, str]]:
  """(arrays, None where a file failed; {path: error}; {path: why it is not 8-bit};
  {path: its size, too large})."""
  def decode(path):
    try:
      return decode_image(path, image_size, grayscale, max_pixels), None, None, None
    except NotEightBitError as e:  # not broken: skip_corrupt does not apply.
      return None, None, str(e), None
    except TooLargeError as e:  # nor here
      return None, None, None, str(e)
    # Broken files fail in many ways (OSError, SyntaxError, struct.error, ...);
    # each is reported by path rather than aborting the whole scan.
    except Exception as e:  # pylint: disable=broad-except
      return None, f"{type(e).__name__}: {e}", None, None

  # Pillow releases the GIL while decoding and resizing, so threads scale.
  with concurrent.futures.ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)) as pool:
    results = list(pool.map(decode, paths, chunksize=64))
  errors, wide, large = ({str(p): r[k] for p, r in zip(paths, results) if r[k] is not None}
                         for k in (1, 2, 3))
  return [r[0] for r in results], errors, wide, large


def _cache_key(root: Path, class_dirs: list[Path], files: list[Path],
               image_size: int | None, grayscale: bool, layout: tuple[str, ...] = ()) -> str:
  # `layout` is empty for the training layout, so that its caches keep their keys.
  digest = hashlib.sha256(json.dumps(
      [_CACHE_FORMAT, image_size, grayscale, *layout]).encode())
  # Class folders count even when empty: they define the label indices.
  for d in class_dirs:
    digest.update(f"{d.relative_to(root)}/\n".encode())
  for f in files:
    stat = f.stat()
    digest.update(f"{f.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:20]


def _decode_folder(root: Path, splits: dict[str, dict[str, list[Path]]],
                   dirs: dict[str, Path], class_names: tuple[str, ...],
                   image_size: int | None, grayscale: bool,
                   max_pixels: int) -> dict[str, np.ndarray]:
  """Decodes every split; returns the arrays stored in the cache file.

  Raises:
    ValueError: image shapes differ, or some images are too large or not 8-bit (nothing
      is cached).
  """
  arrays = {}
  all_errors, all_wide, all_large = {}, {}, {}
  for split, by_class in splits.items():
    paths = [p for c in class_names for p in by_class.get(c, [])]
    labels = np.array([i for i, c in enumerate(class_names)
                       for _ in by_class.get(c, [])], np.int32)
    logging.info("Decoding %d images in %s.", len(paths), dirs[split])
    images, errors, wide, large = _decode_all(paths, image_size, grayscale, max_pixels)
    all_errors.update(errors)
    all_wide.update(wide)
    all_large.update(large)
    if all_wide or all_large:
      continue  # refused below, with the files of every split.
    ok = [i for i, a in enumerate(images) if a is not None]
    shapes: dict[tuple[int, ...], Path] = {}
    for i in ok:
      shapes.setdefault(images[i].shape, paths[i])
    if len(shapes) > 1:
      examples = ", ".join(f"{s} ({p})" for s, p in list(shapes.items())[:5])
      raise ValueError(
          f"Images in {dirs[split]} have {len(shapes)} different shapes, e.g. "
          f"{examples}. Set image_size to resize them all (NDSB: image_size=80).")
    shape = next(iter(shapes)) if shapes else (image_size or 0, image_size or 0,
                                                1 if grayscale else 3)
    arrays[f"{split}_images"] = (np.stack([images[i] for i in ok]) if ok
                                 else np.zeros((0,) + shape, np.uint8))
    arrays[f"{split}_labels"] = labels[ok]
  if all_large:
    raise _too_large(all_large, max_pixels)
  if all_wide:
    raise _not_eight_bit(all_wide)
  arrays["errors"] = np.array(json.dumps(all_errors))
  arrays["class_names"] = np.array(class_names)
  return arrays


def _read_cache(path: Path, root: Path, split: str = "train") -> dict[str, np.ndarray] | None:
  """The cached arrays, or None (with a warning) if the file is truncated or damaged."""
  try:
    with np.load(path) as cached:
      arrays = {k: cached[k] for k in cached.files}
    missing = {f"{split}_images", f"{split}_labels", "errors", "class_names"} - set(arrays)
    if missing:
      raise ValueError(f"it lacks {sorted(missing)}")
  except Exception as e:  # pylint: disable=broad-except
    # np.load raises many types for a damaged archive (BadZipFile, EOFError, ValueError...).
    logging.warning("The image cache %s is unreadable (%s: %s); decoding %s again.", path,
                    type(e).__name__, e, root)
    return None
  logging.info("Loading decoded images of %s from %s.", root, path)
  return arrays


def _has_images(folder: Path) -> bool:
  return any(f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())


def _contents(root: Path) -> str:
  """What `root` holds, in a few words, for an error about its layout."""
  if not root.exists():
    return "it does not exist"
  if not root.is_dir():
    return "it is not a folder"
  entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
  folders = [p for p in entries if p.is_dir()]
  images = sum(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries)
  if not folders and not images:
    return "it is empty" if not entries else f"it holds {len(entries)} file(s), no images"
  listed = ", ".join(p.name + "/" for p in folders[:5]) + (
      f" and {len(folders) - 5} more" if len(folders) > 5 else "")
  holding = sum(map(_has_images, folders))
  return (f"it holds {len(folders)} folder(s){f' ({listed})' if folders else ''}, {holding} "
          f"of them holding images, and {images} image file(s) of its own")


def _holds_class_folders(root: Path) -> bool:
  """Whether some non-hidden subfolder of `root` holds an image file."""
  return any(_has_images(d) for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def split_folders(root: Path, split: str | None = None) -> dict[str, Path]:
  """The split folders of dataset folder ROOT: {"train": ROOT/train} and "test": ROOT/test
  if present (the training layout, whatever `split`). Without ROOT/train, only for an
  evaluation of `split` (None: a training): {split: ROOT/<split>}, or, when ROOT has
  neither train/ nor test/ but subfolders holding images, {split: ROOT}, its subfolders
  being the classes. Anything else is refused, naming what ROOT holds and what is allowed."""
  if (root / "train").is_dir():
    return {"train": root / "train", **({"test": root / "test"}
                                          if (root / "test").is_dir() else {})}
  if split not in (None, "train", "test"):
    raise ValueError(f"A folder's splits are 'train' and 'test', not {split!r}.")
  if split is None:
    raise ValueError(
        f"No {root / 'train'} folder ({_contents(root)}): training on a 'folder:' spec needs "
        "the layout PATH/train/<class>/*.jpg (and optionally PATH/test/<class>/...); a "
        "folder without train/ can only be evaluated on.")
  if (root / split).is_dir():
    return {split: root / split}
  if root.is_dir() and not any((root / s).is_dir() for s in ("train", "test")) \
      and _holds_class_folders(root):
    return {split: root}
  wanted = "train/" if split == "train" else f"train/ or {split}/"
  raise ValueError(
      f"{root} has no {wanted} folder, nor class folders holding images "
      f"({_contents(root)}): evaluating its {split} split needs PATH/{split}/<class>/*.jpg, "
      f"PATH/train/<class>/*.jpg, or, without train/ and test/, PATH/<class>/*.jpg.")


def load_folder(root: Path, *, image_size: int | None, grayscale: bool,
                skip_corrupt: bool, cache_dir: Path, max_pixels: int = MAX_PIXELS,
                evaluation_split: str | None = None) -> DecodedFolder:
  """Decodes ROOT/train (and ROOT/test if present), using the cache when it is current.
  For an evaluation of `evaluation_split`, a folder without train/ is read as that split
  alone (`split_folders`).

  The pixel limit guards decoding: a current cache holds images already decoded (and
  resized), and is used whatever the limit.

  Raises:
    ValueError: the layout is wrong, image sizes differ without image_size, or some
      images are too large or not 8-bit.
    CorruptImagesError: some files cannot be decoded and skip_corrupt is False.
  """
  if image_size is not None and image_size <= 0:
    raise ValueError(f"image_size must be positive or None, got {image_size}.")
  if max_pixels <= 0:
    raise ValueError(f"max_image_pixels must be positive, got {max_pixels}.")
  dirs = split_folders(root, evaluation_split)
  only = None if (root / "train").is_dir() else next(iter(dirs))
  splits = {split: scan_split(folder, root) for split, folder in dirs.items()}
  # The folder that defines the classes: train/, or the one split an evaluation reads.
  class_dir, class_names = dirs[only or "train"], tuple(splits[only or "train"])
  if not class_names:
    raise ValueError(f"{class_dir} has no class folders; expected "
                     f"{class_dir}/<class>/*.jpg.")
  unknown = sorted(set(splits.get("test", {})) - set(class_names))
  if unknown:
    raise ValueError(f"{root / 'test'} has class folders that train/ lacks: {unknown}.")
  empty = [str(class_dir / c) for c, files in splits["train"].items()
           if not files] if only is None else []  # an evaluation's class may have none
  if empty:
    raise ValueError(f"{len(empty)} class folder(s) have no images: {', '.join(empty[:5])}"
                     f"{' ...' if len(empty) > 5 else ''}. Every folder of train/ is a class: "
                     "add its images or remove it (extensions: "
                     f"{', '.join(sorted(IMAGE_EXTENSIONS))}).")

  files = [p for by_class in splits.values() for c in by_class for p in by_class[c]]
  class_dirs = [dirs[split] / c for split, by_class in splits.items() for c in by_class]
  # A folder read as one split caches under that split's name: the layout is in the key.
  layout = () if only is None else (only, str(class_dir.relative_to(root)))
  key = _cache_key(root, class_dirs, files, image_size, grayscale, layout)
  cache_path = Path(cache_dir) / f"folder-{root.resolve().name}-{key}.npz"
  arrays: dict[str, Any] | None = (_read_cache(cache_path, root, only or "train")
                                   if cache_path.exists() else None)
  if arrays is None:
    arrays = _decode_folder(root, splits, dirs, class_names, image_size, grayscale,
                            max_pixels)
    decoded: dict[str, Any] = arrays
    save_cache(cache_path, lambda f: np.savez(f, **decoded))
    logging.info("Cached decoded images of %s at %s.", root, cache_path)

  errors = json.loads(str(arrays["errors"]))
  if errors and not skip_corrupt:
    raise CorruptImagesError(errors)
  if errors:
    logging.warning("Skipped %d unreadable image file(s) in %s (skip_corrupt=True): %s",
                    len(errors), root, ", ".join(list(errors)[:_MAX_LISTED]))
  if only == "test":  # read for its test split alone: no training images
    arrays["train_images"] = np.zeros((0,) + arrays["test_images"].shape[1:], np.uint8)
    arrays["train_labels"] = np.zeros((0,), np.int32)
  has_test = "test" in splits
  return DecodedFolder(
      class_names=class_names,
      train_images=arrays["train_images"], train_labels=arrays["train_labels"],
      test_images=arrays["test_images"] if has_test else None,
      test_labels=arrays["test_labels"] if has_test else None,
      skipped_files=tuple(errors), evaluation_only=only)
