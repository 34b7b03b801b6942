"""A drop-in `lax.conv_general_dilated` whose gradients avoid XLA:CPU's slow paths.

Prototype for issue 7, part 3. Measured per NIN layer on the 2-core CPU (batch 32,
ms, jax.vjp of each NIN convolution alone), XLA's transposed convolution for the kernel
gradient is the outlier: for the 1x1 layers at 32x32 it is 4-6x slower than the
same contraction written as one matrix product, and for 3x3/5x5 kernels with many
input channels ~1.3-1.7x slower than the same sum written as a *forward*
convolution with the batch as the contracted feature dimension:

    dW[i, j, c, d] = sum_{b,h,w} x_pad[b, h + i, w + j, c] g[b, h, w, d]
                   = conv(lhs=x as (N=c, H, W, C=b), rhs=g as (I=b, H, W, O=d))

`conv_general_dilated` below takes that route through a custom VJP for stride-1,
undilated, ungrouped NHWC/HWIO convolutions (every convolution of NIN) and defers
to `lax.conv_general_dilated` for everything else. Results equal XLA's up to float
summation order. A model uses it through `flax.linen.Conv(...,
conv_general_dilated=conv_general_dilated)`; `train_step_bench --conv fast` patches
it into flax for the measurement without touching the model code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
# Below this many input channels XLA's own kernel gradient was faster (NIN's conv1, 3
# input channels: 40 ms against 59 ms as a forward convolution).
MIN_CHANNELS_FOR_FORWARD_CONV_DW = 16


def _conv(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _is_pointwise(w: jax.Array, padding: tuple[tuple[int, int], ...]) -> bool:
  return w.shape[:2] == (1, 1) and all(p == (0, 0) for p in padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_nhwc(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
  """Stride-1 NHWC x HWIO convolution, y[b,h,w,d] = sum_{i,j,c} x_pad[b,h+i,w+j,c] w[i,j,c,d]."""
  if _is_pointwise(w, padding):
    return jnp.dot(x.reshape(-1, x.shape[-1]), w[0, 0]).reshape(*x.shape[:-1], w.shape[-1])
  return _conv(x, w, padding)


def _conv_nhwc_fwd(x, w, padding):
  return conv_nhwc(x, w, padding), (x, w)


def _conv_nhwc_bwd(padding, residuals, g):
  x, w = residuals
  if _is_pointwise(w, padding):
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    dx = jnp.dot(g2, w[0, 0].T).reshape(x.shape)
    dw = jnp.dot(x2.T, g2)[None, None]
    return dx, dw.astype(w.dtype)
  # XLA's input gradient (a forward convolution with the flipped kernel) is fast already.
  dx = jax.vjp(lambda x: _conv(x, w, padding), x)[1](g)[0]
  if x.shape[-1] >= MIN_CHANNELS_FOR_FORWARD_CONV_DW:
    dw = lax.conv_general_dilated(x, g, (1, 1), padding,
                                  dimension_numbers=("CHWN", "IHWO", "HWNC"))
  else:
    dw = jax.vjp(lambda w: _conv(x, w, padding), w)[1](g)[0]
  return dx, dw.astype(w.dtype)


conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def _is_unit(values: Sequence[int] | None) -> bool:
  return values is None or all(v == 1 for v in values)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated` with `conv_nhwc`'s gradients where they apply."""
  supported = (
      lhs.ndim == 4 and _is_unit(window_strides) and _is_unit(lhs_dilation)
      and _is_unit(rhs_dilation) and feature_group_count == 1 and batch_group_count == 1
      and precision is None and preferred_element_type is None
      and not isinstance(padding, str) and lhs.dtype == rhs.dtype
      and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if supported:
    return conv_nhwc(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


class _LaxWithFastConv:
  """`jax.lax` with `conv_general_dilated` replaced (for patching flax.linen.linear)."""

  conv_general_dilated = staticmethod(conv_general_dilated)

  def __getattr__(self, name: str) -> Any:
    return getattr(lax, name)


def patch_flax_conv():
  """Context manager: flax.linen.Conv modules built and traced inside use `conv_nhwc`."""
  from unittest import mock

  import flax.linen.linear
  return mock.patch.object(flax.linen.linear, "lax", _LaxWithFastConv())
