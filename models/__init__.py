"""The paper's three networks with a pluggable rectifier, and a registry that builds them.

All three share one calling convention (NHWC input, float32 logits):

  model = models.create("nin", num_classes=10, rectifier="rrelu", width=0.25)
  variables = model.init({"params": key}, x, train=False)
  logits = model.apply(variables, x, train=True, rngs={"dropout": k1, "rrelu": k2},
                       mutable=["batch_stats"])  # batch_stats: InceptionBN only

From a config (or a run's recorded one): `models.from_config(config, num_classes)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from models.inception_bn import InceptionBN
from models.ndsb import NDSBNet
from models.nin import NetworkInNetwork
from models.pooling import spatial_pyramid_pool
from rectifiers.linen import rectifier_factory

# Computation dtypes by the names configs and records use; parameters stay float32.
DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

MODELS: dict[str, type[nn.Module]] = {
    "nin": NetworkInNetwork,
    "ndsb": NDSBNet,
    "inception_bn": InceptionBN,
}


def valid_options(name: str) -> tuple[str, ...]:
  """The keyword options (module fields) that `create(name, ...)` accepts."""
  fields = dataclasses.fields(_model_class(name))
  return tuple(f.name for f in fields if f.init and f.name not in ("parent", "name"))


# Options that training sets from elsewhere: the class count from the data, the rectifier
# and dtype from their own config keys.
_SET_BY_TRAINING = ("num_classes", "rectifier", "dtype", "param_dtype")


def default_options(name: str) -> dict[str, Any]:
  """The other options of `create(name, ...)` with their defaults (width, dropout_rate, ...)."""
  return {f.name: f.default for f in dataclasses.fields(_model_class(name))
          if f.init and f.name not in ("parent", "name", *_SET_BY_TRAINING)}


def _model_class(name: str) -> type[nn.Module]:
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(MODELS)}.")
  return MODELS[name]


def create(name: str, *, num_classes: int, rectifier: str | Callable[..., nn.Module] = "relu",
           **options: Any) -> nn.Module:
  """Builds network `name` ("nin", "ndsb", "inception_bn") with the given rectifier.

  `rectifier` is checked now (`rectifiers.linen.rectifier_factory`), so a bad spec fails
  before any tracing; `options` are the module's other fields (`width`, `dtype`, ...).
  """
  cls = _model_class(name)
  valid = valid_options(name)
  if unknown := sorted(set(options) - set(valid)):
    raise TypeError(f"{name} got unknown option(s) {unknown}; valid options: "
                    f"{', '.join(o for o in valid if o not in ('num_classes', 'rectifier'))}.")
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
  rectifier_factory(rectifier)
  return cls(num_classes=num_classes, rectifier=rectifier, **options)


def from_config(config: Mapping[str, Any], num_classes: int,
                rectifier: str | None = None) -> nn.Module:
  """The network a config describes: a ConfigDict, or a run's record of one (config.json,
  an export's model.json). Its `model` with its `model_options`, its `rectifier` (or
  `rectifier`, to apply the same parameters with another one) and the computation dtype
  named by its `dtype`; the one place configs become networks."""
  options = config["model_options"]
  options = options.to_dict() if hasattr(options, "to_dict") else dict(options)
  # A record read from JSON has lists where the config had tuples (spp_levels); a Flax
  # module's attributes must be hashable for jit.
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
  return create(config["model"], num_classes=num_classes,
                rectifier=rectifier or config["rectifier"], **options,
                dtype=DTYPES[config["dtype"]])


__all__ = ["DTYPES", "MODELS", "create", "default_options", "from_config", "valid_options", "NetworkInNetwork", "NDSBNet", "InceptionBN",
           "spatial_pyramid_pool"]
