"""input_pipeline/fingerprints.py: which evaluation images a run trained on."""

import hashlib

import numpy as np
import pytest

from input_pipeline import fingerprints, sources


def _images(seed, n=6, shape=(8, 8, 3)):
  return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def test_a_fingerprint_is_blake2b_of_the_shape_and_pixels():
  images = _images(0, n=2)
  for image, value in zip(images, fingerprints.of_images(images)):
    digest = hashlib.blake2b(np.asarray([8, 8, 3], np.int64).tobytes() + image.tobytes(),
                             digest_size=8).digest()
    assert value == np.uint64(int.from_bytes(digest, "little"))


def test_the_same_pixels_match_and_a_one_level_change_does_not():
  train = _images(0)
  copy = train[[4, 1, 4]].copy()  # image 4 twice: counted twice
  changed = train[[2]].copy()
  changed[0, 3, 3, 0] ^= 1
  known = fingerprints.of_images(train)
  evaluation = fingerprints.of_images(np.concatenate([copy, changed, _images(1, n=3)]))
  assert fingerprints.count_in(evaluation, known) == 3


def test_the_same_bytes_in_another_shape_are_another_image():
  image = _images(0, n=1, shape=(4, 6, 1))
  assert fingerprints.of_images(image)[0] != fingerprints.of_images(
      image.reshape(1, 6, 4, 1))[0]


def test_a_source_read_example_by_example_gives_the_arrays_fingerprints(monkeypatch):
  monkeypatch.setattr(fingerprints, "_CHUNK", 4)  # several chunks
  held = sources.ArraySource(_images(0, n=10), np.zeros(10, np.int32))
  order = np.array([9, 0, 3, 3, 5, 1, 2, 8, 7, 6, 4])
  viewed = sources.SubsetSource(held, order)  # not an in-memory source: read one by one
  np.testing.assert_array_equal(fingerprints.of_source(viewed),
                                fingerprints.of_images(held.images)[order])
  assert fingerprints.of_source(sources.SubsetSource(held, np.zeros(0, np.int64))).shape == (0,)


def test_saved_fingerprints_load_sorted_and_a_run_without_them_has_none(tmp_path):
  values = fingerprints.of_images(_images(0))
  fingerprints.save(tmp_path / "f.npy", values)
  loaded = fingerprints.load(tmp_path / "f.npy")
  assert loaded.dtype == np.uint64 and list(loaded) == sorted(values)
  assert fingerprints.load(tmp_path / "older-run.npy") is None
  np.save(tmp_path / "other.npy", np.zeros(3, np.float32))
  with pytest.raises(ValueError, match="float32 .* not uint64 fingerprints"):
    fingerprints.load(tmp_path / "other.npy")


def test_fingerprints_take_uint8_images_only():
  with pytest.raises(ValueError, match="uint8 images .* got float32"):
    fingerprints.of_images(np.zeros((1, 2, 2, 1), np.float32))
