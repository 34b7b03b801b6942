"""Every config file builds, validates and trains for a step at a tiny width."""

import importlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

import train
from configs import validation
from rectifiers.linen import PAPER_SETTINGS

CONFIGS = ["quickstart", "nin_cifar10", "nin_cifar100", "inception_bn_cifar100", "ndsb",
           "ndsb_cpu", "cifar10_mini", "small_data", "cifar10_full"]


def load(name: str, rectifier: str | None = None) -> ml_collections.ConfigDict:
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(rectifier) if rectifier else module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("rectifier", PAPER_SETTINGS)
def test_config_validates_with_every_paper_setting(name, rectifier):
  config = load(name, rectifier)
  assert config.rectifier == rectifier
  validation.validate_config(config)


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config.model_options.width = 0.0625
  config.batch_size = 4
  config.eval_batch_size = 8
  config.steps_per_epoch = 1
  config.num_epochs = 1
  return config


def plankton_folder(root, classes=3, per_class=6):
  """Grayscale JPEGs of varying sizes in the Kaggle NDSB layout (train/<class>/<id>.jpg)."""
  rng = np.random.default_rng(0)
  for c in range(classes):
    (root / "train" / f"class_{c}").mkdir(parents=True)
    for i in range(per_class):
      h, w = rng.integers(40, 120, size=2)
      pixels = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
      Image.fromarray(pixels, "L").save(root / "train" / f"class_{c}" / f"{i}.jpg")
  return root


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nin_cifar10", "nin_cifar100", "inception_bn_cifar100"])
def test_tfds_config_trains_a_step_on_mocked_data(name, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  # Inception-BN's 66 rectifiers make its RReLU step the slowest compile of the suite;
  # the RReLU path is trained in test_train.py, so this checks the recipe with ReLU.
  config = shrink(load(name, "relu" if name.startswith("inception") else None))
  with tfds.testing.mock_data(num_examples=8):
    summary = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary["test_loss"]) and summary["step"] == 1


@pytest.mark.slow
def test_ndsb_config_trains_a_step_on_a_plankton_style_folder(tmp_path):
  folder = plankton_folder(tmp_path / "ndsb")
  config = shrink(load("ndsb"))
  config.dataset = f"folder:{folder}"
  config.holdout = 6
  config.cache_dir = str(tmp_path / "cache")
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["test_examples"] == 6 and np.isfinite(summary["test_loss"])
