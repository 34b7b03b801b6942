"""Ceil-mode pooling (cxxnet/Caffe output sizes) and spatial pyramid pooling, NHWC.

cxxnet, which trained the paper's models, and Caffe size an unpadded pooling output as
ceil((n - k) / s) + 1, never letting a window start past the input. That is what gives
NIN 32 -> 16 -> 8 and the NDSB net 70 -> 35 -> 17 -> 6 (docs/sources.md §2); floor mode
("VALID") would give 32 -> 15 -> 7. The last window then overhangs the input:

  * max pooling pads the overhang with -inf, so it never wins (cxxnet and Caffe skip it);
  * average pooling divides by the number of positions the window covers inside the
    input, as Caffe does. cxxnet instead divides by the full k*k, counting the overhang
    as zeros; `count_include_pad=True` gives that variant. Only the last output row and
    column differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

POOL_KINDS = ("max", "avg")


def _check_kind(kind: str) -> None:
  if kind not in POOL_KINDS:
    raise ValueError(f"pooling kind must be one of {POOL_KINDS}, got {kind!r}.")


def _check_nhwc(x: jax.Array, fn: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{fn}: expected an NHWC array (4 dims), got shape {x.shape}.")


def ceil_mode_size(size: int, window: int, stride: int) -> int:
  """Output length of an unpadded ceil-mode pool: cxxnet's min(n-k+s-1, n-1) // s + 1."""
  if size < 1 or window < 1 or stride < 1:
    raise ValueError(f"need size, window and stride >= 1, got {size}, {window}, {stride}.")
  # max(., 0): a window larger than the input still gives one output (cxxnet refuses it).
  return min(max(size - window, 0) + stride - 1, size - 1) // stride + 1


def _ceil_mode_padding(x: jax.Array, window: int, stride: int) -> tuple[tuple[int, int], ...]:
  return tuple((0, (ceil_mode_size(n, window, stride) - 1) * stride + window - n)
               for n in x.shape[1:3])


def max_pool_ceil(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
  """Max pooling with ceil-mode output size; the overhang is padded with -inf."""
  _check_nhwc(x, "max_pool_ceil")
  return nn.max_pool(x, (window, window), (stride, stride),
                     padding=_ceil_mode_padding(x, window, stride))


def avg_pool_ceil(x: jax.Array, window: int = 3, stride: int = 2, *,
                  count_include_pad: bool = False) -> jax.Array:
  """Average pooling with ceil-mode output size (Caffe's divisor unless `count_include_pad`)."""
  _check_nhwc(x, "avg_pool_ceil")
  return nn.avg_pool(x, (window, window), (stride, stride),
                     padding=_ceil_mode_padding(x, window, stride),
                     count_include_pad=count_include_pad)


def pool_ceil(x: jax.Array, kind: str, window: int = 3, stride: int = 2) -> jax.Array:
  """`max_pool_ceil` or `avg_pool_ceil`, chosen by `kind` ("max" or "avg")."""
  _check_kind(kind)
  return max_pool_ceil(x, window, stride) if kind == "max" else avg_pool_ceil(x, window, stride)


def _bins(size: int, n: int) -> list[tuple[int, int]]:
  # Bin i covers [floor(i*size/n), ceil((i+1)*size/n)), the bins of PyTorch's adaptive
  # pooling. They equal He et al.'s window ceil(size/n), stride floor(size/n) wherever
  # that recipe yields n bins, and stay n bins where it does not (size 7, n 4 gives 6).
  return [((i * size) // n, -((-(i + 1) * size) // n)) for i in range(n)]


def spatial_pyramid_pool(x: jax.Array, levels: Sequence[int] = (1, 2, 4),
                         kind: str = "max") -> jax.Array:
  """Spatial pyramid pooling (He et al. 2014): (B, H, W, C) -> (B, C * sum(n * n)).

  Each level n pools the map into n x n bins and is flattened in (row, column, channel)
  order; levels are concatenated in the order given. {1, 2, 4} on 256 channels gives
  256 * 21 = 5376 features (the NDSB net, docs/sources.md §2). Works for any H, W >= 1.
  """
  _check_nhwc(x, "spatial_pyramid_pool")
  _check_kind(kind)
  if not levels or any(not isinstance(n, int) or n < 1 for n in levels):
    raise ValueError(f"spatial_pyramid_pool: levels must be positive ints, got {levels!r}.")
  reduce = jnp.max if kind == "max" else jnp.mean
  batch, height, width, _ = x.shape
  features = []
  for n in levels:
    rows = jnp.stack([reduce(x[:, a:b], axis=1) for a, b in _bins(height, n)], axis=1)
    cells = jnp.stack([reduce(rows[:, :, a:b], axis=2) for a, b in _bins(width, n)], axis=2)
    features.append(cells.reshape(batch, -1))
  return jnp.concatenate(features, axis=-1)
