r"""Trains one of the paper's networks with one rectifier and reports its errors per epoch.

    python train.py --config=configs/nin_cifar10.py:rrelu --workdir=runs/nin-rrelu \
        --config.num_epochs=10

The same code runs on one CPU, N local devices or N processes (`--multihost`): the step is
`jax.jit`-compiled over a `Mesh` with the batch on the "data" axis and the parameters
replicated; XLA inserts the gradient all-reduce. Notebooks call `train_and_evaluate`, which
changes nothing process-wide and trains on the devices JAX has; the command line sets those
up first (training/process.py).
What a workdir holds and guarantees (one writer, one config, records that match the
checkpoints) is training/run_directory.py's; checkpoints are training/checkpoints.py's.
A diverged run (a non-finite loss, evaluation or state) stops before recording or saving
it; `config.init_from` goes on from one of its checkpoints, in a new workdir, under a
changed config.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import input_pipeline
import models
from configs import default as default_config
from configs import validation
from input_pipeline import augment
import rectifiers
from rectifiers import linen as rectifiers_linen
from rectifiers import statistics
from training import (checkpoints, devices, disk_space, export, figures, process, progress,
                      provenance, records, run_directory, signals, supervisor, tensorboard)

# Independent random streams, derived from the one seed by fold_in (PROBE_STREAM: the
# training-mode pass of the activation statistics, which must not disturb training's).
PARAMS_STREAM, DROPOUT_STREAM, RRELU_STREAM, AUGMENT_STREAM, PROBE_STREAM = range(5)
DTYPES = models.DTYPES
load_checkpoint = checkpoints.load_checkpoint  # for notebooks: train.load_checkpoint(workdir)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# --- Configuration ---------------------------------------------------------------------------

augment_config = validation.augment_config  # for notebooks: train.augment_config(config)


def load_data(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  """The config's dataset, checked against the config (`check_data`)."""
  dataset = load_dataset(config)
  validation.check_data(config, dataset)
  return dataset


def load_dataset(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  """`input_pipeline.load` with the config's data keys; ConfigError for a bad spec."""
  try:
    return input_pipeline.load(
        config.dataset, data_dir=config.data_dir or None, train_split=config.train_split,
        test_split=config.test_split, image_size=config.image_size or None,
        grayscale=config.grayscale, holdout=config.holdout, skip_corrupt=config.skip_corrupt,
        cache_dir=config.cache_dir or None, train_examples=config.train_examples,
        subset_seed=config.subset_seed,
        # Runs recorded before the limit existed have no such key.
        max_image_pixels=config.get("max_image_pixels", input_pipeline.folder.MAX_PIXELS))
  except ValueError as e:
    raise validation.ConfigError(f"config.dataset: {e}") from None


# --- Optimisation --------------------------------------------------------------------------


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> optax.Schedule:
  """Piecewise constant in epochs (x lr_decay_factor at each of lr_decay_epochs), after a
  linear warm-up over warmup_epochs (needed on raw pixels: without it ReLU units died and
  PReLU diverged in the first epochs on CIFAR images here; configs/cifar10_mini.py)."""
  boundaries = {int(round(e * steps_per_epoch)): config.lr_decay_factor
                for e in config.lr_decay_epochs}
  piecewise = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  warmup_steps = config.warmup_epochs * steps_per_epoch

  def schedule(step):
    lr = piecewise(step)
    if warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, (step + 1) / warmup_steps)
    return lr

  return schedule


def weight_decay_mask(params: Any, decayed_names: tuple[str, ...]) -> Any:
  """True for the parameters whose own name is in `decayed_names` (default: "kernel")."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) in decayed_names, params)


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum and L2 weight decay (cxxnet's wd: added to the gradient)."""
  return optax.chain(
      optax.add_decayed_weights(
          config.weight_decay,
          mask=functools.partial(weight_decay_mask, decayed_names=tuple(config.weight_decay_on))),
      optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))


# --- Steps ---------------------------------------------------------------------------------


def kaggle_log_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Multi-class log-loss per example as Kaggle's NDSB scored it: p clipped to
  [1e-15, 1 - 1e-15], rows renormalised, natural log."""
  p = jnp.clip(jax.nn.softmax(logits.astype(jnp.float32)), 1e-15, 1 - 1e-15)
  p = p / p.sum(axis=-1, keepdims=True)
  return -jnp.log(jnp.take_along_axis(p, labels[:, None], axis=-1)[:, 0])


def step_keys(rng: jax.Array, step: jax.Array) -> dict[int, jax.Array]:
  """Per-step keys: fold_in(fold_in(seed, stream), step), one stream per kind of noise."""
  return {s: jax.random.fold_in(jax.random.fold_in(rng, s), step)
          for s in (DROPOUT_STREAM, RRELU_STREAM, AUGMENT_STREAM)}


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
               mean_image: jax.Array, *, model: nn.Module, tx: optax.GradientTransformation,
               augment_config: augment.AugmentConfig,
               input_scale: float) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a global batch; returns the new state and summed training metrics.

  The noise is drawn for the global batch shape, so an example's dropout, RReLU slopes and
  augmentation do not depend on how many devices the batch is split over.
  """
  keys = step_keys(rng, state.step)
  images = augment.preprocess(batch["image"], keys[AUGMENT_STREAM], mean_image=mean_image,
                              config=augment_config, train=True) * input_scale
  labels = batch["label"]
  has_bn = state.batch_stats is not None

  def loss_fn(params):
    rngs = {"dropout": keys[DROPOUT_STREAM], "rrelu": keys[RRELU_STREAM]}
    if has_bn:
      logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                    train=True, mutable=["batch_stats"], rngs=rngs)
    else:
      logits, updates = model.apply({"params": params}, images, train=True, rngs=rngs), {}
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(), (loss, logits, updates)

  grads, (loss, logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, param_updates),
                            batch_stats=updates["batch_stats"] if has_bn else None,
                            opt_state=opt_state)
  metrics = {"loss": loss.sum(), "errors": jnp.sum(jnp.argmax(logits, -1) != labels),
             "count": jnp.float32(labels.shape[0]),
             # The first step whose loss is not finite (or a huge sentinel), for the guard.
             "first_nonfinite_step": jnp.where(jnp.isfinite(loss.sum()), jnp.iinfo(jnp.int32).max,
                                               state.step).astype(jnp.int32)}
  return new_state, metrics


def _variables(state: TrainState) -> dict[str, Any]:
  if state.batch_stats is None:
    return {"params": state.params}
  return {"params": state.params, "batch_stats": state.batch_stats}


def _test_images(batch: dict[str, jax.Array], mean_image: jax.Array,
                 augment_config: augment.AugmentConfig, input_scale: float) -> jax.Array:
  return augment.preprocess(batch["image"], None, mean_image=mean_image, config=augment_config,
                            train=False) * input_scale


def eval_step(state: TrainState, batch: dict[str, jax.Array], mean_image: jax.Array, *,
              model: nn.Module, augment_config: augment.AugmentConfig, input_scale: float,
              activation_statistics: bool = False) -> dict[str, Any]:
  """Deterministic-mode (test-time) error and Kaggle log-loss, summed over unmasked
  examples; with `activation_statistics`, also every rectified layer's sums
  (`rectifiers.statistics.masked_sums`), from the same forward pass."""
  images = _test_images(batch, mean_image, augment_config, input_scale)
  if activation_statistics:
    logits, sown = model.apply(_variables(state), images, train=False,
                               mutable=[statistics.COLLECTION])
  else:
    logits = model.apply(_variables(state), images, train=False)
  mask = batch["mask"].astype(jnp.float32)
  out = {"loss": jnp.sum(kaggle_log_loss(logits, batch["label"]) * mask),
         "errors": jnp.sum((jnp.argmax(logits, -1) != batch["label"]) * mask),
         "count": jnp.sum(mask)}
  if activation_statistics:
    out["activations"] = statistics.masked_sums(sown[statistics.COLLECTION], batch["mask"])
  return out


# The examples of the first evaluation batch that the histograms and RReLU's training-mode
# probe look at: enough for their purpose, few enough to keep them cheap.
PROBE_EXAMPLES = 64


def _probe(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {k: v[:PROBE_EXAMPLES] for k, v in batch.items()}


def preactivation_histograms(state: TrainState, batch: dict[str, jax.Array],
                             mean_image: jax.Array, *, model: nn.Module,
                             augment_config: augment.AugmentConfig, input_scale: float,
                             bins: int = 30) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{layer: (counts, edges)}: each rectified layer's inputs in test mode over the first
  PROBE_EXAMPLES of the batch (unmasked ones), in `bins` bins between their minimum and
  maximum."""
  batch = _probe(batch)
  images = _test_images(batch, mean_image, augment_config, input_scale)
  _, sown = model.apply(_variables(state), images, train=False,
                        mutable=[statistics.PREACTIVATIONS])
  out = {}
  for layer, x in statistics.collect(sown[statistics.PREACTIVATIONS], "x").items():
    x = x.astype(jnp.float32)
    keep = jnp.broadcast_to(batch["mask"].reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    low, high = jnp.min(jnp.where(keep, x, jnp.inf)), jnp.max(jnp.where(keep, x, -jnp.inf))
    out[layer] = jnp.histogram(x, bins=bins, range=(low, high), weights=keep)
  return out


def training_mode_slopes(state: TrainState, batch: dict[str, jax.Array], mean_image: jax.Array,
                         rng: jax.Array, *, model: nn.Module,
                         augment_config: augment.AugmentConfig,
                         input_scale: float) -> dict[str, dict[str, jax.Array]]:
  """Every rectified layer's `slope_sums` in training mode (random slopes, dropout) on the
  first PROBE_EXAMPLES of the batch, for RReLU's realised mean slope; `rng` stands for a
  step's keys."""
  batch = _probe(batch)
  images = _test_images(batch, mean_image, augment_config, input_scale)
  rngs = {"dropout": jax.random.fold_in(rng, DROPOUT_STREAM),
          "rrelu": jax.random.fold_in(rng, RRELU_STREAM)}
  mutable = [statistics.SLOPES] + (["batch_stats"] if state.batch_stats is not None else [])
  _, sown = model.apply(_variables(state), images, train=True, mutable=mutable, rngs=rngs)
  return statistics.masked_sums(sown[statistics.SLOPES], batch["mask"])


def _add_metrics(total: dict[str, jax.Array], new: dict[str, jax.Array]) -> dict[str, jax.Array]:
  out = {k: total[k] + new[k] for k in ("loss", "errors", "count")}
  out["first_nonfinite_step"] = jnp.minimum(total["first_nonfinite_step"],
                                            new["first_nonfinite_step"])
  return out


def _zero_metrics() -> dict[str, np.ndarray]:
  return {"loss": np.float32(0), "errors": np.int32(0), "count": np.float32(0),
          "first_nonfinite_step": np.int32(np.iinfo(np.int32).max)}


def create_train_state(model: nn.Module, input_shape: tuple[int, ...],
                       tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """Initialises parameters (and BatchNorm statistics) from the params stream of `rng`."""
  variables = model.init({"params": jax.random.fold_in(rng, PARAMS_STREAM)},
                         jnp.zeros((1, *input_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.int32(0), params=params,
                    batch_stats=variables.get("batch_stats"), opt_state=tx.init(params))


def train_eval_subset(train: input_pipeline.Source, size: int) -> input_pipeline.Source:
  """The training examples evaluated in deterministic mode at every evaluation: a fixed
  random subset of `size` (seed 0, the same for every run of a split), all if fewer."""
  if size <= 0:
    return input_pipeline.take(train, np.zeros((0,), np.int64))
  if size >= len(train):
    return train
  return input_pipeline.take(
      train, np.sort(np.random.RandomState(0).choice(len(train), size, replace=False)))


# --- What the loop runs ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
  """The compiled-on-first-call steps, the mesh and the schedule of one config and dataset."""

  config: ml_collections.ConfigDict
  dataset: input_pipeline.Dataset
  data_sharding: NamedSharding
  replicated: NamedSharding
  steps_per_epoch: int
  total_steps: int
  schedule: optax.Schedule
  mean_image: jax.Array
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
  eval_step: Callable[..., dict[str, Any]]
  add_metrics: Callable[..., dict[str, jax.Array]]
  train_eval: input_pipeline.Source
  histogram_step: Callable[..., dict[str, tuple[jax.Array, jax.Array]]]
  slope_step: Callable[..., dict[str, dict[str, jax.Array]]]
  # The rectified layers in the order the network runs them: the order of every record.
  layers: tuple[str, ...] = ()
  # RReLU's expected mean training slope, E[slope] (None when the rectifier is not RReLU).
  rrelu_expected_slope: float | None = None

  @property
  def num_devices(self) -> int:
    return self.data_sharding.mesh.size

  @property
  def num_params(self) -> int:
    shapes = jax.eval_shape(self.init, jax.random.key(0)).params
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))

  def zero_metrics(self) -> dict[str, jax.Array]:
    return jax.device_put(_zero_metrics(), self.replicated)

  def train_iterator(self) -> Any:
    return input_pipeline.train_iterator(
        self.dataset.train, batch_size=self.config.batch_size // jax.process_count(),
        seed=self.config.seed, shard_index=jax.process_index(),
        shard_count=jax.process_count(), worker_count=self.config.worker_count)

  @property
  def eval_batch_size(self) -> int:
    return self.config.eval_batch_size or self.config.batch_size

  def evaluate(self, state: TrainState, histograms: bool = False) -> dict[str, Any]:
    """Test-mode error, log-loss and example count on the test split and the train-eval
    subset, as the metrics row's test_* and train_eval_* columns; with
    config.activation_statistics also the row's "activations" (`activation_record`)."""
    row, activations = {}, {}
    for prefix, source in ((records.TEST, self.dataset.test),
                           (records.TRAIN_EVAL, self.train_eval)):
      if not len(source):
        continue
      sums = evaluate_source(self.eval_step, state, source, self.mean_image,
                             batch_size=self.eval_batch_size, data_sharding=self.data_sharding)
      row.update(records.split_columns(prefix, evaluation_metrics(sums)))
      if "activations" in sums:
        activations[prefix] = layer_statistics(sums["activations"], self.layers)
    if self.config.activation_statistics:
      row[records.ACTIVATIONS] = {**activations, **self.activation_record(state, histograms)}
    return row

  def activation_record(self, state: TrainState, histograms: bool) -> dict[str, Any]:
    """PReLU's slopes per layer, RReLU's realised training-mode slope against its
    expectation, and (when `histograms`) each layer's pre-activation histogram on the
    first test batch (rectifiers/statistics.py)."""
    out = {}
    if slopes := statistics.prelu_slopes(jax.device_get(state.params)):
      out[records.PRELU_SLOPES] = in_order({layer: {"mean": float(v.mean()), "min": float(v.min()),
                                              "max": float(v.max())}
                                      for layer, v in slopes.items()}, self.layers)
    first_batch = lambda source: input_pipeline.to_device(next(input_pipeline.eval_batches(
        source, batch_size=self.eval_batch_size // jax.process_count(),
        shard_index=jax.process_index(), shard_count=jax.process_count())), self.data_sharding)
    probe = self.train_eval if len(self.train_eval) else self.dataset.test
    if self.rrelu_expected_slope is not None and len(probe):
      rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.config.seed),
                                                  PROBE_STREAM), state.step)
      sums = jax.device_get(self.slope_step(state, first_batch(probe), self.mean_image, rng))
      out[records.RRELU_TRAINING_SLOPE] = in_order({
          layer: {"realised": v["mean_slope"], "expected": self.rrelu_expected_slope}
          for layer, v in statistics.summarize(_widen(sums)).items()}, self.layers)
    if histograms and len(self.dataset.test):
      hist = jax.device_get(self.histogram_step(state, first_batch(self.dataset.test),
                                                self.mean_image))
      out[records.HISTOGRAMS] = in_order({layer: {"edges": [float(e) for e in edges],
                                            "counts": [int(round(float(c))) for c in counts]}
                                    for layer, (counts, edges) in hist.items()}, self.layers)
    return out

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


def _widen(tree: Any) -> Any:
  """Host copies in 64 bits: sums over a whole split overflow int32 at full width."""
  return jax.tree.map(lambda a: np.asarray(a, np.float64 if np.issubdtype(np.asarray(a).dtype,
                                                                          np.floating)
                                           else np.int64), tree)


def evaluate_source(eval_step: Callable[..., dict[str, Any]], state: TrainState,
                    source: input_pipeline.Source, mean_image: jax.Array, *, batch_size: int,
                    data_sharding: NamedSharding) -> dict[str, Any]:
  """`eval_step`'s sums over every example of `source`, each visited once (the last batch
  padded and masked), every process feeding its own rows of each global batch."""
  sums = None
  for local in input_pipeline.eval_batches(source, batch_size=batch_size // jax.process_count(),
                                           shard_index=jax.process_index(),
                                           shard_count=jax.process_count()):
    out = jax.device_get(eval_step(state, input_pipeline.to_device(local, data_sharding),
                                   mean_image))
    if "activations" in out:
      out = {**out, "activations": _widen(out["activations"])}
    sums = out if sums is None else jax.tree.map(np.add, sums, out)
  return sums


def evaluation_metrics(sums: Mapping[str, Any]) -> dict[str, float | int]:
  """{"error", "loss", "examples"} from `evaluate_source`'s sums."""
  return {"error": float(sums["errors"] / sums["count"]),
          "loss": float(sums["loss"] / sums["count"]), "examples": int(sums["count"])}


def in_order(by_layer: Mapping[str, Any], layers: Sequence[str]) -> dict[str, Any]:
  """`by_layer` with its layers in the network's order (JSON keeps it; jax sorts keys)."""
  rank = {name: i for i, name in enumerate(layers)}
  return dict(sorted(by_layer.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def layer_statistics(sums: Mapping[str, Any], layers: Sequence[str]) -> dict[str, dict[str, float]]:
  """{layer: {dead, negative, negative_output}} as rows record them, in network order."""
  return in_order({layer: {k: v[k] for k in ("dead", "negative", "negative_output")}
                   for layer, v in statistics.summarize(sums).items()}, layers)


def rrelu_expected_slope(spec: str) -> float | None:
  """E[slope] of RReLU's training noise for a rectifier spec; None if it is not RReLU."""
  factory = rectifiers_linen.rectifier_factory(spec)
  if getattr(factory, "func", None) is not rectifiers_linen.RReLU:
    return None
  options = {**rectifiers_linen.default_options("rrelu"), **factory.keywords}
  return rectifiers.rrelu_test_slope(options["lower"], options["upper"], options["sample"],
                                     test_slope="expected")


# --- Building a run's parts: the one way -------------------------------------------------------


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
  return Mesh(np.asarray(mesh_devices), ("data",))


def jit_train_step(mesh: Mesh, tx: optax.GradientTransformation, **options: Any):
  """`train_step` jitted as training runs it: the batch split over the mesh's "data" axis,
  the state, key and mean image replicated, the state donated. `options` are train_step's
  keyword arguments (model, augment_config, input_scale)."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  return jax.jit(functools.partial(train_step, tx=tx, **options),
                 in_shardings=(replicated, data_sharding, replicated, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


def jit_eval_step(mesh: Mesh, **options: Any):
  """`eval_step` jitted as training and evaluate.py run it: the batch split over the mesh's
  "data" axis, the state and mean image replicated. `options` are eval_step's keyword
  arguments (model, augment_config, input_scale, activation_statistics)."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  return jax.jit(functools.partial(eval_step, **options),
                 in_shardings=(replicated, data_sharding, replicated), out_shardings=replicated)


@dataclasses.dataclass(frozen=True)
class Parts:
  """What a config builds before any data is read: the network, the optimiser and its
  schedule, and the jitted initial state and steps over a mesh's "data" axis."""

  model: nn.Module
  augment_config: augment.AugmentConfig
  input_shape: tuple[int, ...]  # what the network sees: the image shape after augmentation
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  data_sharding: NamedSharding
  replicated: NamedSharding
  init: Callable[[jax.Array], TrainState]  # from the run's key (create_train_state)
  train_step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
  eval_step: Callable[..., dict[str, Any]]
  histogram_step: Callable[..., dict[str, tuple[jax.Array, jax.Array]]]
  slope_step: Callable[..., dict[str, dict[str, jax.Array]]]


def build(config: ml_collections.ConfigDict, mesh: Mesh, *, image_shape: Sequence[int],
          num_classes: int, steps_per_epoch: int) -> Parts:
  """A run's network (`models.from_config`), optimiser, initial state and jitted steps for
  images of `image_shape` on `mesh` (`data_mesh(config)` for training): what `setup`
  builds for training, and the benchmarks for synthetic batches."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  model = models.from_config(config, num_classes)
  aug = augment_config(config)
  input_shape = augment.output_shape(tuple(image_shape), aug)
  schedule = learning_rate_schedule(config, steps_per_epoch)
  tx = make_optimizer(config, schedule)
  options = dict(model=model, augment_config=aug, input_scale=config.input_scale)
  return Parts(
      model=model, augment_config=aug, input_shape=input_shape, schedule=schedule, tx=tx,
      data_sharding=data_sharding, replicated=replicated,
      init=jax.jit(functools.partial(create_train_state, model, input_shape, tx),
                   out_shardings=replicated),
      train_step=jit_train_step(mesh, tx, **options),
      eval_step=jit_eval_step(mesh, **options,
                              activation_statistics=config.activation_statistics),
      histogram_step=jax.jit(functools.partial(preactivation_histograms, **options),
                             in_shardings=(replicated, data_sharding, replicated),
                             out_shardings=replicated),
      slope_step=jax.jit(functools.partial(training_mode_slopes, **options),
                         in_shardings=(replicated, data_sharding, replicated, replicated),
                         out_shardings=replicated))


def setup(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset) -> Setup:
  """Everything a run of `config` on `dataset` computes with: `build`'s parts on
  `data_mesh(config)`, and what comes from the data (steps per epoch, the mean image, the
  train-eval subset, the network's rectified layers)."""
  mesh = data_mesh(config)
  steps_per_epoch = config.steps_per_epoch or input_pipeline.steps_per_epoch(
      len(dataset.train), config.batch_size)
  parts = build(config, mesh, image_shape=dataset.image_shape,
                num_classes=dataset.num_classes, steps_per_epoch=steps_per_epoch)
  return Setup(
      config=config, dataset=dataset, data_sharding=parts.data_sharding,
      replicated=parts.replicated, steps_per_epoch=steps_per_epoch,
      total_steps=steps_per_epoch * config.num_epochs, schedule=parts.schedule,
      mean_image=jax.device_put(np.asarray(dataset.mean_image, np.float32), parts.replicated),
      init=parts.init, train_step=parts.train_step, eval_step=parts.eval_step,
      add_metrics=jax.jit(_add_metrics, out_shardings=parts.replicated, donate_argnums=(0,)),
      train_eval=train_eval_subset(dataset.train, config.train_eval_examples),
      histogram_step=parts.histogram_step, slope_step=parts.slope_step,
      layers=tuple(rectifiers_linen.rectified_layers(
          parts.model, jnp.zeros((1, *parts.input_shape)), train=False)),
      rrelu_expected_slope=rrelu_expected_slope(config.rectifier))


@jax.jit
def all_finite(tree: Any) -> jax.Array:
  """Whether every floating-point number in `tree` is finite (one reduction on device)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def diverged(what: str, saved: checkpoints.Checkpoints) -> FloatingPointError:
  """The error that stops a diverged run: `what` went wrong, and how to go on. Rerunning
  the workdir would resume from its last checkpoint and diverge again at the same step, so
  the way on is a new run from that checkpoint with a changed config (config.init_from)."""
  last = saved.latest_step()
  if last is None:
    how = ("No checkpoint was saved yet: lower config.learning_rate or add "
           "config.warmup_epochs, in a new workdir (a changed recipe cannot continue this run).")
  else:
    how = (f"The last good checkpoint is at step {last}; rerunning this workdir resumes there "
           "and diverges again. To go on from it with a lower config.learning_rate (or more "
           "config.warmup_epochs), start a new run from it: the same command with "
           f"--workdir=NEW_WORKDIR --config.init_from={saved.workdir}:{last} and the changed "
           "values (README, Training).")
  return FloatingPointError(f"{what}; stopped. {how}")


def _check_finite(metrics: dict[str, Any], steps_per_epoch: int,
                  saved: checkpoints.Checkpoints) -> None:
  bad = int(metrics["first_nonfinite_step"])
  if bad != np.iinfo(np.int32).max:
    raise diverged(f"Non-finite training loss at step {bad} (epoch {bad / steps_per_epoch:.2f})",
                   saved)


def _check_finite_row(row: records.Row, saved: checkpoints.Checkpoints) -> None:
  """Refuses an evaluation whose numbers are not finite (diverged weights can keep the
  training loss finite): it is neither recorded nor checkpointed."""
  if bad := run_directory.non_finite_keys(row):
    raise diverged(f"Non-finite evaluation at epoch {row[records.EPOCH]} (step "
                   f"{row[records.STEP]}): {', '.join(bad[:8])}", saved)


def _check_finite_state(state: TrainState, step: int, saved: checkpoints.Checkpoints) -> None:
  """Refuses to checkpoint parameters (or optimiser state) that are not finite."""
  if not bool(all_finite(state)):
    raise diverged(f"Non-finite parameters or optimiser state at step {step}, not saved", saved)


# --- The loop ------------------------------------------------------------------------------

# Train steps the loop dispatches ahead of the one it waits for. JAX dispatches
# asynchronously, and without a bound the loop ran up to log_every_steps steps (two programs
# each) ahead of the devices; on several CPU devices XLA then blocked launches on its
# 32-programs-per-device cap inside the thread pool that runs the devices' parts
# (training/devices.py `client_threads`). Two steps keep the next batch's transfer and
# dispatch overlapping the running step, which is all the overlap there is to have.
STEPS_IN_FLIGHT = 2


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates `config` in `workdir`, resuming from its newest usable checkpoint
  (with none yet and config.init_from set: starting from that other run's checkpoint).

  Returns the final metrics (also written to `workdir/summary.json`). Refuses, before
  writing anything, a workdir that another process holds or that holds a run of another
  config (training/run_directory.py). Runs on the devices JAX has (config.cpu_devices is
  the command line's: training/process.py) and leaves the process as it found it.
  """
  validation.validate_config(config)
  record = records.config_record(config)
  with run_directory.RunDirectory(workdir, writer=jax.process_index() == 0,
                                  events=tensorboard.EventWriter) as run:
    run.check_config(record, records.config_record(default_config.get_config()),
                     checkpoints.recorded_config(workdir))
    if (done := run.read()).finished and done.config["num_epochs"] == config.num_epochs:
      if not (missing := incomplete_artefacts(done)):
        return done.summary
      what = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
      if done.summary[records.STEP] not in checkpoints.steps_on_disk(workdir):
        # Without the final weights they cannot be rebuilt, and retraining would drop rows.
        logging.warning("%s has a summary but its %s missing or incomplete, and its final "
                        "checkpoint is gone; leaving the run as it is.", workdir, what)
        return done.summary
      logging.warning("%s has a summary but its %s missing or incomplete (the run was stopped "
                      "as it finished); writing them again from its final checkpoint.",
                      workdir, what)
    s = setup(config, load_data(config))
    parent = _from_parent(s, workdir)
    run.start(record, s.dataset_record(), s.dataset.mean_image)
    if parent is not None:
      run.record_parent(parent[1])
    saved = checkpoints.Checkpoints(workdir, config.keep_checkpoints)
    state, epoch_metrics, data, clock = _initial_or_restored(s, saved,
                                                             parent and parent[0])
    step, rng = int(state.step), jax.random.key(config.seed)
    run.resume_from(step)  # rows the checkpoint does not back are redone.
    run.record_code_version(step, provenance.code_version())

    def save(step: int) -> None:
      _check_finite_state(state, step, saved)
      saved.save(step, {"state": state, "epoch_metrics": epoch_metrics}, {
          "iterator": checkpoints.encode_iterator_state(data.get_state()),
          "epoch": step / s.steps_per_epoch, "wall_time": clock.elapsed()}, config=record)

    line = progress.ProgressLine(s.total_steps, s.steps_per_epoch, step, run.writer)
    in_flight = collections.deque()
    with signals.StopRequest() as stop:
      while step < s.total_steps:
        state, metrics = s.train_step(state, input_pipeline.to_device(next(data), s.data_sharding),
                                      rng, s.mean_image)
        epoch_metrics, step = s.add_metrics(epoch_metrics, metrics), step + 1
        in_flight.append(metrics)
        if len(in_flight) > STEPS_IN_FLIGHT:
          jax.block_until_ready(in_flight.popleft())
        clock.count(config.batch_size)
        if step % config.log_every_steps == 0:
          _check_finite(jax.device_get(epoch_metrics), s.steps_per_epoch, saved)
          line.update(step, float(metrics["loss"] / metrics["count"]), clock.images_per_sec())
        elif line.tty:
          line.update(step, None, clock.images_per_sec())
        if stopping := signals.agreed_stop(stop, step, config.log_every_steps):
          line.clear()
          _check_finite(jax.device_get(epoch_metrics), s.steps_per_epoch, saved)
          save(step)
          raise _stopped(stopping, step, saved)
        if step % s.steps_per_epoch:
          continue
        epoch, train_sums = step // s.steps_per_epoch, jax.device_get(epoch_metrics)
        _check_finite(train_sums, s.steps_per_epoch, saved)
        if epoch % config.eval_every_epochs == 0 or step == s.total_steps:
          line.clear()
          row = _evaluation_row(s, state, epoch, step, train_sums, clock)
          _check_finite_row(row, saved)
          run.append_row(row)
        epoch_metrics = s.zero_metrics()
        if epoch % config.checkpoint_every_epochs == 0 or step == s.total_steps:
          save(step)
    saved.close()
    return _finish(run, s, state)


def _from_parent(s: Setup, workdir: str
                 ) -> tuple[checkpoints.Restored, records.ParentRecord] | None:
  """The checkpoint config.init_from names, restored, and its record (parent.json), for a
  run that has no checkpoint of its own yet (None otherwise). Checked before anything is
  written: another run's, with this run's data and batches, finite, before the end. The
  parent is read under its shared lock: never while it trains."""
  config = s.config
  if not (spec := validation.init_from(config)) or checkpoints.steps_on_disk(workdir):
    return None
  path, step = spec
  where = f"config.init_from={config.init_from!r}"
  if os.path.abspath(path) == os.path.abspath(workdir):
    raise validation.ConfigError(f"{where} names this run's own workdir: a run goes on from "
                                 "another run's checkpoint, into a new workdir.")
  if not os.path.isdir(path):
    raise validation.ConfigError(f"{where}: there is no directory {path}.")
  if step is None and os.path.exists(pinned := os.path.join(workdir, run_directory.PARENT)):
    step = run_directory.read_json(pinned)["step"]  # the step this run first started from
  defaults = records.config_record(default_config.get_config())
  lock = (run_directory.DirectoryLock(path, shared=True) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    parent = run_directory.read_run(path)
    if not parent.config:
      raise validation.ConfigError(f"{where}: {path} holds no {run_directory.CONFIG}; it is "
                                   "not a run directory.")
    data = run_directory.json_values(s.dataset_record())
    differ = sorted(k for k in set(parent.dataset) | set(data)
                    if parent.dataset.get(k) != data.get(k))
    differ += [f"config.{k}" for k in ("batch_size", "steps_per_epoch")
               if parent.config.get(k, defaults[k]) != config[k]]
    if differ:
      raise validation.ConfigError(
          f"{where}: the parent trained on other data or batches ({', '.join(differ)} differ "
          f"from {os.path.join(path, run_directory.DATASET)} and its config): a run goes on "
          "from a checkpoint only with the parent's data, batch size and epoch length.")
    target = {"state": s.init(jax.random.key(config.seed)), "epoch_metrics": s.zero_metrics()}
    try:
      restored = checkpoints.restore_from_run(path, step, target)
    except (FileNotFoundError, checkpoints.NoUsableCheckpointError) as e:
      raise validation.ConfigError(f"{where}: {e}") from None
  if not bool(all_finite(restored.state)):
    raise validation.ConfigError(f"{where}: the checkpoint at step {restored.step} holds "
                                 "non-finite numbers; choose an earlier step.")
  if restored.step >= s.total_steps:
    raise validation.ConfigError(
        f"{where}: the checkpoint is at step {restored.step}, this config ends at step "
        f"{s.total_steps} (epoch {config.num_epochs}); raise config.num_epochs.")
  changed = {key: [old, new] for key, old, new in run_directory.config_differences(
      parent.config, records.config_record(config), defaults) if key != "init_from"}
  return restored, records.ParentRecord(workdir=os.path.abspath(path), step=restored.step,
                                        epoch=restored.step / s.steps_per_epoch, changed=changed)


def _initial_or_restored(s: Setup, saved: checkpoints.Checkpoints,
                         parent: checkpoints.Restored | None = None
                         ) -> tuple[TrainState, dict[str, jax.Array], Any, progress.RunClock]:
  """(train state, the epoch's running metrics, the data iterator, the run's clock), from
  the newest usable checkpoint, else from `parent` (config.init_from's checkpoint), else
  fresh."""
  state, epoch_metrics, data = s.init(jax.random.key(s.config.seed)), s.zero_metrics(), \
      s.train_iterator()
  elapsed = 0.0
  own = saved.restore({"state": state, "epoch_metrics": epoch_metrics})
  if restored := own or parent:
    state, epoch_metrics = restored.state["state"], restored.state["epoch_metrics"]
    data.set_state(checkpoints.decode_iterator_state(restored.extra["iterator"]))
    elapsed = restored.extra.get("wall_time", 0.0)
    if own:
      logging.info("Resumed from the checkpoint at step %d of %s.", restored.step, saved.workdir)
    else:
      logging.info("Starting from the checkpoint at step %d of %s (config.init_from).",
                   restored.step, s.config.init_from)
  logging.info("%s with %s: %d parameters; %d %s devices in %d processes; %d steps per epoch.",
               s.config.model, s.config.rectifier, s.num_params, s.num_devices,
               jax.default_backend(), jax.process_count(), s.steps_per_epoch)
  return state, epoch_metrics, data, progress.RunClock(elapsed)


def _stopped(stopping: tuple[int, list[int]], step: int,
             saved: checkpoints.Checkpoints) -> signals.Stopped:
  signum, asked = stopping
  who = f" (received by process {asked})" if jax.process_count() > 1 else ""
  return signals.Stopped(f"Stopped by {signal.Signals(signum).name}{who} at step {step}; saved "
                         f"a checkpoint in {saved.directory}. Rerun the same command to resume.",
                         signum)


def _finish(run: run_directory.RunDirectory, s: Setup, state: TrainState) -> records.Summary:
  """Writes the run's curves (atomically) and its exported model, closes its event files,
  then writes the summary, last (`RunDirectory.finish`): a run is finished only once
  everything it promises is on disk. Returns the summary."""
  config, record = s.config, run.read()
  rows = record.rows
  summary = records.Summary(
      **rows[-1], best_test_error=records.best_test_error(rows), num_params=s.num_params,
      model=config.model, rectifier=config.rectifier, dataset=config.dataset, seed=config.seed,
      devices=s.num_devices, backend=jax.default_backend(), processes=jax.process_count())
  if slopes := statistics.prelu_slopes(jax.device_get(state.params)):
    summary[records.PRELU_SLOPE_VECTORS] = in_order(
        {k: v.tolist() for k, v in slopes.items()}, s.layers)
  if run.writer:
    figures.plot_run_curves(rows, run.file(run_directory.CURVES),
                            f"{config.model} / {config.rectifier} / {config.dataset}")
    export.save(run.path, config=record.config, dataset=record.dataset, params=state.params,
                batch_stats=state.batch_stats, mean_image=s.dataset.mean_image,
                step=int(state.step), epoch=rows[-1][records.EPOCH],
                code_versions=record.code_versions)
  run.finish(summary)
  return summary


def incomplete_artefacts(record: run_directory.RunRecord) -> list[str]:
  """What a run with a summary promises beside it and lacks: whole learning curves, an
  undamaged export, event files that show every row. Empty for a complete run; a run
  stopped between its summary and these (only code older than `_finish`'s order) is
  completed by a rerun."""
  missing = []
  if not figures.is_whole_png(os.path.join(record.path, run_directory.CURVES)):
    missing.append(run_directory.CURVES)
  try:
    export.check(record.path)
  except export.ExportError:
    missing.append(export.DIRECTORY)
  if not tensorboard.shows_rows(record.path, record.rows):
    missing.append(tensorboard.DIRECTORY)
  return missing


def wants_histograms(config: ml_collections.ConfigDict, epoch: int) -> bool:
  """Whether the evaluation at `epoch` records pre-activation histograms: the first and
  the last, and every config.activation_histogram_every_epochs (0: a quarter of the run)."""
  every = config.activation_histogram_every_epochs or max(1, config.num_epochs // 4)
  return (config.activation_statistics and
          (epoch <= config.eval_every_epochs or epoch >= config.num_epochs or epoch % every == 0))


def _evaluation_row(s: Setup, state: TrainState, epoch: int, step: int,
                    train_sums: dict[str, Any], clock: progress.RunClock) -> records.Row:
  images_per_sec, start = clock.images_per_sec(), clock.elapsed()
  row = records.Row(
      epoch=epoch, step=step, train_error=float(train_sums["errors"] / train_sums["count"]),
      train_loss=float(train_sums["loss"] / train_sums["count"]),
      **s.evaluate(state, histograms=wants_histograms(s.config, epoch)),
      learning_rate=float(s.schedule(step - 1)), images_per_sec=images_per_sec,
      wall_time=clock.elapsed())
  clock.new_window()
  logging.info("epoch %d: train error %.4f loss %.4f | test error %.4f loss %.4f | %.1f img/s "
               "| evaluated in %.1f s", epoch, row[records.TRAIN_ERROR], row[records.TRAIN_LOSS],
               row[records.TEST_ERROR], row[records.TEST_LOSS], images_per_sec,
               row[records.WALL_TIME] - start)
  return row


# --- Command line --------------------------------------------------------------------------


# The errors a run reports in one line (anything else is a bug and keeps its traceback).
EXPECTED_ERRORS = (validation.ConfigError, FileNotFoundError, FloatingPointError,
                   input_pipeline.CorruptImagesError, input_pipeline.DatasetNotPreparedError,
                   run_directory.RunDirectoryError, checkpoints.NoUsableCheckpointError)


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS
  multiprocess = bool(FLAGS.multihost or FLAGS.coordinator_address
                      or os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if multiprocess and not supervisor.is_child():
    # JAX aborts a process whose peer is lost; a parent process says so in one line.
    sys.exit(supervisor.supervise(sys.argv, FLAGS.process_id, FLAGS.num_processes))
  if supervisor.is_child():
    supervisor.die_with_supervisor()
  try:
    # Before jax.distributed or anything else creates a backend.
    process.configure(validation.check_cpu_devices(FLAGS.config))
  except validation.ConfigError as e:
    logging.error("%s", e)
    sys.exit(1)
  if multiprocess:
    process.initialize_distributed(FLAGS.coordinator_address or None, FLAGS.num_processes,
                                   FLAGS.process_id, FLAGS.heartbeat_timeout_s)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  try:
    summary = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except EXPECTED_ERRORS as e:
    disk_space.exit_if_full(e, FLAGS.workdir)  # e.g. a lock file that cannot be written
    logging.error("%s", e)
    sys.exit(1)
  except KeyboardInterrupt as e:
    logging.warning("%s", e)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    disk_space.exit_if_full(e, FLAGS.workdir)
    if not failed_collective(e):
      raise
    exit_naming_lost_processes(e)
  if jax.process_index() == 0:
    print(f"final: test error {summary[records.TEST_ERROR]:.4f}, test log-loss "
          f"{summary[records.TEST_LOSS]:.4f}, train error {summary[records.TRAIN_ERROR]:.4f} "
          f"(epoch {summary[records.EPOCH]}); outputs in {FLAGS.workdir}")


def failed_collective(error: Exception) -> bool:
  """Whether `error` is a collective with the other processes of a multi-process run that
  failed: XLA's runtime error, or gloo's (raised as a ValueError naming Gloo)."""
  return jax.process_count() > 1 and (isinstance(error, jax.errors.JaxRuntimeError)
                                      or "Gloo" in str(error))


def exit_naming_lost_processes(error: Exception) -> None:
  """After a failed collective in a multi-process run: says which processes stopped
  answering, in one line, and exits 1 at once (a normal exit would wait for them in
  jax.distributed's shutdown, and JAX's own watchdog would end this process with a crash
  dump at the heartbeat timeout). With two processes the lost one is the other; with more,
  those JAX's coordination service no longer hears from, when it already knows."""
  everyone, me = list(range(jax.process_count())), jax.process_index()
  live = process.live_processes(everyone)
  lost = sorted(set(everyone) - set(live)) if live is not None else []
  if not lost and len(everyone) == 2:
    lost = [1 - me]
  first = str(error).split("\n")[0][-300:]
  who = supervisor.who_stopped(lost, len(everyone))
  logging.error("A collective with the other processes failed and %s (%s). Stopping this "
                "process; rerun every process to resume from the last checkpoint.", who, first)
  logging.flush()
  os._exit(1)  # pylint: disable=protected-access


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "A configs/*.py file, optionally :rectifier.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (cluster "
                    "auto-detection, or the flags below); implied by --coordinator_address "
                    "or the JAX_COORDINATOR_ADDRESS environment variable.")
  flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for --multihost.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, for --multihost.")
  flags.DEFINE_integer("process_id", None, "This process's index, for --multihost.")
  flags.DEFINE_integer("heartbeat_timeout_s", 100, "For --multihost: seconds without a "
                       "heartbeat after which a process counts as lost and the others stop.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
