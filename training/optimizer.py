"""The optimiser of every run: SGD with momentum, L2 weight decay on named parameters, and
the learning-rate schedule (a linear warm-up, then steps at given epochs)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax


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


def learning_rate_at(schedule: optax.Schedule, step: int) -> float:
  """The learning rate of the update at `step` (the first update is step 0), computed on
  this host's CPU: on an accelerator, reading it back would wait behind the queued steps."""
  try:
    cpu = jax.local_devices(backend="cpu")[0]
  except RuntimeError:  # a JAX_PLATFORMS without "cpu": the default device, then
    return float(schedule(step))
  with jax.default_device(cpu):
    return float(schedule(step))
