"""Whether a config can run: keys, types, ranges and names, checked before anything compiles.

`validate_config` needs no data; `check_data` is what only the dataset can tell (classes,
examples, an image size the network accepts). Both raise `ConfigError`, whose message
names the key and what is allowed. `augment_config` is the config's augmentation as the
preprocessing's argument (the checks build it, and the network: `models.from_config`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import input_pipeline
import models
from configs import default as default_config
from input_pipeline import augment
from rectifiers import linen as rectifiers_linen


class ConfigError(ValueError):
  """A configuration value is unknown or out of range; raised before anything compiles."""


def augment_config(config: Mapping[str, Any]) -> augment.AugmentConfig:
  """config.augment as the preprocessing's config, from a ConfigDict or a run's record of
  one (config.json, an export's model.json): lists back to tuples."""
  group = config["augment"]
  group = group.to_dict() if hasattr(group, "to_dict") else dict(group)
  values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                            for k, v in group.items()}
  return augment.AugmentConfig(**values)


def _has_default_type(value: Any, default: Any) -> bool:
  """Whether `value` fits the type of its default (ints pass for floats, lists for tuples)."""
  if isinstance(value, bool) or isinstance(default, bool):
    return isinstance(value, bool) and isinstance(default, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  if isinstance(default, tuple):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(default))


def _check_keys(config: Mapping[str, Any], reference: Mapping[str, Any], prefix: str = "") -> None:
  for key, value in config.items():
    if key not in reference:
      raise ConfigError(f"Unknown config key {prefix + key!r}; the valid keys at this level are "
                        f"{sorted(reference)} (see configs/default.py).")
    default = reference[key]
    if key == "model_options":  # the model's own options: models.create checks them.
      continue
    if isinstance(default, Mapping):
      if not isinstance(value, Mapping):
        raise ConfigError(f"config.{prefix + key} must be a group of keys, got {value!r}.")
      _check_keys(value, default, f"{prefix}{key}.")
    elif default is not None and not _has_default_type(value, default):
      name = type(default).__name__
      raise ConfigError(f"config.{prefix + key} must be {'an' if name[0] in 'aeiou' else 'a'} "
                        f"{name}, got {value!r} ({type(value).__name__}).")


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_numbers(config: ml_collections.ConfigDict) -> None:
  ranges = {  # key: (test, what is allowed)
      "learning_rate": (lambda v: v > 0, "> 0"), "input_scale": (lambda v: v > 0, "> 0"),
      "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
      "weight_decay": (lambda v: v >= 0, ">= 0"), "warmup_epochs": (lambda v: v >= 0, ">= 0"),
      "lr_decay_factor": (lambda v: v > 0, "> 0")}
  for key, (ok, allowed) in ranges.items():
    value = config[key]
    if not (_is_number(value) and math.isfinite(value) and ok(value)):
      raise ConfigError(f"config.{key} must be a finite number {allowed}, got {value!r}.")
  epochs = config.lr_decay_epochs
  if not (isinstance(epochs, (tuple, list))
          and all(_is_number(e) and math.isfinite(e) and e >= 0 for e in epochs)):
    raise ConfigError(f"config.lr_decay_epochs must be a list of epochs (finite numbers >= 0), "
                      f"e.g. --config.lr_decay_epochs='(200, 230)'; got {epochs!r}.")


def check_cpu_devices(config: ml_collections.ConfigDict) -> int:
  """config.cpu_devices, checked (0: one device per core, 1: XLA's single device, N: N)."""
  value = config.get("cpu_devices", 0)
  if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
    raise ConfigError(f"config.cpu_devices must be an int >= 0 (0: one device per core, 1: "
                      f"XLA's single multi-threaded device), got {value!r}.")
  return value


def init_from(config: Mapping[str, Any]) -> tuple[str, int | None] | None:
  """config.init_from "WORKDIR[:STEP]" as (WORKDIR, STEP or None: the newest); None when
  unset. ConfigError for a value without a workdir."""
  value = config.get("init_from", "")
  if not value:
    return None
  path, colon, step = value.rpartition(":")
  if not (colon and step.isdigit()):
    path, step = value, None
  if not path:
    raise ConfigError(f"config.init_from must be WORKDIR or WORKDIR:STEP (a run directory "
                      f"and one of its checkpoint steps), got {value!r}.")
  return path, None if step is None else int(step)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks keys, types, ranges and names (dataset, model, rectifier, options) without
  reading data or compiling."""
  _check_keys(config.to_dict(), default_config.get_config().to_dict())
  for key in ("batch_size", "num_epochs", "eval_every_epochs", "checkpoint_every_epochs",
              "keep_checkpoints", "log_every_steps"):
    if config[key] < 1:
      raise ConfigError(f"config.{key} must be >= 1, got {config[key]}.")
  for key in ("steps_per_epoch", "eval_batch_size", "worker_count", "holdout", "image_size",
              "train_examples", "train_eval_examples", "profile_steps"):
    if config[key] < 0:
      raise ConfigError(f"config.{key} must be >= 0, got {config[key]}.")
  if config.dtype not in models.DTYPES:
    raise ConfigError(f"config.dtype must be one of {list(models.DTYPES)}, got "
                      f"{config.dtype!r}.")
  _check_numbers(config)
  check_cpu_devices(config)
  init_from(config)
  processes = jax.process_count()
  if config.batch_size % processes or (config.eval_batch_size or config.batch_size) % processes:
    raise ConfigError(f"config.batch_size ({config.batch_size}) and config.eval_batch_size must "
                      f"be divisible by the number of processes ({processes}).")
  try:
    rectifiers_linen.rectifier_factory(config.rectifier)
  except ValueError as e:
    raise ConfigError(f"config.rectifier: {e}") from None
  try:
    models.from_config(config, num_classes=2)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model / config.model_options: {e}") from None
  try:
    augment_config(config)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.augment: {e}") from None


def check_data(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset) -> None:
  """What only the data can tell: enough classes, examples and pixels for this config."""
  where = f"config.dataset {config.dataset!r}"
  if dataset.num_classes < 2:
    raise ConfigError(f"{where} has {dataset.num_classes} class "
                      f"({', '.join(dataset.class_names)}); a classifier needs at least 2.")
  if len(dataset.test) == 0:
    raise ConfigError(f"{where} has no test examples: add a test/ folder or set "
                      "config.holdout to hold out part of train/.")
  if config.batch_size > len(dataset.train):
    raise ConfigError(f"config.batch_size={config.batch_size} is larger than the training "
                      f"split of {where} ({len(dataset.train)} examples): lower it.")
  model = models.from_config(config, dataset.num_classes)
  try:
    shape = augment.output_shape(dataset.image_shape, augment_config(config))
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
  except (ValueError, TypeError) as e:
    raise ConfigError(f"{config.model} on the images of {where} "
                      f"({'x'.join(map(str, dataset.image_shape))}): {e}") from None
