"""The NDSB path on the real plankton images (../shared/data/ndsb): the config finds them,
the split is the paper's, and what reaches the network is what AuroraXie's cxxnet fed it."""

import os
from pathlib import Path
import shutil

import jax
import numpy as np
from PIL import Image
import pytest

import input_pipeline
from configs import ndsb, validation
from input_pipeline import augment
from tests.helpers import REPO

NDSB = REPO.parent / "shared" / "data" / "ndsb"
needs_ndsb = pytest.mark.skipif(not (NDSB / "train").is_dir(),
                                reason=f"the NDSB images are not at {NDSB}")
# Three real classes, the smallest of the 121 among them (8 images here), a few files each.
CLASSES = ("acantharia_protist", "hydromedusae_haliscera_small_sideview", "trochophore_larvae")


def _class_counts() -> dict[str, int]:
  return {c: len(os.listdir(NDSB / "train" / c)) for c in sorted(os.listdir(NDSB / "train"))}


def _real_subset(dst: Path, per_class: int = 8) -> Path:
  for c in CLASSES:
    (dst / "train" / c).mkdir(parents=True)
    for f in sorted(os.listdir(NDSB / "train" / c))[:per_class]:
      shutil.copy(NDSB / "train" / c / f, dst / "train" / c / f)
  return dst


def _load(folder: Path, tmp_path: Path, holdout: int) -> input_pipeline.Dataset:
  config = ndsb.get_config()
  return input_pipeline.load(f"folder:{folder}", image_size=config.image_size,
                             grayscale=config.grayscale, holdout=holdout,
                             cache_dir=str(tmp_path / "cache"))


def test_ndsb_config_names_the_shared_folder_relative_to_the_working_directory():
  spec = ndsb.get_config().dataset
  assert spec.startswith("folder:") and not os.path.isabs(spec[len("folder:"):])
  assert Path(spec[len("folder:"):]).resolve() == NDSB.resolve()


def test_ndsb_config_follows_auroraxies_model2_augmentation():
  # models/model2/val.conf: max_rotate_angle=180, max_shear_ratio=0.5, max_aspect_ratio=0.5,
  # min/max_random_scale=0.3/1.7, min/max_img_size=80/100, crop 70, rand_mirror, fill 255.
  config = ndsb.get_config()
  aug = validation.augment_config(config)
  assert (aug.ndsb, aug.crop_size, aug.rotation, aug.shear) == (True, 70, 180.0, 0.5)
  assert (aug.aspect, aug.scale, aug.canvas, aug.fill) == (
      (0.5, 1.5), (0.3, 1.7), (80.0, 100.0), 255.0)
  assert (config.image_size, config.grayscale, config.model) == (80, True, "ndsb")


@needs_ndsb
def test_the_holdout_leaves_the_papers_25000_and_every_class_in_the_test_split():
  counts = _class_counts()
  assert len(counts) == 121 and sum(counts.values()) == 27_338
  labels = np.repeat(np.arange(len(counts)), list(counts.values()))
  keep, held_out = input_pipeline.sources.stratified_holdout(labels, ndsb.HOLDOUT)
  assert (len(keep), len(held_out)) == (25_000, 2_338)
  assert set(labels[held_out]) == set(range(121))
  assert min(counts.values()) == len(os.listdir(NDSB / "train" / CLASSES[1]))


@needs_ndsb
def test_real_plankton_images_decode_as_80x80_grayscale(tmp_path):
  folder = _real_subset(tmp_path / "ndsb")
  ds = _load(folder, tmp_path, holdout=6)
  assert ds.class_names == CLASSES and ds.image_shape == (80, 80, 1)
  assert (len(ds.train), len(ds.test)) == (18, 6)
  assert set(ds.test.labels) == {0, 1, 2}  # every class of the test split is present
  images = np.concatenate([ds.train.images, ds.test.images])
  assert images.dtype == np.uint8 and images.shape[1:] == (80, 80, 1)
  assert np.median(images) >= 250  # dark plankton on a white background
  # The copies are RGB JPEGs of grayscale originals: their channels' mean, resized as
  # AuroraXie's `convert -resize 80x80!` (aspect not kept), is the decoded image.
  first = sorted(os.listdir(folder / "train" / CLASSES[0]))[0]
  rgb = np.asarray(Image.open(folder / "train" / CLASSES[0] / first).convert("RGB"), np.float32)
  want = Image.fromarray(rgb.mean(-1).round().astype(np.uint8)).resize(
      (80, 80), Image.Resampling.BILINEAR)
  decoded = [ds.train.images[i] for i in range(len(ds.train)) if ds.train.labels[i] == 0]
  assert any(np.abs(d[..., 0].astype(int) - np.asarray(want, int)).max() <= 3 for d in decoded)


@needs_ndsb
def test_the_network_sees_70x70_augmented_crops_and_the_centre_crop_at_test(tmp_path):
  ds = _load(_real_subset(tmp_path / "ndsb"), tmp_path, holdout=6)
  config = validation.augment_config(ndsb.get_config())
  images, mean = ds.train.images[:8], np.asarray(ds.mean_image)
  train = np.asarray(augment.preprocess(images, jax.random.key(0), mean_image=mean,
                                        config=config, train=True))
  assert train.shape == (8, 70, 70, 1)
  # Bilinear samples are convex combinations of the pixels and the white fill.
  assert train.min() >= -mean.max() - 1e-3 and train.max() <= 255 - mean.min() + 1e-3
  assert not np.allclose(train, images[:, 5:75, 5:75] - mean[5:75, 5:75])
  test = np.asarray(augment.preprocess(images, None, mean_image=mean, config=config,
                                       train=False))
  np.testing.assert_allclose(test, images[:, 5:75, 5:75] - mean[5:75, 5:75], atol=1e-4)
