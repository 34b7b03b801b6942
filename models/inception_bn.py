"""Inception-BN for CIFAR-100 (Xu et al. 2015, §3.1: the 75.68% network; the mxnet 2015
CIFAR-100 notebook). No ImageNet stem: in3a takes the 28x28 crop directly.

Modules (docs/sources.md §2; every convolution is a conv -> BatchNorm -> rectifier unit):

  A(1x1, 3x3red, 3x3, d3x3red, d3x3, pool, proj): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 |
      pool 3x3/1 -> 1x1 proj, concatenated.
  B(3x3red, 3x3, d3x3red, d3x3): 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2,
      concatenated (28 -> 14 -> 7).

  in3a A(64, 64,64, 64,96, avg,32) = 256      in3b A(64, 64,96, 64,96, avg,64) = 320
  in3c B(128,160, 64,96) = 576 @14
  in4a A(224, 64,96, 96,128, avg,128) = 576   in4b A(192, 96,128, 96,128, avg,128) = 576
  in4c A(160, 128,160, 128,160, avg,128) = 608 in4d A(96, 128,192, 160,192, avg,128) = 608
  in4e B(128,192, 192,256) = 1056 @7
  in5a A(352, 192,320, 160,224, avg,128) = 1024 in5b A(352, 192,320, 192,224, max,128) = 1024
  global average pool, fc num_classes.

Pools are padded by 1 as in mxnet: max pools pad with -inf, the 3x3/1 average pools
divide by 9 (padding counted, as mxnet and Caffe do for padded pools).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import conv as conv_lib
from models import network
from rectifiers.linen import RectifierFactory, rectifier_factory

# (name, kind, channels): A takes (1x1, 3x3red, 3x3, d3x3red, d3x3, pool, proj),
# B takes (3x3red, 3x3, d3x3red, d3x3); docs/sources.md §2.
INCEPTION_MODULES: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    ("in3a", "A", (64, 64, 64, 64, 96, "avg", 32)),
    ("in3b", "A", (64, 64, 96, 64, 96, "avg", 64)),
    ("in3c", "B", (128, 160, 64, 96)),
    ("in4a", "A", (224, 64, 96, 96, 128, "avg", 128)),
    ("in4b", "A", (192, 96, 128, 96, 128, "avg", 128)),
    ("in4c", "A", (160, 128, 160, 128, 160, "avg", 128)),
    ("in4d", "A", (96, 128, 192, 160, 192, "avg", 128)),
    ("in4e", "B", (128, 192, 192, 256)),
    ("in5a", "A", (352, 192, 320, 160, 224, "avg", 128)),
    ("in5b", "A", (352, 192, 320, 192, 224, "max", 128)),
)


class ConvBN(nn.Module):
  """conv (no bias: BatchNorm's shift replaces it) -> BatchNorm -> rectifier."""

  features: int
  kernel: int
  stride: int
  rectifier: RectifierFactory
  kernel_init: str  # a name of models.network.KERNEL_INITS.
  bn_momentum: float
  bn_epsilon: float
  dtype: Any
  param_dtype: Any
  conv_grad: str  # "xla" or "forward": `models.conv.CONV_GRADS`.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    pad = (self.kernel - 1) // 2
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=((pad, pad), (pad, pad)), use_bias=False,
                kernel_init=network.KERNEL_INITS[self.kernel_init], dtype=self.dtype,
                param_dtype=self.param_dtype,
                conv_general_dilated=conv_lib.conv_general_dilated_for(self.conv_grad),
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="bn")(x)
    return self.rectifier(name="act")(x, deterministic=not train)


def _pool3x3(x: jax.Array, kind: str, stride: int) -> jax.Array:
  if kind == "max":
    return nn.max_pool(x, (3, 3), (stride, stride), padding=((1, 1), (1, 1)))
  return nn.avg_pool(x, (3, 3), (stride, stride), padding=((1, 1), (1, 1)),
                     count_include_pad=True)


class InceptionBN(network.Network):
  """Inception-BN (in3a..in5b) with a pluggable rectifier; (B, 28, 28, 3) -> (B, classes).

  Attributes (besides `models.network.Network`'s; strided convolutions keep XLA's
  gradients under conv_grad="forward"):
    num_classes: 100 for CIFAR-100.
    kernel_init: "he" by default; the mxnet notebook used its Xavier(magnitude=2.34, "in"),
      which BatchNorm makes immaterial. Also initialises the final fc layer.
    bn_momentum: decay of the BatchNorm running averages (mxnet's 0.9).
    bn_epsilon: BatchNorm epsilon (mxnet's 1e-3).
    param_dtype: also the batch statistics' dtype.
  """

  num_classes: int = 100
  KERNEL_INIT_CHOICES = ("he", "xavier")
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3

  @nn.nowrap
  def check_options(self) -> None:
    network.check_fraction("bn_momentum", self.bn_momentum)
    if not self.bn_epsilon > 0:
      raise ValueError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}.")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    rectifier = rectifier_factory(self.rectifier)

    def unit(x: jax.Array, name: str, features: int, kernel: int, stride: int = 1):
      return ConvBN(self.channels(features), kernel, stride, rectifier, self.kernel_init,
                    self.bn_momentum, self.bn_epsilon, self.dtype, self.param_dtype,
                    self.conv_grad, name=name)(x, train)

    x = x.astype(self.dtype)
    for name, kind, channels in INCEPTION_MODULES:
      if kind == "A":
        n1x1, n3x3red, n3x3, nd3x3red, nd3x3, pool, proj = channels
        x = jnp.concatenate([
            unit(x, f"{name}_1x1", n1x1, 1),
            unit(unit(x, f"{name}_3x3_reduce", n3x3red, 1), f"{name}_3x3", n3x3, 3),
            unit(unit(unit(x, f"{name}_double_3x3_reduce", nd3x3red, 1),
                      f"{name}_double_3x3_0", nd3x3, 3), f"{name}_double_3x3_1", nd3x3, 3),
            unit(_pool3x3(x, pool, 1), f"{name}_proj", proj, 1),
        ], axis=-1)
      else:
        n3x3red, n3x3, nd3x3red, nd3x3 = channels
        x = jnp.concatenate([
            unit(unit(x, f"{name}_3x3_reduce", n3x3red, 1), f"{name}_3x3", n3x3, 3, 2),
            unit(unit(unit(x, f"{name}_double_3x3_reduce", nd3x3red, 1),
                      f"{name}_double_3x3_0", nd3x3, 3), f"{name}_double_3x3_1", nd3x3, 3, 2),
            _pool3x3(x, "max", 2),
        ], axis=-1)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    x = nn.Dense(self.num_classes, kernel_init=self.kernel_initializer, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="fc")(x)
    return x.astype(jnp.float32)
