"""What the devices run: the train step, the evaluation step and the probes of the
activation statistics, each a pure function of the state and a batch, and their jitted
forms over a mesh's "data" axis.

Randomness: one key per run (the seed); `step_keys` derives a step's independent streams
by fold_in (big_vision's habit), so a step's noise depends on the seed and the step only.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from absl import logging

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from input_pipeline import augment
from rectifiers import statistics

# Independent random streams, derived from the one seed by fold_in (PROBE_STREAM: the
# training-mode pass of the activation statistics, which must not disturb training's).
PARAMS_STREAM, DROPOUT_STREAM, RRELU_STREAM, AUGMENT_STREAM, PROBE_STREAM = range(5)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


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
  new_state = dataclasses.replace(state, step=state.step + 1,
                                  params=optax.apply_updates(state.params, param_updates),
                                  batch_stats=updates["batch_stats"] if has_bn else None,
                                  opt_state=opt_state)
  metrics = {"loss": loss.sum(), "errors": jnp.sum(jnp.argmax(logits, -1) != labels),
             "count": jnp.float32(labels.shape[0]),
             # The first step whose loss is not finite (or a huge sentinel), for the guard.
             "first_nonfinite_step": jnp.where(jnp.isfinite(loss.sum()), jnp.iinfo(jnp.int32).max,
                                               state.step).astype(jnp.int32)}
  return new_state, metrics


def model_variables(state: TrainState) -> dict[str, Any]:
  """The network's variables in `state`: its params, and its BatchNorm statistics if any."""
  if state.batch_stats is None:
    return {"params": state.params}
  return {"params": state.params, "batch_stats": state.batch_stats}


def eval_images(batch: dict[str, jax.Array], mean_image: jax.Array,
                augment_config: augment.AugmentConfig, input_scale: float) -> jax.Array:
  """A batch as the network sees it at test time (mean subtracted, centre crop, scaled)."""
  return augment.preprocess(batch["image"], None, mean_image=mean_image, config=augment_config,
                            train=False) * input_scale


def eval_step(state: TrainState, batch: dict[str, jax.Array], mean_image: jax.Array, *,
              model: nn.Module, augment_config: augment.AugmentConfig, input_scale: float,
              activation_statistics: bool = False) -> dict[str, Any]:
  """Deterministic-mode (test-time) error and Kaggle log-loss, summed over unmasked
  examples; with `activation_statistics`, also every rectified layer's sums
  (`rectifiers.statistics.masked_sums`), from the same forward pass."""
  images = eval_images(batch, mean_image, augment_config, input_scale)
  if activation_statistics:
    logits, sown = model.apply(model_variables(state), images, train=False,
                               mutable=[statistics.COLLECTION])
  else:
    logits = model.apply(model_variables(state), images, train=False)
  mask = batch["mask"].astype(jnp.float32)
  out: dict[str, Any] = {"loss": jnp.sum(kaggle_log_loss(logits, batch["label"]) * mask),
                         "errors": jnp.sum((jnp.argmax(logits, -1) != batch["label"]) * mask),
                         "count": jnp.sum(mask)}
  if activation_statistics:
    out["activations"] = statistics.masked_sums(sown[statistics.COLLECTION], batch["mask"])
  return out


# The examples of the first evaluation batch that the histograms and RReLU's training-mode
# probe look at: enough for their purpose, few enough to keep them cheap.
PROBE_EXAMPLES = 64


def probe(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {k: v[:PROBE_EXAMPLES] for k, v in batch.items()}


def preactivation_histograms(state: TrainState, batch: dict[str, jax.Array],
                             mean_image: jax.Array, *, model: nn.Module,
                             augment_config: augment.AugmentConfig, input_scale: float,
                             bins: int = 30) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{layer: (counts, edges)}: each rectified layer's inputs in test mode over the first
  PROBE_EXAMPLES of the batch (unmasked ones), in `bins` bins between their minimum and
  maximum."""
  batch = probe(batch)
  images = eval_images(batch, mean_image, augment_config, input_scale)
  _, sown = model.apply(model_variables(state), images, train=False,
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
  batch = probe(batch)
  images = eval_images(batch, mean_image, augment_config, input_scale)
  rngs = {"dropout": jax.random.fold_in(rng, DROPOUT_STREAM),
          "rrelu": jax.random.fold_in(rng, RRELU_STREAM)}
  mutable = [statistics.SLOPES] + (["batch_stats"] if state.batch_stats is not None else [])
  _, sown = model.apply(model_variables(state), images, train=True, mutable=mutable, rngs=rngs)
  return statistics.masked_sums(sown[statistics.SLOPES], batch["mask"])


def add_metrics(total: dict[str, jax.Array], new: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The epoch's running sums of `train_step`'s metrics, with `new` added."""
  out = {k: total[k] + new[k] for k in ("loss", "errors", "count")}
  out["first_nonfinite_step"] = jnp.minimum(total["first_nonfinite_step"],
                                            new["first_nonfinite_step"])
  return out


def zero_metrics() -> dict[str, np.generic]:
  """`add_metrics`'s sums before the epoch's first step."""
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



class LoggedCompile:
  """A jitted function whose first call, which traces and compiles it (or loads it from the
  persistent compilation cache) before dispatching, is logged: "Compiling the NAME ..."
  before, so the silent seconds have a name, and "Compiled the NAME in N s." after. Other
  attributes (`lower`, ...) are the jitted function's."""

  def __init__(self, jitted: Any, name: str):
    self._jitted, self.name = jitted, name
    self._called = False

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    if self._called:
      return self._jitted(*args, **kwargs)
    logging.info("Compiling the %s ...", self.name)
    start = time.perf_counter()
    out = self._jitted(*args, **kwargs)
    self._called = True
    logging.info("Compiled the %s in %.1f s.", self.name, time.perf_counter() - start)
    return out

  def __getattr__(self, name: str) -> Any:
    return getattr(self._jitted, name)


def jit_train_step(mesh: Mesh, tx: optax.GradientTransformation, **options: Any):
  """`train_step` jitted as training runs it: the batch split over the mesh's "data" axis,
  the state, key and mean image replicated, the state donated. `options` are train_step's
  keyword arguments (model, augment_config, input_scale). Its compilation is logged
  (`LoggedCompile`)."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  return LoggedCompile(jax.jit(functools.partial(train_step, tx=tx, **options),
                               in_shardings=(replicated, data_sharding, replicated, replicated),
                               out_shardings=(replicated, replicated), donate_argnums=(0,)),
                       "train step")


def jit_eval_step(mesh: Mesh, **options: Any):
  """`eval_step` jitted as training and evaluate.py run it: the batch split over the mesh's
  "data" axis, the state and mean image replicated. `options` are eval_step's keyword
  arguments (model, augment_config, input_scale, activation_statistics). Its compilation is
  logged (`LoggedCompile`)."""
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  return LoggedCompile(jax.jit(functools.partial(eval_step, **options),
                               in_shardings=(replicated, data_sharding, replicated),
                               out_shardings=replicated),
                       "evaluation step")
