"""One evaluation component: a network scored in test mode on a mesh, with the activation
statistics, for training (every evaluation), evaluate.py and the benchmarks alike.

`Evaluator` holds the jitted evaluation step and the probes of the statistics
(training/steps.py), the shardings, the mean image on the devices and the network's
rectified layers. `sums` visits every example of a source once (the last batch padded and
masked), each process feeding its own rows of each global batch; `metrics` turns the sums
into error, Kaggle log-loss and per-layer statistics; `evaluate` gives a metrics row's
test_* and train_eval_* columns and its activation record (rectifiers/statistics.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import input_pipeline
import rectifiers
from configs import validation
from input_pipeline import augment
from rectifiers import linen as rectifiers_linen
from rectifiers import statistics
from training import records, steps


def widen(tree: Any) -> Any:
  """Host copies in 64 bits: sums over a whole split overflow int32 at full width."""
  return jax.tree.map(lambda a: np.asarray(a, np.float64 if np.issubdtype(np.asarray(a).dtype,
                                                                          np.floating)
                                           else np.int64), tree)


def metrics_of(sums: Mapping[str, Any]) -> dict[str, float | int]:
  """{"error", "loss", "examples"} from an evaluation's sums."""
  return {records.ERROR: float(sums["errors"] / sums["count"]),
          records.LOSS: float(sums["loss"] / sums["count"]), records.EXAMPLES: int(sums["count"])}


def in_order(by_layer: Mapping[str, Any], layers: Sequence[str]) -> dict[str, Any]:
  """`by_layer` with its layers in the network's order (JSON keeps it; jax sorts keys)."""
  rank = {name: i for i, name in enumerate(layers)}
  return dict(sorted(by_layer.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def layer_statistics(sums: Mapping[str, Any], layers: Sequence[str]) -> dict[str, dict[str, float]]:
  """{layer: {dead, negative, negative_output}} as rows record them, in network order."""
  return in_order({layer: {k: v[k] for k in records.LAYER_STATISTICS}
                   for layer, v in statistics.summarize(sums).items()}, layers)


def rrelu_expected_slope(spec: str) -> float | None:
  """E[slope] of RReLU's training noise for a rectifier spec; None if it is not RReLU."""
  factory = rectifiers_linen.rectifier_factory(spec)
  if not (isinstance(factory, functools.partial) and factory.func is rectifiers_linen.RReLU):
    return None
  options = {**rectifiers_linen.default_options("rrelu"), **factory.keywords}
  return rectifiers.rrelu_test_slope(options["lower"], options["upper"], options["sample"],
                                     test_slope="expected")


def wants_histograms(config: ml_collections.ConfigDict, epoch: int) -> bool:
  """Whether the evaluation at `epoch` records pre-activation histograms: the first and
  the last, and every config.activation_histogram_every_epochs (0: a quarter of the run)."""
  every = config.activation_histogram_every_epochs or max(1, config.num_epochs // 4)
  return (config.activation_statistics and
          (epoch <= config.eval_every_epochs or epoch >= config.num_epochs or epoch % every == 0))


@dataclasses.dataclass(frozen=True)
class Steps:
  """The jitted functions an evaluation runs, for one network, preprocessing and mesh."""

  eval_step: Callable[..., dict[str, Any]]
  histogram_step: Callable[..., dict[str, tuple[jax.Array, jax.Array]]]
  slope_step: Callable[..., dict[str, dict[str, jax.Array]]]


@functools.cache  # one compile per network and mesh: a sweep's runs of one setting share it
def jitted_steps(mesh: Mesh, model: nn.Module, augment_config: augment.AugmentConfig,
                 input_scale: float, activation_statistics: bool) -> Steps:
  """The evaluation step and the probes jitted over `mesh`: the batch on its "data" axis,
  the state, mean image and key replicated."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  options: dict[str, Any] = dict(model=model, augment_config=augment_config,
                                 input_scale=input_scale)
  return Steps(
      eval_step=steps.jit_eval_step(mesh, **options,
                                    activation_statistics=activation_statistics),
      histogram_step=jax.jit(functools.partial(steps.preactivation_histograms, **options),
                             in_shardings=(replicated, data_sharding, replicated),
                             out_shardings=replicated),
      slope_step=jax.jit(functools.partial(steps.training_mode_slopes, **options),
                         in_shardings=(replicated, data_sharding, replicated, replicated),
                         out_shardings=replicated))


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """A network's test-mode evaluation on a mesh (see the module doc)."""

  jitted: Steps
  data_sharding: NamedSharding
  replicated: NamedSharding
  mean_image: jax.Array  # on the devices, replicated
  batch_size: int  # global
  layers: tuple[str, ...]  # the rectified layers in the order the network runs them
  activation_statistics: bool
  rrelu_expected_slope: float | None  # E[slope] of RReLU's noise; None for other rectifiers
  seed: int  # the run's: the training-mode probe's key comes from it

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, model: nn.Module, mesh: Mesh,
             mean_image: np.ndarray, image_shape: Sequence[int]) -> Evaluator:
    """The evaluator of a run of `config` (or of a run's record of one) on images of
    `image_shape`, with its training's batches and statistics."""
    aug = validation.augment_config(config)
    input_shape = augment.output_shape(tuple(image_shape), aug)
    replicated = NamedSharding(mesh, P())
    return cls(
        jitted=jitted_steps(mesh, model, aug, config.input_scale,
                           bool(config.activation_statistics)),
        data_sharding=NamedSharding(mesh, P("data")), replicated=replicated,
        mean_image=jax.device_put(np.asarray(mean_image, np.float32), replicated),
        batch_size=config.eval_batch_size or config.batch_size,
        layers=tuple(rectifiers_linen.rectified_layers(model, np.zeros((1, *input_shape)),
                                                       train=False)),
        activation_statistics=bool(config.activation_statistics),
        rrelu_expected_slope=rrelu_expected_slope(config.rectifier), seed=config.seed)

  def sums(self, state: steps.TrainState, source: input_pipeline.Source) -> dict[str, Any]:
    """The evaluation step's sums over every example of `source`, each visited once."""
    total = None
    for local in input_pipeline.eval_batches(source,
                                             batch_size=self.batch_size // jax.process_count(),
                                             shard_index=jax.process_index(),
                                             shard_count=jax.process_count()):
      out = jax.device_get(self.jitted.eval_step(
          state, input_pipeline.to_device(local, self.data_sharding), self.mean_image))
      if "activations" in out:
        out = {**out, "activations": widen(out["activations"])}
      total = out if total is None else jax.tree.map(np.add, total, out)
    return total

  def metrics(self, state: steps.TrainState, source: input_pipeline.Source) -> dict[str, Any]:
    """{"error", "loss", "examples"} on `source`, and its "activations" (per layer) when
    the statistics are on."""
    sums = self.sums(state, source)
    out: dict[str, Any] = metrics_of(sums)
    if "activations" in sums:  # the eval step's sums (training/steps.py)
      out[records.ACTIVATIONS] = layer_statistics(sums["activations"], self.layers)
    return out

  def evaluate(self, state: steps.TrainState, test: input_pipeline.Source,
               train_eval: input_pipeline.Source, histograms: bool = False) -> dict[str, Any]:
    """A metrics row's test_* and train_eval_* columns (test-mode error, log-loss and
    example count on the test split and on the train-eval subset); with the statistics on,
    also the row's activation record (`activation_record`)."""
    row, activations = {}, {}
    for prefix, source in ((records.TEST, test), (records.TRAIN_EVAL, train_eval)):
      if not len(source):
        continue
      result = self.metrics(state, source)
      if "activations" in result:
        activations[prefix] = result.pop("activations")
      row.update(records.split_columns(prefix, result))
    if self.activation_statistics:
      row[records.ACTIVATIONS] = {**activations, **self.activation_record(
          state, test, train_eval if len(train_eval) else test, histograms)}
    return row

  def _first_batch(self, source: input_pipeline.Source) -> dict[str, jax.Array]:
    return input_pipeline.to_device(next(input_pipeline.eval_batches(
        source, batch_size=self.batch_size // jax.process_count(),
        shard_index=jax.process_index(), shard_count=jax.process_count())), self.data_sharding)

  def activation_record(self, state: steps.TrainState, test: input_pipeline.Source,
                        probe: input_pipeline.Source, histograms: bool) -> dict[str, Any]:
    """PReLU's slopes per layer, RReLU's realised training-mode slope on the first batch of
    `probe` against its expectation, and (when `histograms`) each layer's pre-activation
    histogram on the first batch of `test` (rectifiers/statistics.py)."""
    out = {}
    if slopes := statistics.prelu_slopes(jax.device_get(state.params)):
      out[records.PRELU_SLOPES] = in_order({layer: {records.SLOPE_MEAN: float(v.mean()),
                                                    records.SLOPE_MIN: float(v.min()),
                                                    records.SLOPE_MAX: float(v.max())}
                                            for layer, v in slopes.items()}, self.layers)
    if self.rrelu_expected_slope is not None and len(probe):
      rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed),
                                                  steps.PROBE_STREAM), state.step)
      sums = jax.device_get(self.jitted.slope_step(state, self._first_batch(probe),
                                                  self.mean_image, rng))
      out[records.RRELU_TRAINING_SLOPE] = in_order({
          layer: {records.REALISED: v["mean_slope"], records.EXPECTED: self.rrelu_expected_slope}
          for layer, v in statistics.summarize(widen(sums)).items()}, self.layers)
    if histograms and len(test):
      hist = jax.device_get(self.jitted.histogram_step(state, self._first_batch(test),
                                                      self.mean_image))
      out[records.HISTOGRAMS] = in_order(
          {layer: {records.HISTOGRAM_EDGES: [float(e) for e in edges],
                   records.HISTOGRAM_COUNTS: [int(round(float(c))) for c in counts]}
           for layer, (counts, edges) in hist.items()}, self.layers)
    return out
