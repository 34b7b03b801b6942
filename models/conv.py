"""A convolution with CPU-friendly gradients: a drop-in `lax.conv_general_dilated`.

XLA:CPU computes the kernel gradient of a convolution as a transposed convolution, its
slow path. Measured per NIN layer on the 2-core CPU (batch 32, ms, jax.vjp of each NIN
convolution alone), that kernel gradient is the outlier: for the 1x1 layers at 32x32 it
is 4-6x slower than the same contraction written as one matrix product, and for 3x3/5x5
kernels with many input channels ~1.3-1.7x slower than the same sum written as a
*forward* convolution with the batch as the contracted feature dimension:

    dW[i, j, c, d] = sum_{b,h,w} x_pad[b, h + i, w + j, c] g[b, h, w, d]
                   = conv(lhs=x as (N=c, H, W, C=b), rhs=g as (I=b, H, W, O=d))

and for 1x1 kernels, with x and g flattened to (B*H*W, C) and (B*H*W, D) matrices,

    y = x W,   dx = g W^T,   dW = x^T g.

`conv_general_dilated` takes that route through a custom VJP (`conv_nhwc`) for stride-1,
undilated, ungrouped NHWC/HWIO convolutions (every convolution of NIN and NDSB, all but
the four strided ones of Inception-BN) and defers to `lax.conv_general_dilated` for
everything else. Results equal XLA's up to float summation order; the NIN train step
was 1.76x faster on this CPU (`benchmarks/train_step_bench.py --conv-grad xla,forward`).
On GPU/TPU cuDNN's and XLA's own gradients are fast: keep "xla" there.

The models select it by name (`CONV_GRADS`, the `conv_grad` option):

  nn.Conv(..., conv_general_dilated=CONV_GRADS["forward"])

A custom VJP defines reverse mode only: `jax.jvp` (forward mode, e.g. Hessian-vector
products) through a model built with "forward" raises; use "xla" for that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
# Below this many input channels XLA's own kernel gradient was faster (NIN's conv1, 3
# input channels: 40 ms against 59 ms as a forward convolution).
MIN_CHANNELS_FOR_FORWARD_CONV_DW = 16

Padding = tuple[tuple[int, int], ...]


def _conv(x: jax.Array, w: jax.Array, padding: Padding) -> jax.Array:
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _is_pointwise(w: jax.Array, padding: Padding) -> bool:
  return w.shape[:2] == (1, 1) and all(p == (0, 0) for p in padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_nhwc(x: jax.Array, w: jax.Array, padding: Padding) -> jax.Array:
  """Stride-1 NHWC x HWIO convolution, y[b,h,w,d] = sum_{i,j,c} x_pad[b,h+i,w+j,c] w[i,j,c,d]."""
  if _is_pointwise(w, padding):
    return jnp.dot(x.reshape(-1, x.shape[-1]), w[0, 0]).reshape(*x.shape[:-1], w.shape[-1])
  return _conv(x, w, padding)


def _conv_nhwc_fwd(x: jax.Array, w: jax.Array, padding: Padding):
  return conv_nhwc(x, w, padding), (x, w)


def _conv_nhwc_bwd(padding: Padding, residuals: tuple[jax.Array, jax.Array], g: jax.Array):
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
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated` with `conv_nhwc`'s gradients where they apply.

  Applies to stride-1, undilated, ungrouped NHWC/HWIO convolutions of one dtype at
  default precision; anything else (strides, NCHW, ...) is `lax.conv_general_dilated`.
  """
  supported = (
      lhs.ndim == 4 and _is_unit(window_strides) and _is_unit(lhs_dilation)
      and _is_unit(rhs_dilation) and feature_group_count == 1 and batch_group_count == 1
      and precision is None and preferred_element_type is None and lhs.dtype == rhs.dtype
      and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if supported:
    if isinstance(padding, str):  # "SAME" / "VALID" -> explicit pads (stride 1, NHWC/HWIO).
      padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    return conv_nhwc(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


# The `conv_grad` model option: how the convolutions' gradients are computed.
#   "xla": XLA's own (transposed convolutions); best on GPU/TPU.
#   "forward": gradients as forward convolutions and matrix products (above); best on CPU.
CONV_GRADS: dict[str, Callable[..., jax.Array]] = {
    "xla": lax.conv_general_dilated,
    "forward": conv_general_dilated,
}


def conv_general_dilated_for(conv_grad: str) -> Callable[..., jax.Array]:
  """The `nn.Conv(conv_general_dilated=...)` for a `conv_grad` option value."""
  if conv_grad not in CONV_GRADS:
    raise ValueError(f"conv_grad must be one of {tuple(CONV_GRADS)}, got {conv_grad!r}.")
  return CONV_GRADS[conv_grad]
