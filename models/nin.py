"""Network in Network for CIFAR-10/100 (Xu et al. 2015, Table 1; Lin et al. 2013).

Layers (docs/sources.md §2; input 32x32, "same" padding, names as in the Caffe NIN model):

  conv1 5x5-192, cccp1 1x1-160, cccp2 1x1-96, max pool 3x3/2 (32 -> 16), dropout 0.5,
  conv2 5x5-192, cccp3 1x1-192, cccp4 1x1-192, pool 3x3/2 (16 -> 8), dropout 0.5,
  conv3 3x3-192, cccp5 1x1-192, cccp6 1x1-num_classes, global average pool.

A rectifier follows every convolution, cccp6 included ("activation function is
followed by each convolutional layer", Table 1). Pools are ceil mode (`models.pooling`).
966,986 weights and biases for 10 classes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import network, pooling
from rectifiers.linen import rectifier_factory


class NetworkInNetwork(network.Network):
  """NIN with a pluggable rectifier; `__call__(x, train)` maps (B, H, W, 3) to (B, classes).

  Attributes (besides `models.network.Network`'s):
    num_classes: 10 for CIFAR-10, 100 for CIFAR-100.
    kernel_init: "nin" (N(0, 0.05), the public recipe) by default.
    second_pool: "avg" (the paper's Table 1 and Caffe) or "max" (the NIN author's
      cuda-convnet code).
    rectify_last: whether a rectifier follows cccp6 (the paper: yes).
    dropout_rate: dropout after each of the two pools.
  """

  num_classes: int = 10
  KERNEL_INIT_CHOICES = ("nin", "he")
  kernel_init: str = "nin"
  second_pool: str = "avg"
  rectify_last: bool = True
  dropout_rate: float = 0.5

  @nn.nowrap
  def check_options(self) -> None:
    network.check_choice("second_pool", self.second_pool, pooling.POOL_KINDS)
    network.check_fraction("dropout_rate", self.dropout_rate)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    rectifier = rectifier_factory(self.rectifier)

    def conv(x: jax.Array, name: str, features: int, kernel: int,
             rectify: bool = True) -> jax.Array:
      pad = (kernel - 1) // 2
      x = nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                  kernel_init=self.kernel_initializer, dtype=self.dtype,
                  param_dtype=self.param_dtype, conv_general_dilated=self.conv_general_dilated,
                  name=name)(x)
      return rectifier(name=f"{name}_act")(x, deterministic=not train) if rectify else x

    c = self.channels
    x = x.astype(self.dtype)
    x = conv(x, "conv1", c(192), 5)
    x = conv(x, "cccp1", c(160), 1)
    x = conv(x, "cccp2", c(96), 1)
    x = pooling.max_pool_ceil(x, 3, 2)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = conv(x, "conv2", c(192), 5)
    x = conv(x, "cccp3", c(192), 1)
    x = conv(x, "cccp4", c(192), 1)
    x = pooling.pool_ceil(x, self.second_pool, 3, 2)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = conv(x, "conv3", c(192), 3)
    x = conv(x, "cccp5", c(192), 1)
    x = conv(x, "cccp6", self.num_classes, 1, rectify=self.rectify_last)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
