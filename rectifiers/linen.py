"""Flax linen wrappers of the rectifiers and a registry that builds them from names.

Every module is called as `module(x, deterministic=None)`, so a model can swap
rectifiers without knowing which one it holds; only `RReLU` uses `deterministic`
(and the `"rrelu"` rng collection). Each records what it did to its inputs
(`rectifiers.statistics`) when the caller makes the "activations" collection mutable.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rectifiers import functional as F
from rectifiers import statistics

RectifierFactory = Callable[..., nn.Module]


def _recorded(module: nn.Module, x: jax.Array, y: jax.Array,
              signs_from_input: bool = False) -> jax.Array:
  statistics.sow(module, x, y, signs_from_input)
  return y


class ReLU(nn.Module):
  """ReLU (paper Eq. 1)."""

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    return _recorded(self, x, F.relu(x))


class LeakyReLU(nn.Module):
  """Leaky ReLU with a fixed divisor: y = x / a for x < 0 (paper Eq. 2)."""

  a: float = 100.0

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    return _recorded(self, x, F.leaky_relu(x, self.a))


class PReLU(nn.Module):
  """PReLU with a learned per-channel parameter `slope` of shape (C,), init 0.25 (He et al. 2015)."""

  slope_init: float = 0.25
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    slope = self.param("slope", nn.initializers.constant(self.slope_init), (x.shape[-1],),
                       self.param_dtype)
    # A learned slope can be negative, so y's sign need not be x's.
    return _recorded(self, x, F.prelu(x, slope), signs_from_input=True)


class RReLU(nn.Module):
  """Randomized leaky ReLU (paper Eq. 3-5); training noise comes from the `"rrelu"` rng.

  `broadcast_dims` are the axes that share one draw (like `flax.linen.Dropout`'s):
  `()` draws per element, `(1, 2)` on NHWC input one value per example and channel.
  `impl` is `rectifiers.rrelu`'s: `"fast"` (hashed noise, regenerated in the backward
  pass) or `"exact"` (jax.random.uniform, the reference).
  """

  lower: float = 3.0
  upper: float = 8.0
  sample: str = "divisor"
  test_slope: str = "paper"
  broadcast_dims: Sequence[int] = ()
  deterministic: bool | None = None
  rng_collection: str = "rrelu"
  impl: str = "fast"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic:
      return _recorded(self, x, F.rrelu(x, None, self.lower, self.upper, deterministic=True,
                                        sample=self.sample, test_slope=self.test_slope))
    return _recorded(self, x, F.rrelu(
        x, self.make_rng(self.rng_collection), self.lower, self.upper, sample=self.sample,
        noise_shape=F.broadcast_noise_shape(x.shape, self.broadcast_dims),
        test_slope=self.test_slope, impl=self.impl))


class ELU(nn.Module):
  """ELU (Clevert et al. 2016, Eq. 1): y = x for x > 0, alpha (exp(x) - 1) otherwise
  (`jax.nn.elu`). A smooth baseline from after the paper, not a rectifier of it."""

  alpha: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    return _recorded(self, x, jax.nn.elu(x, self.alpha))


class GELU(nn.Module):
  """GELU (Hendrycks & Gimpel 2016): y = x Φ(x), Φ the standard normal CDF
  (`jax.nn.gelu`); exact by default, `approximate=True` is the tanh form."""

  approximate: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    return _recorded(self, x, jax.nn.gelu(x, approximate=self.approximate))


class SiLU(nn.Module):
  """SiLU / swish (Elfwing et al. 2018; Ramachandran et al. 2017): y = x σ(x)
  (`jax.nn.silu`)."""

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    del deterministic
    return _recorded(self, x, jax.nn.silu(x))


def rectified_layers(model: nn.Module, *args, **kwargs) -> list[str]:
  """The names of `model`'s rectifier modules (`rectifiers.statistics.layer_name`) in the
  order a call `model.init(key, *args, **kwargs)` runs them; traced, not computed."""
  order = []

  def record(next_fun, call_args, call_kwargs, context):
    if context.method_name == "__call__" and type(context.module) in RECTIFIERS.values():
      name = statistics.layer_name(context.module.path)
      if name not in order:
        order.append(name)
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))
  return order


RECTIFIERS: dict[str, type[nn.Module]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "rrelu": RReLU,
    "elu": ELU,
    "gelu": GELU,
    "silu": SiLU,
}

# The five settings compared in the paper (Tables 3-5).
PAPER_SETTINGS = ("relu", "leaky_relu_100", "leaky_relu_5.5", "prelu", "rrelu")

_LEAKY_SHORTHAND = re.compile(r"leaky_relu_(\d+(?:\.\d*)?)")
_CALL_FORM = re.compile(r"(\w+)\((.*)\)", re.DOTALL)


def _spec_error(spec: str, why: str, names: Iterable[str]) -> ValueError:
  names = list(names)
  close = difflib.get_close_matches(spec.strip().split("(")[0], names + list(PAPER_SETTINGS),
                                    n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return ValueError(
      f"Unknown rectifier {spec!r}: {why}.{hint} Valid names: {', '.join(names)}, the paper's "
      f"settings {', '.join(PAPER_SETTINGS)}, 'leaky_relu_<a>' for any divisor a, or a call "
      f"with keyword arguments such as \"rrelu(lower=3, upper=8, sample=slope)\".")


def _parse_keywords(spec: str, text: str, names: Iterable[str]) -> dict[str, Any]:
  try:
    call = ast.parse(f"f({text})", mode="eval").body
  except SyntaxError as e:
    raise _spec_error(spec, f"cannot parse the arguments ({e.msg})", names) from None
  assert isinstance(call, ast.Call)  # "f(...)" parses to a call or not at all
  if call.args:
    raise _spec_error(spec, "arguments must be keywords, e.g. a=20", names)
  kwargs = {}
  for keyword in call.keywords:
    node = keyword.value
    # Bare words are strings, so that sample=slope needs no quotes on a command line.
    kwargs[keyword.arg] = node.id if isinstance(node, ast.Name) else ast.literal_eval(node)
  return kwargs


def check_name(name: str, registry: Mapping[str, type] = RECTIFIERS) -> None:
  """Raises ValueError unless `name` is in `registry` (default: this module's `RECTIFIERS`)."""
  if name not in registry:
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown rectifier {name!r};{hint} valid names: {', '.join(registry)}.")


def default_options(name: str) -> dict[str, object]:
  """The options of rectifier `name` (its module's fields) with their defaults."""
  check_name(name)
  return {f.name: f.default for f in dataclasses.fields(RECTIFIERS[name])
          if f.init and f.name not in ("parent", "name")}


def parse_spec(spec: str, registry: Mapping[str, type] = RECTIFIERS,
               options: Callable[[str], Mapping[str, object]] = default_options,
               ) -> tuple[str, dict[str, object]]:
  """Splits a rectifier spec into its name and keyword options: `"relu"` -> `("relu", {})`,
  `"leaky_relu_5.5"` -> `("leaky_relu", {"a": 5.5})`, `"rrelu(sample=slope)"` ->
  `("rrelu", {"sample": "slope"})`.

  The name must be in `registry` and the keywords among `options(name)` (by default this
  module's `RECTIFIERS` and `default_options`; `rectifiers.nnx` passes its own, so both
  APIs read the same specs). Raises ValueError naming the spec and the valid names.
  """
  name, kwargs = spec.strip(), {}
  if match := _CALL_FORM.fullmatch(name):
    name, kwargs = match.group(1), _parse_keywords(spec, match.group(2), registry)
  elif "(" in name:
    raise _spec_error(spec, "cannot parse the arguments (unbalanced parentheses)", registry)
  elif match := _LEAKY_SHORTHAND.fullmatch(name):
    name, kwargs = "leaky_relu", {"a": float(match.group(1))}
  if name not in registry:
    raise _spec_error(spec, f"no rectifier called {name!r}", registry)
  if unknown := set(kwargs) - set(options(name)):
    raise _spec_error(spec, f"{name} takes {sorted(options(name))}, not {sorted(unknown)}",
                      registry)
  return name, kwargs


def rectifier_factory(spec: str | RectifierFactory) -> RectifierFactory:
  """Returns a callable that builds a fresh rectifier module (e.g. `factory(name="act1")`).

  `spec` is a name (`"relu"`, `"prelu"`, `"rrelu"`, ...), a paper setting
  (`"leaky_relu_100"`, `"leaky_relu_5.5"`), or a call with keyword arguments of the
  module (`"rrelu(lower=5, upper=10, broadcast_dims=(1, 2))"`, `"prelu(slope_init=0.1)"`).
  A callable is returned unchanged.
  """
  if callable(spec):
    return spec
  if not isinstance(spec, str):
    raise TypeError(f"rectifier must be a name or a module factory, got {spec!r}.")
  name, kwargs = parse_spec(spec)
  return create(name, **kwargs)


def check_options(name: str, options: Mapping[str, Any],
                  defaults: Mapping[str, Any]) -> None:
  """Raises for an option of rectifier `name` that is not in `defaults` (TypeError naming the
  valid ones) or a value the rectifier would reject (ValueError): the checks `create` makes
  before any model is traced, shared with `rectifiers.nnx.create`."""
  if unknown := sorted(set(options) - set(defaults)):
    raise TypeError(f"{name} got unknown option(s) {unknown}; valid options: "
                    f"{', '.join(defaults) or '(none)'}.")
  values = {**defaults, **options}
  if name == "leaky_relu":
    F.check_positive_finite("leaky_relu", "a", values["a"])
  elif name == "elu":
    F.check_positive_finite("elu", "alpha", values["alpha"])
  elif name == "rrelu":
    F.check_rrelu_options(values["lower"], values["upper"], values["sample"],
                          values["test_slope"], values["impl"])


def create(name: str, **options: object) -> RectifierFactory:
  """A factory of rectifier `name` with `options` (e.g. `create("rrelu", lower=5)`),
  shaped like `models.create`; the options are checked now, so that a bad config fails
  before any model is traced. `rectifier_factory` parses spec strings into this call."""
  check_options(name, options, default_options(name))
  return functools.partial(RECTIFIERS[name], **options)
