"""The one way a config becomes what a run computes with: its dataset (`load_data`), its
mesh (`data_mesh`), its network, optimiser, initial state and jitted train step (`build`,
also the benchmarks'), and with the data, the evaluation and the loop's inputs (`setup`,
for train.py, the notebooks and the benchmarks alike)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import input_pipeline
import models
from configs import validation
from input_pipeline import augment
from training import devices, evaluation, optimizer, records, steps


def load_dataset(config: ml_collections.ConfigDict,
                 evaluation_split: str | None = None) -> input_pipeline.Dataset:
  """`input_pipeline.load` with the config's data keys; ConfigError for a bad spec. With
  `evaluation_split` (evaluate.py), only that split is needed: a folder without train/
  may be that split alone."""
  try:
    return input_pipeline.load(
        config.dataset, data_dir=config.data_dir or None, train_split=config.train_split,
        test_split=config.test_split, image_size=config.image_size or None,
        grayscale=config.grayscale, holdout=config.holdout, skip_corrupt=config.skip_corrupt,
        cache_dir=config.cache_dir or None, train_examples=config.train_examples,
        subset_seed=config.subset_seed,
        # Runs recorded before the limit existed have no such key.
        max_image_pixels=config.get("max_image_pixels", input_pipeline.folder.MAX_PIXELS),
        evaluation_split=evaluation_split)
  except ValueError as e:
    raise validation.ConfigError(f"config.dataset: {e}") from None


def load_data(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  """The config's dataset, checked against the config (`check_data`)."""
  dataset = load_dataset(config)
  validation.check_data(config, dataset)
  return dataset


def train_eval_subset(train: input_pipeline.Source, size: int) -> input_pipeline.Source:
  """The training examples evaluated in deterministic mode at every evaluation: a fixed
  random subset of `size` (seed 0, the same for every run of a split), all if fewer."""
  if size <= 0:
    return input_pipeline.take(train, np.zeros((0,), np.int64))
  if size >= len(train):
    return train
  return input_pipeline.take(
      train, np.sort(np.random.RandomState(0).choice(len(train), size, replace=False)))


DATA_AXIS = "data"


def mesh_over(mesh_devices: Sequence[jax.Device]) -> Mesh:
  """The 1-D mesh over `mesh_devices` whose "data" axis the batch is split along."""
  return Mesh(np.asarray(mesh_devices), (DATA_AXIS,))


def data_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """The 1-D "data" mesh a run of `config` computes on: the most of JAX's devices that
  divide its batch and evaluation batch (all of them with several processes, which must
  divide; training/devices.mesh_devices)."""
  batch_sizes = (config.batch_size, config.eval_batch_size or config.batch_size)
  mesh_devices = devices.mesh_devices(jax.devices(), batch_sizes)
  for key, size in zip(("batch_size", "eval_batch_size"), batch_sizes):
    if size % len(mesh_devices):
      raise validation.ConfigError(f"config.{key} ({size}) must be divisible by the number of "
                                   f"devices ({len(mesh_devices)}).")
  return mesh_over(mesh_devices)


@dataclasses.dataclass(frozen=True)
class Parts:
  """What a config builds before any data is read: the network, the schedule, and the
  jitted initial state and train step over a mesh's "data" axis."""

  model: nn.Module
  input_shape: tuple[int, ...]  # what the network sees: the image shape after augmentation
  schedule: optax.Schedule
  data_sharding: NamedSharding
  replicated: NamedSharding
  init: Callable[[jax.Array], steps.TrainState]  # from the run's key (create_train_state)
  train_step: Callable[..., tuple[steps.TrainState, dict[str, jax.Array]]]


def build(config: ml_collections.ConfigDict, mesh: Mesh, *, image_shape: Sequence[int],
          num_classes: int, steps_per_epoch: int) -> Parts:
  """A run's network (`models.from_config`), optimiser, initial state and jitted train step
  for images of `image_shape` on `mesh` (`data_mesh(config)` for training): what `setup`
  builds for training, and the benchmarks for synthetic batches."""
  replicated = NamedSharding(mesh, P())
  model = models.from_config(config, num_classes)
  aug = validation.augment_config(config)
  input_shape = augment.output_shape(tuple(image_shape), aug)
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch)
  tx = optimizer.make_optimizer(config, schedule)
  return Parts(
      model=model, input_shape=input_shape, schedule=schedule,
      data_sharding=NamedSharding(mesh, P("data")), replicated=replicated,
      init=jax.jit(functools.partial(steps.create_train_state, model, input_shape, tx),
                   out_shardings=replicated),
      train_step=steps.jit_train_step(mesh, tx, model=model, augment_config=aug,
                                      input_scale=config.input_scale))


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run of one config on one dataset computes with: `build`'s parts, the
  evaluation, the epoch's length and the train-eval subset."""

  config: ml_collections.ConfigDict
  dataset: input_pipeline.Dataset
  parts: Parts
  evaluator: evaluation.Evaluator
  steps_per_epoch: int
  train_eval: input_pipeline.Source
  add_metrics: Callable[..., dict[str, jax.Array]]

  @property
  def total_steps(self) -> int:
    return self.steps_per_epoch * self.config.num_epochs

  @property
  def mean_image(self) -> jax.Array:
    """The training split's mean image on the devices (the steps subtract it)."""
    return self.evaluator.mean_image

  @property
  def data_sharding(self) -> NamedSharding:
    return self.parts.data_sharding

  @property
  def num_devices(self) -> int:
    return self.parts.data_sharding.mesh.size

  @functools.cached_property  # tracing init is seconds for Inception-BN; asked twice a run
  def num_params(self) -> int:
    shapes = jax.eval_shape(self.parts.init, jax.random.key(0)).params
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))

  def zero_metrics(self) -> dict[str, jax.Array]:
    return jax.device_put(steps.zero_metrics(), self.parts.replicated)

  def train_iterator(self) -> Any:
    return input_pipeline.train_iterator(
        self.dataset.train, batch_size=self.config.batch_size // jax.process_count(),
        seed=self.config.seed, shard_index=jax.process_index(),
        shard_count=jax.process_count(), worker_count=self.config.worker_count)

  def evaluate(self, state: steps.TrainState, histograms: bool = False) -> dict[str, Any]:
    """The metrics row's evaluation columns on the test split and the train-eval subset
    (`Evaluator.evaluate`)."""
    return self.evaluator.evaluate(state, self.dataset.test, self.train_eval, histograms)

  def dataset_record(self) -> records.DatasetRecord:
    d = self.dataset
    return records.DatasetRecord(
        spec=self.config.dataset, class_names=list(d.class_names), num_classes=d.num_classes,
        image_shape=list(d.image_shape), train_examples=len(d.train),
        test_examples=len(d.test), full_train_examples=d.full_train_examples,
        subset_seed=d.subset_seed, train_eval_examples=len(self.train_eval),
        # Unreadable images left out (config.skip_corrupt), named inside the folder.
        skipped_files=[os.path.relpath(f, self.config.dataset.partition(":")[2])
                       for f in d.skipped_files])


def setup(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset) -> Setup:
  """Everything a run of `config` on `dataset` computes with: `build`'s parts on
  `data_mesh(config)`, the `Evaluator`, and what comes from the data (steps per epoch, the
  mean image, the train-eval subset)."""
  mesh = data_mesh(config)
  steps_per_epoch = config.steps_per_epoch or input_pipeline.steps_per_epoch(
      len(dataset.train), config.batch_size)
  parts = build(config, mesh, image_shape=dataset.image_shape,
                num_classes=dataset.num_classes, steps_per_epoch=steps_per_epoch)
  return Setup(
      config=config, dataset=dataset, parts=parts,
      evaluator=evaluation.Evaluator.create(config, parts.model, mesh, dataset.mean_image,
                                            dataset.image_shape),
      steps_per_epoch=steps_per_epoch,
      train_eval=train_eval_subset(dataset.train, config.train_eval_examples),
      add_metrics=jax.jit(steps.add_metrics, out_shardings=parts.replicated,
                          donate_argnums=(0,)))
