"""configs/validation.py: every check named by its key, before data is read or anything
compiles (the same errors through train.py: tests/test_train.py)."""

import ml_collections
import numpy as np
import pytest

import input_pipeline
from configs import ndsb, validation
from input_pipeline import augment
from tests.helpers import tiny_config


def config_with(**values):
  """tiny_config() with `values` set by dotted key, type checks bypassed (as a config file
  or a JSON record can do)."""
  config = tiny_config().to_dict()
  for key, value in values.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return ml_collections.ConfigDict(config)


def test_the_tiny_and_paper_configs_pass():
  validation.validate_config(tiny_config())
  validation.validate_config(ndsb.get_config())


@pytest.mark.parametrize("values,match", [
    ({"learnig_rate": 0.1}, r"Unknown config key 'learnig_rate'; the valid keys at this level"),
    ({"augment.flips": True}, r"Unknown config key 'augment.flips'"),
    ({"augment": 3}, r"config.augment must be a group of keys, got 3"),
    ({"batch_size": 8.0}, r"config.batch_size must be an int, got 8.0 \(float\)"),
    ({"dataset": 3}, r"config.dataset must be a str, got 3 \(int\)"),
    ({"activation_statistics": 1}, r"config.activation_statistics must be a bool"),
    ({"num_epochs": 0}, r"config.num_epochs must be >= 1, got 0"),
    ({"holdout": -1}, r"config.holdout must be >= 0, got -1"),
    ({"dtype": "float64"}, r"config.dtype must be one of \[.*\], got 'float64'"),
    ({"momentum": 1.0}, r"config.momentum must be a finite number in \[0, 1\), got 1.0"),
    ({"lr_decay_factor": 0}, r"config.lr_decay_factor must be a finite number > 0, got 0"),
    ({"warmup_epochs": -0.5}, r"config.warmup_epochs must be a finite number >= 0"),
    ({"lr_decay_epochs": (3, -1)}, r"config.lr_decay_epochs must be a list of epochs"),
    ({"cpu_devices": True}, r"config.cpu_devices must be an int, got True \(bool\)"),
    ({"rectifier": "rrelu(lower=9, upper=3)"}, r"config.rectifier: "),
    ({"model_options.width": -1.0}, r"config.model / config.model_options: "),
    ({"augment.crop": "random", "augment.crop_size": 0}, r"config.augment: "),
])
def test_each_bad_value_is_refused_naming_its_key(values, match):
  with pytest.raises(validation.ConfigError, match=match):
    validation.validate_config(config_with(**values))


@pytest.mark.parametrize("value,expected", [
    ("", None), ("runs/a", ("runs/a", None)), ("runs/a:30", ("runs/a", 30)),
    ("runs/a:b", ("runs/a:b", None)), ("C:/runs:7", ("C:/runs", 7)),
])
def test_init_from_reads_a_workdir_and_an_optional_step(value, expected):
  assert validation.init_from({"init_from": value}) == expected


def test_augment_config_reads_a_json_record_with_lists_as_tuples():
  record = {"augment": {"ndsb": True, "crop_size": 70, "aspect": [0.8, 1.25],
                        "canvas": [80, 100]}}
  config = validation.augment_config(record)
  assert config == augment.AugmentConfig(ndsb=True, crop_size=70, aspect=(0.8, 1.25),
                                         canvas=(80, 100))
  hash(config)  # static for jit


def dataset(classes=3, train=10, test=4, side=16):
  images = lambda n: np.zeros((n, side, side, 3), np.uint8)
  labels = lambda n: np.arange(n, dtype=np.int32) % classes
  return input_pipeline.Dataset(
      train=input_pipeline.ArraySource(images(train), labels(train)),
      test=input_pipeline.ArraySource(images(test), labels(test)),
      num_classes=classes, class_names=tuple(f"c{i}" for i in range(classes)),
      image_shape=(side, side, 3), mean_image=np.zeros((side, side, 3), np.float32))


@pytest.mark.parametrize("data,values,match", [
    (dataset(classes=1), {}, r"has 1 class \(c0\); a classifier needs at least 2"),
    (dataset(test=0), {}, r"has no test examples: add a test/ folder or set config.holdout"),
    (dataset(train=5), {"batch_size": 8}, r"config.batch_size=8 is larger than the training "
                                          r"split .* \(5 examples\): lower it"),
    (dataset(side=16), {"model": "ndsb", "model_options": {}},
     r"ndsb on the images of .* \(16x16x3\): "),
])
def test_what_only_the_data_can_tell_is_refused_before_compiling(data, values, match):
  with pytest.raises(validation.ConfigError, match=match):
    validation.check_data(config_with(**values), data)
