"""Flax NNX modules of the rectifiers, built from the same names and specs as `rectifiers.linen`.

Every module is built as `Module(num_channels, *, <options>, rngs=None)` and called as
`module(x)`, so that a model can swap rectifiers without knowing which one it holds:
  * only `PReLU` uses `num_channels`: NNX creates parameters when a module is built, not at
    its first call as linen does, so the slopes need the channel count up front;
  * only `RReLU` uses `rngs` (its `"rrelu"` stream) and `deterministic`, which
    `model.train()` / `model.eval()` switch as they switch `nnx.Dropout`.
The formulas are `rectifiers.functional`'s; the options, their checks and the spec strings
are linen's (`linen.parse_spec`, `linen.check_options`), so that `"leaky_relu_5.5"` or
`"rrelu(sample=slope)"` names the same layer in both APIs.

`from flax import nnx` takes the name `nnx`; import this module under another one, e.g.
`from rectifiers import nnx as N`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectifiers import functional as F
from rectifiers import linen as L

RectifierFactory = Callable[..., nnx.Module]
RngsLike = nnx.Rngs | nnx.RngStream | jax.Array


class ReLU(nnx.Module):
  """ReLU (paper Eq. 1): y = x for x >= 0, y = 0 otherwise. No parameters, no noise;
  `num_channels` and `rngs` are accepted so that every rectifier is built alike."""

  def __init__(self, num_channels: int | None = None, *, rngs: nnx.Rngs | None = None):
    del num_channels, rngs

  def __call__(self, x: jax.Array) -> jax.Array:
    return F.relu(x)


class LeakyReLU(nnx.Module):
  """Leaky ReLU with a fixed divisor (paper Eq. 2): y = x for x >= 0, y = x / a otherwise."""

  def __init__(self, num_channels: int | None = None, *, a: float = 100.0,
               rngs: nnx.Rngs | None = None):
    del num_channels, rngs
    F.check_positive_finite("leaky_relu", "a", a)
    self.a = a

  def __call__(self, x: jax.Array) -> jax.Array:
    return F.leaky_relu(x, self.a)


class PReLU(nnx.Module):
  """PReLU (He et al. 2015, Eq. 1): y = x for x >= 0, y = slope * x otherwise.

  `slope` is an `nnx.Param` of shape `(num_channels,)`, one per channel on x's last axis,
  initialised at `slope_init` (0.25, He et al.). NNX creates it when the module is built,
  so the channel count is an argument: a model passes its layer's number of output
  features. `num_channels=None` makes one slope of shape `()` shared by all channels (He
  et al. 2015 §2.1's channel-shared variant). `rngs` is unused: the initialiser is a
  constant.
  """

  def __init__(self, num_channels: int | None, *, slope_init: float = 0.25,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs | None = None):
    del rngs
    if num_channels is not None:
      if isinstance(num_channels, bool) or not isinstance(num_channels, (int, np.integer)):
        raise TypeError(f"PReLU: num_channels must be an int (x.shape[-1]) or None (one "
                        f"shared slope), got {num_channels!r}.")
      if num_channels < 1:
        raise ValueError(f"PReLU: num_channels must be >= 1, got {num_channels}.")
    shape = () if num_channels is None else (int(num_channels),)
    self.slope = nnx.Param(jnp.full(shape, slope_init, param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    return F.prelu(x, self.slope[...])


_NO_STREAM = ("RReLU in training mode (deterministic=False) draws random slopes, but it has no "
              "'{collection}' rng stream: build it with rngs=nnx.Rngs({collection}=seed) (or "
              "an nnx.Rngs with a 'default' stream), pass rngs= (an nnx.Rngs, an "
              "nnx.RngStream or a jax.random.key) to the call, or switch it to test mode with "
              "model.eval() or deterministic=True.")


def _stream(rngs: nnx.Rngs, collection: str) -> nnx.RngStream:
  try:
    return rngs[collection]
  except KeyError:  # nnx.Rngs falls back on its 'default' stream, if it has one
    raise ValueError(
        f"RReLU: the nnx.Rngs given has no '{collection}' stream and no 'default' one (its "
        f"streams: {', '.join(rngs) or 'none'}); RReLU draws its training-time slopes from "
        f"it: add one, e.g. nnx.Rngs(params=0, {collection}=1).") from None


class RReLU(nnx.Module):
  """Randomized leaky ReLU (paper Eq. 3-5): y = x for x >= 0, y = x / a otherwise, with
  a ~ U(lower, upper) drawn afresh in training and a = (lower + upper) / 2 at test time.

  The options are `rectifiers.linen.RReLU`'s and `rectifiers.rrelu`'s (`sample`,
  `test_slope`, `impl`; `broadcast_dims` are the axes that share one draw, as for
  `nnx.Dropout`). `deterministic` and `rngs` follow `nnx.Dropout`: `deterministic=False`
  (training, the default, as for Dropout) or `True` (test); `model.train()` /
  `model.eval()` set it, and a call's `deterministic=` overrides it. Given an `nnx.Rngs`,
  the module forks its `rng_collection` stream: it keeps a stream keyed
  `fold_in(key, count)` from the parent's, and its n-th training call draws with
  `fold_in(that key, n)`. A call's `rngs=` (an `nnx.Rngs`, an `nnx.RngStream` or a key,
  used as is) overrides the module's stream.
  """

  def __init__(self, num_channels: int | None = None, *, lower: float = 3.0,
               upper: float = 8.0, sample: str = "divisor", test_slope: str = "paper",
               broadcast_dims: Sequence[int] = (), deterministic: bool | None = False,
               rng_collection: str = "rrelu", impl: str = "fast",
               rngs: nnx.Rngs | nnx.RngStream | None = None):
    del num_channels
    F.check_rrelu_options(lower, upper, sample, test_slope, impl)
    self.lower, self.upper = lower, upper
    self.sample, self.test_slope, self.impl = sample, test_slope, impl
    self.broadcast_dims = tuple(broadcast_dims)
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    # A fork, as nnx.Dropout takes: the module's draws do not change when other layers
    # draw from the same Rngs, before or after it.
    if isinstance(rngs, nnx.Rngs):
      self.rngs = _stream(rngs, rng_collection).fork()
    elif isinstance(rngs, nnx.RngStream):
      self.rngs = rngs.fork()
    elif rngs is None:
      self.rngs = nnx.data(None)
    else:
      raise TypeError(f"RReLU: rngs must be an nnx.Rngs, an nnx.RngStream or None, got "
                      f"{type(rngs).__name__}.")

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
               rngs: RngsLike | None = None) -> jax.Array:
    deterministic = self.deterministic if deterministic is None else deterministic
    if deterministic is None:
      raise ValueError("RReLU: deterministic is None; pass deterministic=True/False to the "
                       "call or the constructor, or call model.train() / model.eval().")
    if deterministic:
      return F.rrelu(x, None, self.lower, self.upper, deterministic=True, sample=self.sample,
                     test_slope=self.test_slope)
    return F.rrelu(x, self._key(rngs), self.lower, self.upper, sample=self.sample,
                   noise_shape=F.broadcast_noise_shape(x.shape, self.broadcast_dims),
                   test_slope=self.test_slope, impl=self.impl)

  def _key(self, rngs: RngsLike | None) -> jax.Array:
    rngs = self.rngs if rngs is None else rngs
    if rngs is None:
      raise ValueError(_NO_STREAM.format(collection=self.rng_collection))
    if isinstance(rngs, nnx.Rngs):
      return _stream(rngs, self.rng_collection)()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise TypeError(f"RReLU: rngs must be an nnx.Rngs, an nnx.RngStream or a jax.random.key, "
                    f"got {type(rngs).__name__}.")

  def set_view(self, deterministic: bool | None = None):
    """For `nnx.view`, as `nnx.Dropout`'s.

    Args:
      deterministic: if True, the test-time slope; if False, random slopes.
    """
    if deterministic is not None:
      self.deterministic = deterministic


class ELU(nnx.Module):
  """ELU (Clevert et al. 2016, Eq. 1): y = x for x > 0, alpha (exp(x) - 1) otherwise
  (`jax.nn.elu`). A smooth baseline from after the paper, not a rectifier of it."""

  def __init__(self, num_channels: int | None = None, *, alpha: float = 1.0,
               rngs: nnx.Rngs | None = None):
    del num_channels, rngs
    F.check_positive_finite("elu", "alpha", alpha)
    self.alpha = alpha

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.elu(x, self.alpha)


class GELU(nnx.Module):
  """GELU (Hendrycks & Gimpel 2016): y = x Φ(x), Φ the standard normal CDF
  (`jax.nn.gelu`); exact by default, `approximate=True` is the tanh form."""

  def __init__(self, num_channels: int | None = None, *, approximate: bool = False,
               rngs: nnx.Rngs | None = None):
    del num_channels, rngs
    self.approximate = approximate

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=self.approximate)


class SiLU(nnx.Module):
  """SiLU / swish (Elfwing et al. 2018; Ramachandran et al. 2017): y = x σ(x)
  (`jax.nn.silu`)."""

  def __init__(self, num_channels: int | None = None, *, rngs: nnx.Rngs | None = None):
    del num_channels, rngs

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.silu(x)


RECTIFIERS: dict[str, type[nnx.Module]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "rrelu": RReLU,
    "elu": ELU,
    "gelu": GELU,
    "silu": SiLU,
}
PAPER_SETTINGS = L.PAPER_SETTINGS


def default_options(name: str) -> dict[str, object]:
  """The options of rectifier `name` (its keyword-only constructor arguments but `rngs`) with
  their defaults: linen's, except RReLU's `deterministic` (False, as for `nnx.Dropout`;
  None in linen)."""
  L.check_name(name, RECTIFIERS)
  parameters = inspect.signature(RECTIFIERS[name].__init__).parameters.values()
  return {p.name: p.default for p in parameters
          if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "rngs"}


def create(name: str, **options: object) -> RectifierFactory:
  """A factory of rectifier `name` with `options` (e.g. `create("rrelu", lower=5)`), checked
  now as `rectifiers.linen.create` checks them. A model builds the module as
  `factory(num_channels, rngs=rngs)`."""
  L.check_options(name, options, default_options(name))
  return functools.partial(RECTIFIERS[name], **options)


def rectifier_factory(spec: str | RectifierFactory) -> RectifierFactory:
  """The factory of a spec string, read as `rectifiers.linen.rectifier_factory` reads it
  (`"relu"`, `"leaky_relu_5.5"`, `"rrelu(lower=5, sample=slope)"`, ...). A callable is
  returned unchanged."""
  if callable(spec):
    return spec
  if not isinstance(spec, str):
    raise TypeError(f"rectifier must be a name or a module factory, got {spec!r}.")
  name, kwargs = L.parse_spec(spec, RECTIFIERS, default_options)
  return create(name, **kwargs)
