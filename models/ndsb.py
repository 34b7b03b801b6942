"""The NDSB plankton network (Xu et al. 2015, Table 2; AuroraXie's Kaggle NDSB "model 2").

Layers (docs/sources.md §2; all convolutions 3x3 stride 1 with padding 1 unless noted):

  input 70x70x(1|3)
  conv1_1..conv1_2 32,  max pool 3x3/2 (70 -> 35)
  conv2_1..conv2_3 64,  max pool 3x3/2 (35 -> 17)
  branch1_1..branch1_4 96 | branch2_1..branch2_3 96, both from the pool, concat 192
  max pool 3x3/3 (17 -> 6)
  conv4_1..conv4_4 256, conv4_5 256 unpadded (6 -> 4)
  spatial pyramid pool {1, 2, 4} (256 * 21 = 5376 features)
  fc1 1024, dropout 0.55, fc2 1024, dropout 0.55, fc3 num_classes

A rectifier follows every convolution and fc1, fc2. Pools are ceil mode
(`models.pooling`). Table 2 of the paper prints 8x8 maps and a 12544-wide flatten;
the sizes above are the ones that the layers produce and that give the 5376 SPP
features of docs/sources.md §2.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import network, pooling
from rectifiers.linen import rectifier_factory


def min_input_size() -> int:
  """The smallest square input the layers accept (28): after the three ceil-mode pools
  (70 -> 35 -> 17 -> 6 at the paper's size) conv4_5, unpadded, needs a 3x3 map."""
  size = 1
  while pooling.ceil_mode_size(pooling.ceil_mode_size(pooling.ceil_mode_size(
      size, 3, 2), 3, 2), 3, 3) < 3:
    size += 1
  return size


class NDSBNet(network.Network):
  """NDSB net with a pluggable rectifier; `__call__(x, train)` maps (B, 70, 70, C) to logits.

  Attributes (besides `models.network.Network`'s; `width` also scales the fc layers):
    num_classes: 121 plankton classes.
    spp_levels: pyramid levels of the spatial pyramid (max) pool.
    kernel_init: "he" by default: neither the paper nor AuroraXie's write-up gives the
      initialisation, and He normal suits 14 rectified layers without normalisation.
    dropout_rate: dropout after fc1 and fc2.
  """

  num_classes: int = 121
  KERNEL_INIT_CHOICES = ("he", "xavier")
  spp_levels: tuple[int, ...] = (1, 2, 4)
  dropout_rate: float = 0.55

  @nn.nowrap
  def check_options(self) -> None:
    network.check_fraction("dropout_rate", self.dropout_rate)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    rectifier = rectifier_factory(self.rectifier)
    init = self.kernel_initializer

    def conv(x: jax.Array, name: str, features: int, pad: int = 1) -> jax.Array:
      x = nn.Conv(self.channels(features), (3, 3), padding=((pad, pad), (pad, pad)),
                  kernel_init=init, dtype=self.dtype, param_dtype=self.param_dtype,
                  conv_general_dilated=self.conv_general_dilated, name=name)(x)
      return rectifier(name=f"{name}_act")(x, deterministic=not train)

    def fc(x: jax.Array, name: str, features: int) -> jax.Array:
      x = nn.Dense(self.channels(features), kernel_init=init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)(x)
      x = rectifier(name=f"{name}_act")(x, deterministic=not train)
      return nn.Dropout(self.dropout_rate, deterministic=not train)(x)

    if x.ndim != 4 or min(x.shape[1:3]) < (smallest := min_input_size()):
      raise ValueError(f"NDSBNet needs NHWC images of at least {smallest}x{smallest} pixels, "
                       f"got shape {x.shape}; the paper resizes to 80x80 and crops 70x70 "
                       "(configs/ndsb.py: image_size=80, augment.ndsb=True).")
    x = x.astype(self.dtype)
    for i in range(1, 3):
      x = conv(x, f"conv1_{i}", 32)
    x = pooling.max_pool_ceil(x, 3, 2)
    for i in range(1, 4):
      x = conv(x, f"conv2_{i}", 64)
    x = pooling.max_pool_ceil(x, 3, 2)
    branch1 = branch2 = x
    for i in range(1, 5):
      branch1 = conv(branch1, f"branch1_{i}", 96)
    for i in range(1, 4):
      branch2 = conv(branch2, f"branch2_{i}", 96)
    x = jnp.concatenate([branch1, branch2], axis=-1)
    x = pooling.max_pool_ceil(x, 3, 3)
    for i in range(1, 5):
      x = conv(x, f"conv4_{i}", 256)
    x = conv(x, "conv4_5", 256, pad=0)
    x = pooling.spatial_pyramid_pool(x, self.spp_levels)
    x = fc(x, "fc1", 1024)
    x = fc(x, "fc2", 1024)
    x = nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="fc3")(x)
    return x.astype(jnp.float32)
