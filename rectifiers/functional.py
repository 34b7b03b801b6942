"""The four rectifiers of Xu et al. 2015 (arXiv:1505.00853, §2) as pure functions.

All functions take NHWC arrays (channel axis last), keep the input dtype, and are
compatible with `jax.jit`, `jax.vmap` and `jax.grad`.

Conventions shared by all four:
  * x = 0 sits on the identity side (the paper's "x >= 0"), so every rectifier maps
    0 to 0 and its derivative with respect to x at exactly 0 is 1. (JAX's
    `jax.nn.relu` uses 0 there and PyTorch's leaky ReLU uses the slope.)
  * Leaky ReLU and RReLU follow the paper's *divisor* form y = x / a (Eq. 2, 3);
    PReLU and RReLU's `sample="slope"` use the slope form y = s * x of He et al.
    2015 and PyTorch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SAMPLE_MODES = ("divisor", "slope")
TEST_SLOPES = ("paper", "expected")
RRELU_IMPLS = ("fast", "exact")


def _check_float_input(x: jax.Array, fn: str) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"{fn}: x must have a floating dtype (float32, bfloat16, float16), got "
        f"{x.dtype}; cast it first, e.g. x.astype(jnp.float32).")
  return x


def _is_concrete_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def check_positive_finite(fn: str, name: str, value: Any) -> None:
  """Raises unless `value` (argument `name` of `fn`) is a finite number > 0, or an array
  (whose shape and values the caller checks). For module wrappers that check their
  arguments before any call."""
  if _is_concrete_number(value):
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"{fn}: {name} must be finite and > 0, got {value!r}.")
  elif not hasattr(value, "dtype"):
    # Arrays are checked by the caller, which knows the shape they must broadcast to.
    raise TypeError(f"{fn}: {name} must be a real number or an array, got {value!r}.")


def _check_bounds(fn: str, lower: float, upper: float) -> None:
  for name, value in (("lower", lower), ("upper", upper)):
    if not _is_concrete_number(value):
      raise TypeError(f"{fn}: {name} must be a Python number (it sets a static distribution), "
                      f"got {value!r}.")
    if not math.isfinite(value) or value <= 0:
      raise ValueError(f"{fn}: {name} must be finite and > 0, got {value!r}.")
  if lower >= upper:
    raise ValueError(f"{fn}: need lower < upper, got lower={lower!r}, upper={upper!r}.")


def _reciprocal(a: Any, dtype: jnp.dtype) -> jax.Array:
  # XLA's CPU backend computes x / a as x * (1 / a) anyway; computing 1 / a here, in
  # float64 for Python numbers, makes the result exactly x * float32(1 / a).
  if _is_concrete_number(a):
    return jnp.asarray(1.0 / a, dtype)
  return (1 / jnp.asarray(a)).astype(dtype)


def relu(x: jax.Array) -> jax.Array:
  """ReLU, paper Eq. 1: y = x for x >= 0, y = 0 for x < 0; dy/dx = 1 at x = 0.

  NaN stays NaN (as in `jax.nn.relu` and the other three rectifiers), so that a diverging
  network shows itself instead of being silently rectified to 0.
  """
  x = _check_float_input(x, "relu")
  return jnp.where(x < 0, jnp.zeros_like(x), x)


def leaky_relu(x: jax.Array, a: float = 100.0) -> jax.Array:
  """Leaky ReLU in the paper's divisor form (Eq. 2): y = x for x >= 0, y = x / a for x < 0.

  Computed as x * (1 / a) with 1 / a rounded once to x's dtype (within one ulp of x / a).

  `a = 100` is Maas et al. 2013's setting and `a = 5.5` the paper's "very leaky" one;
  the paper asks for a in (1, inf), but any finite a > 0 is accepted.
  """
  x = _check_float_input(x, "leaky_relu")
  check_positive_finite("leaky_relu", "a", a)
  if not _is_concrete_number(a):
    _check_divisor_array(x, a)
  return jnp.where(x >= 0, x, x * _reciprocal(a, x.dtype))


def _check_divisor_array(x: jax.Array, a: Any) -> None:
  """An array `a`: shape () or (C,) on x's last axis, like PReLU's slope; every value finite
  and > 0 when the values are known (not traced, e.g. under vmap over `a`)."""
  shape = np.shape(a)
  if len(shape) > 1 or (len(shape) == 1 and (x.ndim == 0 or shape[0] != x.shape[-1])):
    channels = x.shape[-1] if x.ndim else "none (x is a scalar)"
    raise ValueError(f"leaky_relu: a must have shape () or (C,) with C = x.shape[-1] = "
                     f"{channels}, got shape {shape}.")
  if isinstance(a, jax.core.Tracer):
    return
  values = np.asarray(a, np.float64)
  if bad := [v for v in values.ravel().tolist() if not (math.isfinite(v) and v > 0)]:
    raise ValueError(f"leaky_relu: a must be finite and > 0 everywhere, got {bad[:5]} "
                     f"among {values.size} values.")


def prelu(x: jax.Array, slope: jax.Array) -> jax.Array:
  """PReLU (He et al. 2015, Eq. 1): y = x for x >= 0, y = slope * x for x < 0.

  `slope` has shape `()` (shared) or `(C,)` with C = x.shape[-1] (one per channel),
  and is cast to x's dtype.
  """
  x = _check_float_input(x, "prelu")
  slope = jnp.asarray(slope)
  if slope.ndim > 1 or (slope.ndim == 1 and (x.ndim == 0 or slope.shape[0] != x.shape[-1])):
    channels = x.shape[-1] if x.ndim else "none (x is a scalar)"
    raise ValueError(f"prelu: slope must have shape () or (C,) with C = x.shape[-1] = "
                     f"{channels}, got shape {slope.shape}.")
  return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


def rrelu_test_slope(lower: float = 3.0, upper: float = 8.0, sample: str = "divisor",
                     test_slope: str = "paper") -> float:
  """The slope RReLU applies to negative inputs at test time.

  * `"paper"`: divisor sampling uses x / ((l + u) / 2) (Eq. 5, x / 5.5 at (3, 8));
    slope sampling uses the mean slope (1/l + 1/u) / 2 (PyTorch's test slope).
  * `"expected"`: the training expectation E[slope]: ln(u/l) / (u - l) for divisor
    sampling (0.19617 at (3, 8), docs/sources.md §1), (1/l + 1/u) / 2 for slope sampling.
  """
  _check_bounds("rrelu", lower, upper)
  if sample not in SAMPLE_MODES:
    raise ValueError(f"rrelu: sample must be one of {SAMPLE_MODES}, got {sample!r}.")
  if test_slope not in TEST_SLOPES:
    raise ValueError(f"rrelu: test_slope must be one of {TEST_SLOPES}, got {test_slope!r}.")
  if sample == "slope":
    return (1.0 / lower + 1.0 / upper) / 2.0
  if test_slope == "paper":
    return 2.0 / (lower + upper)
  return math.log(upper / lower) / (upper - lower)


def _check_key(key: Any) -> None:
  if key is None:
    raise ValueError("rrelu: key is None but deterministic=False; training-mode RReLU draws "
                     "random slopes: pass a PRNG key (jax.random.key(seed)) or set "
                     "deterministic=True for test time.")
  dtype = getattr(key, "dtype", None)
  is_typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
  if not (is_typed or dtype == jnp.uint32):
    raise TypeError(f"rrelu: key must be a PRNG key from jax.random.key or jax.random.PRNGKey, "
                    f"got {type(key).__name__} with dtype {dtype}.")


def check_rrelu_options(lower: float = 3.0, upper: float = 8.0, sample: str = "divisor",
                        test_slope: str = "paper", impl: str = "fast") -> None:
  """Raises for arguments `rrelu` would reject (bounds, sample, test_slope, impl), without
  an input; for module wrappers that check their arguments before any call."""
  rrelu_test_slope(lower, upper, sample, test_slope)
  if impl not in RRELU_IMPLS:
    raise ValueError(f"rrelu: impl must be one of {RRELU_IMPLS}, got {impl!r}.")


def broadcast_noise_shape(x_shape: Sequence[int], broadcast_dims: Sequence[int]) -> list[int]:
  """The `noise_shape` of `rrelu` that shares one draw along `broadcast_dims` (like
  dropout's; a negative axis counts from the end): x's shape with those axes set to 1.
  For module wrappers that take `broadcast_dims`."""
  ndim = len(x_shape)
  return [1 if i in broadcast_dims or i - ndim in broadcast_dims else d
          for i, d in enumerate(x_shape)]


def _check_noise_shape(noise_shape: Sequence[int], x_shape: tuple[int, ...]) -> tuple[int, ...]:
  noise_shape = tuple(noise_shape)
  ok = len(noise_shape) == len(x_shape) and all(
      isinstance(n, (int, np.integer)) and n in (1, d) for n, d in zip(noise_shape, x_shape))
  if not ok:
    raise ValueError(f"rrelu: noise_shape {noise_shape} does not broadcast to x.shape {x_shape}: "
                     f"it needs {len(x_shape)} dims, each 1 (shared) or equal to x's.")
  return noise_shape


def _mix32(h: jax.Array) -> jax.Array:
  """One round of Wellons' "lowbias32" integer hash, a bijection of uint32.

  https://nullprogram.com/blog/2018/07/31/ (constants 0x7feb352d, 0x846ca68b).
  """
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def _hash_uniform(seeds: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """float32 uniforms in (0, 1) of `shape`: u = (2 (hash(i, seeds) >> 9) + 1) / 2^24.

  A counter-based generator: element i (its row-major position in `shape`) gets
  h = mix(mix(i ^ s0) ^ s1), two keyed rounds of `_mix32`, so both seed words enter
  the nonlinear mixing (one round keyed by xor alone would make a second key's
  stream a re-indexed copy of the first's). The top 23 bits give u on the midpoints
  of a 2^-23 grid (jax.random.uniform's grid), computed exactly in float32, so
  E[u] = 1/2 exactly and u never hits 0 or 1.

  The counter is the position in the *global* array, so under `jax.jit` the noise of
  an element does not depend on how the array is sharded over devices.
  """
  size = math.prod(shape)
  if size >= 2**32:
    raise ValueError(f"rrelu: impl='fast' counts elements in uint32; {shape} has {size} "
                     f"elements; use impl='exact' or split the array.")
  # A flat iota reshaped is a bitcast for XLA; an iota per dimension times strides
  # costs an integer multiply-add per dimension and measured ~1.3x slower.
  h = _mix32(lax.iota(jnp.uint32, size) ^ seeds[0])
  h = _mix32(h ^ seeds[1])
  # (h >> 8) | 1 = 2 (h >> 9) + 1 < 2^24 converts to float32 exactly.
  u = ((h >> 8) | 1).astype(jnp.int32).astype(jnp.float32) * (2.0**-24)
  return u.reshape(shape)


# Jitted so that op-by-op calls fuse like calls inside a jit: XLA may contract the
# multiply-add below into an FMA, and the draws then agree bit for bit either way.
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _noise(seeds: jax.Array, shape: tuple[int, ...], lower: float, upper: float,
           sample: str) -> jax.Array:
  """The divisor a ~ U(lower, upper) or the slope s ~ U(1/upper, 1/lower), float32."""
  u = _hash_uniform(seeds, shape)
  if sample == "divisor":
    return lower + (upper - lower) * u
  return 1.0 / upper + (1.0 / lower - 1.0 / upper) * u


def _scale_negative(v: jax.Array, noise: jax.Array, sample: str) -> jax.Array:
  # The same operation turns x into y = x / a (or s * x) and the cotangent g into
  # dx = g / a (or s * g): on the negative side dy/dx is exactly the factor applied.
  vf = v.astype(jnp.float32)
  return (vf / noise if sample == "divisor" else vf * noise).astype(v.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _rrelu_fast(x: jax.Array, seeds: jax.Array, noise_shape: tuple[int, ...], lower: float,
                upper: float, sample: str) -> jax.Array:
  noise = _noise(seeds, noise_shape, lower, upper, sample)
  return jnp.where(x >= 0, x, _scale_negative(x, noise, sample))


def _rrelu_fast_fwd(x, seeds, noise_shape, lower, upper, sample):
  # Residuals: the sign mask (1 byte per element, what autodiff of ReLU's `where`
  # keeps too) and two seed words. The noise is regenerated in the backward pass
  # instead of being stored as an input-sized float32 tensor.
  return _rrelu_fast(x, seeds, noise_shape, lower, upper, sample), (x >= 0, seeds)


def _rrelu_fast_bwd(noise_shape, lower, upper, sample, residuals, g):
  identity_side, seeds = residuals
  noise = _noise(seeds, noise_shape, lower, upper, sample)
  return jnp.where(identity_side, g, _scale_negative(g, noise, sample)), None


_rrelu_fast.defvjp(_rrelu_fast_fwd, _rrelu_fast_bwd)


def rrelu(x: jax.Array, key: jax.Array | None, lower: float = 3.0, upper: float = 8.0, *,
          deterministic: bool = False, sample: str = "divisor",
          noise_shape: Sequence[int] | None = None, test_slope: str = "paper",
          impl: str = "fast") -> jax.Array:
  """Randomized leaky ReLU (paper §2.4, Eq. 3-5): y = x for x >= 0, y = x / a for x < 0.

  Training (`deterministic=False`) draws fresh noise from `key`:
    * `sample="divisor"` (the paper, cxxnet's `insanity` layer): a ~ U(lower, upper),
      y = x / a. The implied slope 1/a has density proportional to 1/s^2.
    * `sample="slope"` (PyTorch, MXNet): s ~ U(1/upper, 1/lower), y = s * x; at the
      default bounds this is `torch.nn.RReLU()`'s distribution.
  `noise_shape` (like dropout's) is broadcast to x.shape: `None` draws one value per
  element (what every library does); `(N, 1, 1, C)` draws one per example and channel
  (the paper's x_ji notation).

  `impl` chooses how the training noise is made; both give the same distribution
  and gradient dy/dx = 1 (x >= 0) or the factor applied (x < 0), but different draws:
    * `"fast"` (default): a counter-based hash of the element's position keyed by two
      words drawn from `key` (`_hash_uniform`, on jax.random.uniform's 2^-23 grid), and
      a custom VJP that regenerates the noise in the backward pass, so that only the
      sign mask is stored, as for ReLU. On a 2-core CPU (float32, NHWC 128x32x32x192,
      `python -m benchmarks.rectifiers_bench`; the README's Performance table): forward
      1.46x a ReLU's time and forward+backward 1.16x, against 6.91x and 3.84x for
      "exact". Reverse mode only (no `jax.jvp`); arrays up to 2^32 - 1 elements.
    * `"exact"`: `jax.random.uniform` (threefry) and plain autodiff, which stores the
      input-sized noise tensor for the backward pass. The simple reference.
  Either way the noise is a function of the key and the element's position in the
  global array: it does not depend on how a jitted computation shards the batch.

  Test time (`deterministic=True`, `key` may be None) multiplies negative inputs by
  the fixed slope `rrelu_test_slope(lower, upper, sample, test_slope)`, rounded once
  to x's dtype (so Eq. 5's x / 5.5 is computed as x * float32(1 / 5.5)).
  """
  x = _check_float_input(x, "rrelu")
  check_rrelu_options(lower, upper, sample, test_slope, impl)
  test = rrelu_test_slope(lower, upper, sample, test_slope)
  if deterministic:
    return jnp.where(x >= 0, x, x * jnp.asarray(test, x.dtype))
  _check_key(key)
  shape = x.shape if noise_shape is None else _check_noise_shape(noise_shape, x.shape)
  if impl == "fast":
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    return _rrelu_fast(x, seeds, shape, float(lower), float(upper), sample)
  # Noise is drawn and applied in float32 so that bfloat16 inputs keep the intended
  # distribution (bfloat16 resolves only 3 values of a between 7 and 8).
  xf = x.astype(jnp.float32)
  if sample == "divisor":
    a = jax.random.uniform(key, shape, jnp.float32, minval=lower, maxval=upper)
    negative = xf / a
  else:
    s = jax.random.uniform(key, shape, jnp.float32, minval=1.0 / upper, maxval=1.0 / lower)
    negative = xf * s
  return jnp.where(x >= 0, x, negative.astype(x.dtype))
