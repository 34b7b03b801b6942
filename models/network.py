"""What the paper's three networks share: their common options, one table of initialisers,
and the checks that reject a bad option before any tracing.

Each check raises ValueError naming the option, the value given and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from models import conv as conv_lib
from rectifiers.linen import RectifierFactory

# Kernel initialisers by name; biases start at 0. "nin": N(0, 0.05), the public NIN recipe
# (docs/sources.md §3); "he": He et al. 2015 (normal, fan-in), suited to rectifiers;
# "xavier": Glorot uniform, cxxnet's and mxnet's default.
KERNEL_INITS: dict[str, Callable[..., Any]] = {
    "nin": nn.initializers.normal(stddev=0.05),
    "he": nn.initializers.he_normal(),
    "xavier": nn.initializers.xavier_uniform(),
}


def check_choice(option: str, value: Any, choices: Iterable[str]) -> None:
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(f"{option} must be one of {choices}, got {value!r}.")


def check_fraction(option: str, value: float) -> None:
  """value in [0, 1): dropout rates, BatchNorm momentum."""
  if not 0 <= value < 1:
    raise ValueError(f"{option} must be in [0, 1), got {value!r}.")


class Network(nn.Module):
  """The options every network of the paper takes; subclasses add their own and build
  `__call__(x, train)` from `channels`, `kernel_initializer` and `conv_general_dilated`.

  Attributes:
    num_classes: output classes.
    rectifier: a name understood by `rectifiers.linen.rectifier_factory` or a factory.
    width: channel multiplier (channels = max(1, round(c * width))); the class layer keeps
      `num_classes`. 1.0 is the paper's network.
    kernel_init: one of the network's KERNEL_INIT_CHOICES (names of KERNEL_INITS), for
      every convolution and dense layer.
    conv_grad: how convolution gradients are computed (`models.conv.CONV_GRADS`): "xla"
      (XLA's own; best on GPU/TPU) or "forward" (as forward convolutions and matrix
      products; the CPU choice). Forward values are the same.
    dtype: computation dtype; logits are returned in float32.
    param_dtype: parameter dtype.
  """

  num_classes: int = 10
  rectifier: str | RectifierFactory = "relu"
  width: float = 1.0
  kernel_init: str = "he"
  conv_grad: str = "xla"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  # The initialisers a network offers (those its sources or its tests cover).
  KERNEL_INIT_CHOICES: ClassVar[tuple[str, ...]] = tuple(KERNEL_INITS)

  def __post_init__(self) -> None:
    check_choice("kernel_init", self.kernel_init, self.KERNEL_INIT_CHOICES)
    if not self.width > 0:
      raise ValueError(f"width must be > 0, got {self.width!r}.")
    conv_lib.conv_general_dilated_for(self.conv_grad)  # Raises on an unknown value.
    self.check_options()
    super().__post_init__()

  @nn.nowrap  # a check, not a layer: Flax must not intercept it (it runs unbound).
  def check_options(self) -> None:
    """A subclass's checks of its own options."""

  @nn.nowrap
  def channels(self, c: int) -> int:
    """A layer's channels under the `width` multiplier: max(1, round(c * width))."""
    return max(1, round(c * self.width))

  @property
  def kernel_initializer(self) -> Callable[..., Any]:
    return KERNEL_INITS[self.kernel_init]

  @property
  def conv_general_dilated(self) -> Callable[..., Any]:
    return conv_lib.conv_general_dilated_for(self.conv_grad)
