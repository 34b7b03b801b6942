"""Fingerprints of decoded images: which evaluation images a network trained on.

A fingerprint is the first 8 bytes of BLAKE2b over an image's shape (int64 H, W, C) and its
decoded uint8 pixels, as a little-endian uint64. Two files give the same fingerprint when
they decode to the same pixels at the same size (the same file copied or renamed, a copy
re-encoded losslessly); a re-encoded JPEG or a resized copy is another image to it. The
images are taken as the pipeline holds them for a run (decoded, resized to its image_size,
grayscale or not), so a training and an evaluation under the same run's options give the
same fingerprint to the same file. With 8 bytes, two different images of a 50,000-image
set collide with probability about 50,000² / 2⁶⁵ ≈ 7·10⁻¹¹.

A run records the sorted fingerprints of its training examples (`save`, 8 bytes an image;
training/run_directory.py names the file); evaluate.py counts the evaluation images among
them (`count_in`) and refuses to call a score on images the run trained on a test score.
Hashing 50,000 32x32 RGB images takes about 0.35 s of one core.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from input_pipeline import atomic_file

_CHUNK = 4096  # images read at a time from a source that is not held in memory


def of_images(images: np.ndarray) -> np.ndarray:
  """uint64 (N,): the fingerprint of each uint8 image of `images` (N, H, W, C)."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"fingerprints take uint8 images (N, H, W, C); got {images.dtype} "
                     f"{images.shape}.")
  # One hasher fed the shape, copied per image: the same digest as hashing shape + pixels,
  # without concatenating bytes (hashing is then nearly all the cost).
  start = hashlib.blake2b(np.asarray(images.shape[1:], np.int64).tobytes(), digest_size=8)
  rows = np.ascontiguousarray(images).reshape(len(images), -1)

  def digest(row: np.ndarray) -> bytes:
    h = start.copy()
    h.update(row.data)
    return h.digest()

  return np.frombuffer(b"".join(map(digest, rows)), "<u8").astype(np.uint64)


def of_source(source: Any) -> np.ndarray:
  """uint64 (len(source),): the fingerprints of a source's images (input_pipeline.Source:
  `source[i]["image"]`), in its order; an in-memory source's arrays are hashed directly."""
  images = getattr(source, "images", None)
  if isinstance(images, np.ndarray):
    return of_images(images)
  chunks = [of_images(np.stack([source[i]["image"]
                                for i in range(start, min(start + _CHUNK, len(source)))]))
            for start in range(0, len(source), _CHUNK)]
  return np.concatenate(chunks) if chunks else np.zeros((0,), np.uint64)


def count_in(fingerprints: np.ndarray, known: np.ndarray) -> int:
  """How many of `fingerprints` are among `known` (an image present twice counts twice)."""
  return int(np.isin(fingerprints, known).sum())


def save(path: str | os.PathLike[str], fingerprints: np.ndarray) -> None:
  """Writes `fingerprints` to `path` as a sorted uint64 .npy, whole or not at all
  (input_pipeline/atomic_file.py)."""
  values = np.sort(np.asarray(fingerprints, np.uint64))
  atomic_file.write(path, lambda f: np.save(f, values, allow_pickle=False))


def load(path: str | os.PathLike[str]) -> np.ndarray | None:
  """The fingerprints saved at `path`; None when there is no such file (a run from before
  they were recorded). ValueError for a file that is not a uint64 vector."""
  if not os.path.exists(path):
    return None
  try:
    values = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a readable .npy array ({e}).") from None
  if values.dtype != np.uint64 or values.ndim != 1:
    raise ValueError(f"{path} holds {values.dtype} {values.shape}, not uint64 fingerprints.")
  return values
