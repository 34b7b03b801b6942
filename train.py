r"""Trains one of the paper's networks with one rectifier and reports its errors per epoch.

    python train.py --config=configs/nin_cifar10.py:rrelu --workdir=runs/nin-rrelu \
        --config.num_epochs=10

The same code runs on one CPU, N local devices or N processes (`--multihost`): the step is
`jax.jit`-compiled over a `Mesh` with the batch on the "data" axis and the parameters
replicated; XLA inserts the gradient all-reduce. Notebooks call `train_and_evaluate`.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import input_pipeline
import models
from configs import default as default_config
from input_pipeline import augment
from rectifiers import linen as rectifiers_linen

# Independent random streams, derived from the one seed by fold_in.
PARAMS_STREAM, DROPOUT_STREAM, RRELU_STREAM, AUGMENT_STREAM = range(4)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


class ConfigError(ValueError):
  """A configuration value is unknown or out of range; raised before anything compiles."""


# --- Configuration ---------------------------------------------------------------------------


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
    if key == "model_options":  # free-form: models.create checks them.
      continue
    if isinstance(default, Mapping):
      if not isinstance(value, Mapping):
        raise ConfigError(f"config.{prefix + key} must be a group of keys, got {value!r}.")
      _check_keys(value, default, f"{prefix}{key}.")
    elif default is not None and not _has_default_type(value, default):
      raise ConfigError(f"config.{prefix + key} must be a {type(default).__name__}, got "
                        f"{value!r} ({type(value).__name__}).")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks keys, types and names (dataset, model, rectifier, options) without compiling."""
  _check_keys(config.to_dict(), default_config.get_config().to_dict())
  for key in ("batch_size", "num_epochs", "eval_every_epochs", "checkpoint_every_epochs",
              "keep_checkpoints", "log_every_steps"):
    if config[key] < 1:
      raise ConfigError(f"config.{key} must be >= 1, got {config[key]}.")
  for key in ("steps_per_epoch", "eval_batch_size", "worker_count", "holdout", "image_size",
              "train_examples", "train_eval_examples"):
    if config[key] < 0:
      raise ConfigError(f"config.{key} must be >= 0, got {config[key]}.")
  if config.dtype not in DTYPES:
    raise ConfigError(f"config.dtype must be one of {list(DTYPES)}, got {config.dtype!r}.")
  if not config.learning_rate > 0 or not 0 <= config.momentum < 1 or config.weight_decay < 0:
    raise ConfigError("config.learning_rate must be > 0, config.momentum in [0, 1) and "
                      f"config.weight_decay >= 0; got {config.learning_rate}, {config.momentum}, "
                      f"{config.weight_decay}.")
  processes = jax.process_count()
  if config.batch_size % processes or (config.eval_batch_size or config.batch_size) % processes:
    raise ConfigError(f"config.batch_size ({config.batch_size}) and config.eval_batch_size must "
                      f"be divisible by the number of processes ({processes}).")
  try:
    rectifiers_linen.rectifier_factory(config.rectifier)
  except ValueError as e:
    raise ConfigError(f"config.rectifier: {e}") from None
  try:
    models.create(config.model, num_classes=2, rectifier=config.rectifier,
                  **_model_options(config))
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model / config.model_options: {e}") from None
  try:
    augment.AugmentConfig(**config.augment.to_dict())
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.augment: {e}") from None


def _model_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {**config.model_options.to_dict(), "dtype": DTYPES[config.dtype]}


# --- Optimisation --------------------------------------------------------------------------


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> optax.Schedule:
  """Piecewise constant in epochs (x lr_decay_factor at each of lr_decay_epochs), after a
  linear warm-up over warmup_epochs (needed on raw pixels, references.md §2)."""
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
  """Multi-class log-loss per example as Kaggle computed it: p clipped to [1e-15, 1 - 1e-15],
  rows renormalised, natural log (references.md §2, NDSB)."""
  p = jnp.clip(jax.nn.softmax(logits.astype(jnp.float32)), 1e-15, 1 - 1e-15)
  p = p / p.sum(axis=-1, keepdims=True)
  return -jnp.log(jnp.take_along_axis(p, labels[:, None], axis=-1)[:, 0])


def step_keys(rng: jax.Array, step: jax.Array) -> dict[int, jax.Array]:
  """Per-step keys: fold_in(fold_in(seed, stream), step), one stream per kind of noise."""
  return {s: jax.random.fold_in(jax.random.fold_in(rng, s), step)
          for s in (DROPOUT_STREAM, RRELU_STREAM, AUGMENT_STREAM)}


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
               mean_image: jax.Array, *, model: nn.Module, tx: optax.GradientTransformation,
               augment_config: augment.AugmentConfig, input_scale: float) -> tuple[TrainState, dict[str, jax.Array]]:
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


def eval_step(state: TrainState, batch: dict[str, jax.Array], mean_image: jax.Array, *,
              model: nn.Module, augment_config: augment.AugmentConfig, input_scale: float) -> dict[str, jax.Array]:
  """Deterministic-mode (test-time) error and Kaggle log-loss, summed over unmasked examples."""
  images = augment.preprocess(batch["image"], None, mean_image=mean_image, config=augment_config,
                              train=False) * input_scale
  variables = {"params": state.params}
  if state.batch_stats is not None:
    variables["batch_stats"] = state.batch_stats
  logits = model.apply(variables, images, train=False)
  mask = batch["mask"].astype(jnp.float32)
  return {"loss": jnp.sum(kaggle_log_loss(logits, batch["label"]) * mask),
          "errors": jnp.sum((jnp.argmax(logits, -1) != batch["label"]) * mask),
          "count": jnp.sum(mask)}


def _add_metrics(total: dict[str, jax.Array], new: dict[str, jax.Array]) -> dict[str, jax.Array]:
  out = {k: total[k] + new[k] for k in ("loss", "errors", "count")}
  out["first_nonfinite_step"] = jnp.minimum(total["first_nonfinite_step"],
                                            new["first_nonfinite_step"])
  return out


def _zero_metrics() -> dict[str, np.ndarray]:
  return {"loss": np.float32(0), "errors": np.int32(0), "count": np.float32(0),
          "first_nonfinite_step": np.int32(np.iinfo(np.int32).max)}


# --- Checkpoints, outputs and progress -----------------------------------------------------


def _encode_iterator_state(state: Any) -> Any:
  if isinstance(state, bytes):
    return {"__bytes__": base64.b64encode(state).decode("ascii")}
  return state


def _decode_iterator_state(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {"__bytes__"}:
    return base64.b64decode(state["__bytes__"])
  return state


class _Outputs:
  """Writes the run's files in the workdir; only process 0 writes."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.enabled = jax.process_index() == 0
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)

  def write_json(self, name: str, obj: Any) -> None:
    if self.enabled:
      tmp = os.path.join(self.workdir, name + ".tmp")
      with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
      os.replace(tmp, os.path.join(self.workdir, name))

  def append_metrics(self, row: dict[str, Any]) -> None:
    if self.enabled:
      with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")

  def read_metrics(self) -> list[dict[str, Any]]:
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not os.path.exists(path):
      return []
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_metrics(self, after_step: int) -> None:
    """Drops rows written after the checkpoint being resumed from (they will be redone)."""
    if self.enabled:
      rows = [r for r in self.read_metrics() if r["step"] <= after_step]
      with open(os.path.join(self.workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)

  def plot_curves(self, title: str) -> None:
    if not self.enabled:
      return
    rows = self.read_metrics()
    if not rows:
      return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_error"] for r in rows], label="train (training mode)")
    ax.plot(epochs, [r["test_error"] for r in rows], label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(self.workdir, "curves.png"), dpi=120)
    plt.close(fig)


class _Progress:
  """A one-line progress bar on a terminal, plain log lines every `every` steps otherwise."""

  def __init__(self, total_steps: int, steps_per_epoch: int, every: int):
    self.total, self.per_epoch, self.every = total_steps, steps_per_epoch, every
    self.tty = sys.stderr.isatty() and jax.process_index() == 0
    self.start_time, self.start_step = time.time(), None

  def update(self, step: int, loss: float | None, images_per_sec: float) -> None:
    if self.start_step is None:
      self.start_step, self.start_time = step, time.time()
    done = step - self.start_step
    rate = done / max(time.time() - self.start_time, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float("nan")
    epoch = step / self.per_epoch
    loss_text = f"loss {loss:.4f} " if loss is not None else ""
    text = (f"epoch {epoch:6.2f} step {step}/{self.total} {loss_text}"
            f"{images_per_sec:7.1f} img/s ETA {_format_seconds(eta)}")
    if self.tty:
      width = 24
      filled = int(width * step / max(self.total, 1))
      sys.stderr.write(f"\r[{'=' * filled}{' ' * (width - filled)}] {text}")
      sys.stderr.flush()
    elif loss is not None:
      logging.info(text)

  def clear(self) -> None:
    if self.tty:
      sys.stderr.write("\n")


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _SignalGuard:
  """Turns SIGINT/SIGTERM into a flag so that the loop can save a checkpoint before exiting."""

  def __init__(self):
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self):
    try:
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    except ValueError:  # not the main thread (e.g. some notebook runners): no handlers.
      pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:  # a second signal: give up immediately.
      raise KeyboardInterrupt
    self.received = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# --- The loop ------------------------------------------------------------------------------


def _load_data(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  try:
    return input_pipeline.load(
        config.dataset, data_dir=config.data_dir or None, train_split=config.train_split,
        test_split=config.test_split, image_size=config.image_size or None,
        grayscale=config.grayscale, holdout=config.holdout, skip_corrupt=config.skip_corrupt,
        cache_dir=config.cache_dir or None, train_examples=config.train_examples,
        subset_seed=config.subset_seed)
  except ValueError as e:
    raise ConfigError(f"config.dataset: {e}") from None


def load_checkpoint(workdir: str, step: int | None = None) -> dict[str, Any]:
  """A run's checkpoint (the latest, or `step`) as nested dicts of arrays on this host's
  first device, whatever topology saved it; for notebooks:
  `load_checkpoint(workdir)["state"]["params"]`."""
  handlers = {"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                             item_handlers=handlers) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            manager.item_metadata(step).state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
  return {**restored.state, "extra": restored.extra, "step": step}


def train_eval_subset(train: input_pipeline.Source, size: int) -> input_pipeline.Source:
  """The training examples evaluated in deterministic mode at every evaluation: a fixed
  random subset of `size` (seed 0, the same for every run of a split), all if fewer."""
  if size <= 0:
    return input_pipeline.take(train, np.zeros((0,), np.int64))
  if size >= len(train):
    return train
  return input_pipeline.take(
      train, np.sort(np.random.RandomState(0).choice(len(train), size, replace=False)))


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       input_shape: tuple[int, ...], tx: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
  """Initialises parameters (and BatchNorm statistics) from the params stream of `rng`."""
  variables = model.init({"params": jax.random.fold_in(rng, PARAMS_STREAM)},
                         jnp.zeros((1, *input_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.int32(0), params=params,
                    batch_stats=variables.get("batch_stats"), opt_state=tx.init(params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final metrics (also written to `workdir/summary.json`).
  """
  validate_config(config)
  dataset = _load_data(config)  # fails here, before compiling, if the data is missing.
  if len(dataset.test) == 0:
    raise ConfigError(f"config.dataset {config.dataset!r} has no test examples: add a test/ "
                      "folder or set config.holdout to hold out part of train/.")
  process_count, process_index = jax.process_count(), jax.process_index()
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  if config.batch_size % len(jax.devices()):
    raise ConfigError(f"config.batch_size ({config.batch_size}) must be divisible by the number "
                      f"of devices ({len(jax.devices())}).")
  eval_batch_size = config.eval_batch_size or config.batch_size
  if eval_batch_size % len(jax.devices()):
    raise ConfigError(f"config.eval_batch_size ({eval_batch_size}) must be divisible by the "
                      f"number of devices ({len(jax.devices())}).")
  steps_per_epoch = config.steps_per_epoch or input_pipeline.steps_per_epoch(
      len(dataset.train), config.batch_size)
  if steps_per_epoch < 1:
    raise ConfigError(f"The training split has {len(dataset.train)} examples, fewer than one "
                      f"batch of config.batch_size={config.batch_size}.")
  total_steps = steps_per_epoch * config.num_epochs

  model = models.create(config.model, num_classes=dataset.num_classes,
                        rectifier=config.rectifier, **_model_options(config))
  augment_config = augment.AugmentConfig(**config.augment.to_dict())
  input_shape = augment.output_shape(dataset.image_shape, augment_config)
  schedule = learning_rate_schedule(config, steps_per_epoch)
  tx = make_optimizer(config, schedule)
  rng = jax.random.key(config.seed)
  mean_image = jax.device_put(np.asarray(dataset.mean_image, np.float32), replicated)

  init = jax.jit(functools.partial(create_train_state, config, model, input_shape, tx),
                 out_shardings=replicated)
  state = init(rng)
  jit_train_step = jax.jit(
      functools.partial(train_step, model=model, tx=tx, augment_config=augment_config,
                        input_scale=config.input_scale),
      in_shardings=(replicated, data_sharding, replicated, replicated),
      out_shardings=(replicated, replicated), donate_argnums=(0,))
  jit_eval_step = jax.jit(
      functools.partial(eval_step, model=model, augment_config=augment_config,
                        input_scale=config.input_scale),
      in_shardings=(replicated, data_sharding, replicated), out_shardings=replicated)
  add_metrics = jax.jit(_add_metrics, out_shardings=replicated, donate_argnums=(0,))

  outputs = _Outputs(workdir)
  outputs.write_json("config.json", json.loads(config.to_json_best_effort()))
  train_eval_source = train_eval_subset(dataset.train, config.train_eval_examples)
  outputs.write_json("dataset.json", {
      "spec": config.dataset, "class_names": list(dataset.class_names),
      "num_classes": dataset.num_classes, "image_shape": list(dataset.image_shape),
      "train_examples": len(dataset.train), "test_examples": len(dataset.test),
      "full_train_examples": dataset.full_train_examples, "subset_seed": dataset.subset_seed,
      "train_eval_examples": len(train_eval_source)})
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("%s with %s: %d parameters; %d devices in %d processes; %d steps per epoch.",
               config.model, config.rectifier, num_params, len(jax.devices()), process_count,
               steps_per_epoch)

  per_process_batch = config.batch_size // process_count
  train_iter = input_pipeline.train_iterator(
      dataset.train, batch_size=per_process_batch, seed=config.seed, shard_index=process_index,
      shard_count=process_count, worker_count=config.worker_count)
  epoch_metrics = jax.device_put(_zero_metrics(), replicated)

  checkpoints = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True),
      item_names=("state", "extra"))
  if (latest := checkpoints.latest_step()) is not None:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, (state, epoch_metrics))
    restored = checkpoints.restore(latest, args=ocp.args.Composite(
        state=ocp.args.StandardRestore({"state": abstract[0], "epoch_metrics": abstract[1]}),
        extra=ocp.args.JsonRestore()))
    state, epoch_metrics = restored.state["state"], restored.state["epoch_metrics"]
    train_iter.set_state(_decode_iterator_state(restored.extra["iterator"]))
    outputs.truncate_metrics(latest)
    logging.info("Resumed from the checkpoint at step %d in %s.", latest, checkpoints.directory)

  def save(step: int) -> None:
    checkpoints.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave({"state": state, "epoch_metrics": epoch_metrics}),
        extra=ocp.args.JsonSave({"iterator": _encode_iterator_state(train_iter.get_state()),
                                 "epoch": step / steps_per_epoch})), force=True)

  def check_finite(metrics) -> None:
    bad = int(metrics["first_nonfinite_step"])
    if bad != np.iinfo(np.int32).max:
      checkpoints.wait_until_finished()
      last = checkpoints.latest_step()
      raise FloatingPointError(
          f"Non-finite training loss at step {bad} (epoch {bad / steps_per_epoch:.2f}); stopped. "
          f"The last good checkpoint is at step {last} in {checkpoints.directory}. Lower "
          f"config.learning_rate or add config.warmup_epochs, then rerun (it resumes there).")

  def evaluate_on(source, prefix: str) -> dict[str, float]:
    sums = None
    for local in input_pipeline.eval_batches(source, batch_size=eval_batch_size // process_count,
                                             shard_index=process_index, shard_count=process_count):
      out = jit_eval_step(state, input_pipeline.to_device(local, data_sharding), mean_image)
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    return {f"{prefix}_error": float(sums["errors"] / sums["count"]),
            f"{prefix}_loss": float(sums["loss"] / sums["count"]),
            f"{prefix}_examples": int(sums["count"])}

  def evaluate() -> dict[str, float]:
    row = evaluate_on(dataset.test, "test")
    if len(train_eval_source):
      row.update(evaluate_on(train_eval_source, "train_eval"))
    return row

  step = int(state.step)
  progress = _Progress(total_steps, steps_per_epoch, config.log_every_steps)
  last_row: dict[str, Any] = {}
  train_time, images_seen, t0 = 0.0, 0, time.time()
  with _SignalGuard() as guard:
    while step < total_steps:
      batch = input_pipeline.to_device(next(train_iter), data_sharding)
      state, metrics = jit_train_step(state, batch, rng, mean_image)
      epoch_metrics = add_metrics(epoch_metrics, metrics)
      step += 1
      images_seen += config.batch_size
      at_log_step = step % config.log_every_steps == 0
      if at_log_step:
        check_finite(jax.device_get(epoch_metrics))
      if at_log_step or progress.tty:
        loss = float(metrics["loss"] / metrics["count"]) if at_log_step else None
        progress.update(step, loss, images_seen / max(train_time + time.time() - t0, 1e-9))
      if guard.received is not None:
        progress.clear()
        check_finite(jax.device_get(epoch_metrics))
        save(step)
        checkpoints.wait_until_finished()
        raise KeyboardInterrupt(
            f"Stopped by signal {guard.received} at step {step}; saved a checkpoint in "
            f"{checkpoints.directory}. Rerun the same command to resume.")
      if step % steps_per_epoch:
        continue
      epoch = step // steps_per_epoch
      train_sums = jax.device_get(epoch_metrics)
      check_finite(train_sums)
      train_time += time.time() - t0
      if epoch % config.eval_every_epochs == 0 or step == total_steps:
        progress.clear()
        row = {"epoch": epoch, "step": step,
               "train_error": float(train_sums["errors"] / train_sums["count"]),
               "train_loss": float(train_sums["loss"] / train_sums["count"]),
               **evaluate(), "learning_rate": float(schedule(step - 1)),
               "images_per_sec": images_seen / max(train_time, 1e-9),
               "wall_time": time.time() - progress.start_time}
        outputs.append_metrics(row)
        logging.info("epoch %d: train error %.4f loss %.4f | test error %.4f loss %.4f | "
                     "%.1f img/s", epoch, row["train_error"], row["train_loss"],
                     row["test_error"], row["test_loss"], row["images_per_sec"])
        last_row = row
      epoch_metrics = jax.device_put(_zero_metrics(), replicated)
      if epoch % config.checkpoint_every_epochs == 0 or step == total_steps:
        save(step)
      train_time, images_seen, t0 = 0.0, 0, time.time()
  checkpoints.wait_until_finished()
  checkpoints.close()

  if not last_row:  # resumed a finished run: report what it recorded.
    rows = outputs.read_metrics()
    last_row = rows[-1] if rows else {"epoch": step // steps_per_epoch, "step": step,
                                      **evaluate()}
  rows = outputs.read_metrics() or [last_row]
  summary = {**last_row, "best_test_error": min(r["test_error"] for r in rows),
             "num_params": int(num_params), "model": config.model,
             "rectifier": config.rectifier, "dataset": config.dataset, "seed": config.seed,
             "devices": len(jax.devices()), "processes": process_count}
  outputs.write_json("summary.json", summary)
  outputs.plot_curves(f"{config.model} / {config.rectifier} / {config.dataset}")
  return summary


# --- Command line --------------------------------------------------------------------------


def _quiet_library_info_logs() -> None:
  """Keeps INFO lines from this project only; libraries (orbax, XLA) log warnings and up."""
  here = os.path.dirname(os.path.abspath(__file__))
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= logging.converter.STANDARD_WARNING
      or record.pathname.startswith(here) and "site-packages" not in record.pathname)


def main(argv: list[str]) -> None:
  from absl import flags
  del argv
  FLAGS = flags.FLAGS
  _quiet_library_info_logs()
  if FLAGS.multihost or FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address or None,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  try:
    summary = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ConfigError, FileNotFoundError, FloatingPointError, input_pipeline.CorruptImagesError,
          input_pipeline.DatasetNotPreparedError) as e:
    logging.error("%s", e)
    sys.exit(1)
  except KeyboardInterrupt as e:
    logging.warning("%s", e)
    sys.exit(130)
  if jax.process_index() == 0:
    print(f"final: test error {summary['test_error']:.4f}, test log-loss "
          f"{summary['test_loss']:.4f}, train error {summary['train_error']:.4f} "
          f"(epoch {summary['epoch']}); outputs in {FLAGS.workdir}")


def _define_flags() -> None:
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "A configs/*.py file, optionally :rectifier.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (cluster "
                    "auto-detection, or the flags below); implied by --coordinator_address "
                    "or the JAX_COORDINATOR_ADDRESS environment variable.")
  flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for --multihost.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, for --multihost.")
  flags.DEFINE_integer("process_id", None, "This process's index, for --multihost.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
