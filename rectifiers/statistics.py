"""What a rectified layer does to its inputs: dead units, the negative side, the leak.

The usual account of why leaky rectifiers beat ReLU (Xu et al. 2015 §1; Maas et al. 2013)
is that a ReLU unit whose input is negative everywhere gets no gradient and never
recovers; what a leaky unit passes on the negative side is what ReLU throws away. For one
layer with input x (pre-activation) and output y = f(x), over every position of every
example evaluated:

  dead             fraction of channels whose input is <= 0 at every position of every
                   example (no positive input: ReLU's output and gradient are 0 there)
  negative         fraction of inputs with x <= 0, the side a rectifier changes (x = 0
                   counts: ReLU's output cannot tell it from x < 0)
  negative_output  mean |y| over x <= 0 divided by mean y over x > 0: how much signal the
                   negative side carries relative to the positive side (0 for ReLU;
                   about the slope times the ratio of the sides' mean |x| for a leak)
  mean_slope       mean of y / x over x < 0, the negative slope the inputs actually met
                   (RReLU in training mode: its realised slope, expected
                   E[1/a] = ln(u/l)/(u-l), `rectifiers.rrelu_test_slope(..., "expected")`)

The Flax modules (`rectifiers.linen`) sow `unit_sums(x, y)` into the "activations"
collection (and `slope_sums` into "slopes", x itself into "preactivations") when a caller
makes it mutable, so a network computes them in the same pass as its logits, and not at
all otherwise; `summarize` turns sums gathered over any number of batches into the
fractions above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

COLLECTION = "activations"     # per-(example, channel) sums, for `summarize`
SLOPES = "slopes"              # the negative side's y / x, for `summarize`'s mean_slope
PREACTIVATIONS = "preactivations"  # the inputs themselves, for histograms


def unit_sums(x: jax.Array, y: jax.Array, signs_from_input: bool = False) -> dict[str, jax.Array]:
  """Sums over one layer's input x (N, ..., C) and output y = f(x), per example (so a
  caller can mask padding out): the count of inputs > 0 ("positive"), y summed over
  x > 0 and over x <= 0, the inputs counted, and per (example, channel) whether any
  input was > 0 ("live").

  The signs are read from y unless `signs_from_input`: every rectifier here but PReLU
  has y > 0 exactly where x > 0 (ReLU, the leaky ones, RReLU, ELU, GELU, SiLU), and the
  next layer reads y anyway, so reading it again is the cheapest pass; reading x as
  well made the small-data NIN's test-mode forward pass 1.25x as slow instead of about
  1.08x (500 images, relu). PReLU's learned slope can turn negative (then y > 0 for
  x < 0 too), so it passes its input. The sums over examples' positions and channels are
  one variadic reduction: one read for three sums."""
  y32 = y.astype(jnp.float32)
  signs = x if signs_from_input else y32
  positive = signs > 0
  operands = (positive.astype(jnp.int32), jnp.where(positive, y32, 0.0),
              jnp.where(positive, 0.0, y32))
  zeros = (jnp.int32(0), jnp.float32(0), jnp.float32(0))
  sums = lax.reduce(operands, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)),
                    tuple(range(1, x.ndim)))
  return {
      **dict(zip(("positive", "positive_output", "negative_output"), sums)),
      "live": (jnp.max(signs, axis=tuple(range(1, x.ndim - 1))) > 0).astype(jnp.int32),
      "positions": jnp.full(x.shape[:1], np.prod(x.shape[1:], dtype=int), jnp.int32),
  }


def slope_sums(x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  """Per (example, channel) sums of y / x over x < 0, and the count of x < 0."""
  axes = tuple(range(1, x.ndim - 1))
  negative = x < 0
  ratio = y.astype(jnp.float32) / jnp.where(negative, x.astype(jnp.float32), -1.0)
  return {"slope": jnp.sum(jnp.where(negative, ratio, 0.0), axis=axes),
          "negative": jnp.sum(negative, axis=axes, dtype=jnp.int32)}


def sow(module: Any, x: jax.Array, y: jax.Array, signs_from_input: bool = False) -> None:
  """Records `unit_sums(x, y, signs_from_input)` (and x itself) in `module`'s "activations" (and
  "preactivations") collection when the caller made it mutable; a no-op otherwise, so
  training steps that do not ask pay nothing. Inputs need a batch and a channel axis.
  Nothing is recorded while initialising (init makes every collection mutable), so
  `model.init` returns parameters and BatchNorm statistics only."""
  if x.ndim < 2 or module.is_initializing():
    return
  if module.is_mutable_collection(COLLECTION):
    module.sow(COLLECTION, "sums", unit_sums(x, y, signs_from_input))
  if module.is_mutable_collection(SLOPES):
    module.sow(SLOPES, "sums", slope_sums(x, y))
  if module.is_mutable_collection(PREACTIVATIONS):
    module.sow(PREACTIVATIONS, "x", x)


def layer_name(path: tuple[str, ...]) -> str:
  """A rectifier module's path as a layer name: ("conv1_act",) -> "conv1";
  ("in3a", "b1_act") -> "in3a/b1"."""
  return "/".join(path)[:-len("_act")] if path and path[-1].endswith("_act") else "/".join(path)


def collect(tree: Mapping[str, Any], leaf: str) -> dict[str, Any]:
  """{layer name: value} from a sown collection ({module: {..., leaf: (value, ...)}});
  a module called several times contributes the sum of its calls' values."""
  out = {}

  def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, value in node.items():
      if key == leaf and isinstance(value, tuple):
        out[layer_name(path)] = (value[0] if len(value) == 1 else
                                 jax.tree.map(lambda *v: sum(v), *value))
      elif isinstance(value, Mapping):
        walk(value, path + (key,))

  walk(tree, ())
  return out


def masked_sums(tree: Mapping[str, Any], mask: jax.Array) -> dict[str, dict[str, jax.Array]]:
  """{layer: sums over the examples where `mask` is true}: "live" becomes each channel's
  count of examples with an input > 0 (for dead units), the rest are totals."""
  out = {}
  for layer, sums in collect(tree, "sums").items():
    weights = {k: v * mask.astype(v.dtype).reshape((-1,) + (1,) * (v.ndim - 1))
               for k, v in sums.items()}
    out[layer] = {k: jnp.sum(v, axis=0) if k == "live" else jnp.sum(v)
                  for k, v in weights.items()}
  return out


def summarize(sums: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
  """{layer: {dead, negative, negative_output}} from `unit_sums` accumulated (added) over
  batches as `masked_sums` returns them, or {layer: {mean_slope}} from `slope_sums`."""
  out = {}
  for layer, s in sums.items():
    if "slope" in s:
      negative = float(s["negative"])
      out[layer] = {"mean_slope": float(s["slope"]) / negative if negative else 0.0}
      continue
    elements = float(s["positions"])  # summed over examples: every input
    positive = float(s["positive"])
    negative = elements - positive
    mean_pos = float(s["positive_output"]) / positive if positive else 0.0
    mean_neg = -float(s["negative_output"]) / negative if negative else 0.0
    out[layer] = {
        "dead": float(np.mean(np.asarray(s["live"]) == 0)),
        "negative": negative / elements if elements else 0.0,
        "negative_output": mean_neg / mean_pos if mean_pos else 0.0,
    }
  return out


def prelu_slopes(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{layer: slope vector} of every PReLU in a Flax params tree (its "slope" leaves)."""
  out = {}

  def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, value in node.items():
      if isinstance(value, Mapping):
        walk(value, path + (key,))
      elif key == "slope":
        out[layer_name(path)] = np.asarray(value, np.float32)

  walk(params, ())
  return out


def histogram(x: Any, bins: int = 30) -> dict[str, list[float]]:
  """{"edges": bins + 1 edges over [min, max], "counts": bins counts} of x's values."""
  values = np.asarray(x, np.float64).ravel()
  counts, edges = np.histogram(values, bins=bins)
  return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
