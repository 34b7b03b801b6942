"""On-device preprocessing and augmentation in jit-compiled JAX (docs/sources.md §3).

`preprocess` turns a uint8 batch into float32 model input: raw pixels minus the
per-pixel mean image of the training split (the paper's "raw images"), then, when
training, the augmentations that the config turns on (all are off by default):

* CIFAR: crop="pad" (pad by crop_padding, random crop back to the input size) or
  crop="random" (random crop_size crop, e.g. 28x28 from 32x32 as in the Inception-BN
  recipe; centre crop at test), and flip (random horizontal mirror).
* NDSB: ndsb=True, the cxxnet ImageAugmenter recipe of the AuroraXie NDSB model: random
  rotation (±rotation degrees), shear (±shear), aspect ratio and scale, then a random
  crop_size crop of the warped image, white fill outside the image, and the random
  mirror (whether or not flip is set). Inputs are pre-resized to 80x80 by the loader;
  the warped image lies on a canvas of scale x its size clamped to `canvas` (cxxnet's
  min_img_size/max_img_size, 80..100 in AuroraXie's model 2), and the crop is uniform
  over that canvas.

The mean image is subtracted *before* any geometric transform, so every output pixel is
its source pixel minus that pixel's mean, wherever the crop or warp moved it (subtracting
a fixed-position mean after a random crop would not be). Consequences: "pad" pads with
0, i.e. with the mean pixel; the NDSB fill is given in raw pixel units and becomes
`fill - mean_image.mean((0, 1))` in the output.

Randomness comes only from `key`: it is split into one key per example (vmap), so an
example's augmentation depends on its position in the global batch, not on how the batch
is laid out across devices.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

CROPS = ("none", "pad", "random")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Which augmentations run at training time (all off by default).

  Attributes:
    crop: "none"; "pad": pad by crop_padding then random crop back to the input size;
      "random": random crop to crop_size (centre crop at test).
    crop_padding: padding in pixels for crop="pad" (CIFAR: 4).
    crop_size: output side for crop="random" and for ndsb (Inception-BN: 28; NDSB: 70).
    flip: random horizontal mirror with probability 1/2.
    ndsb: the NDSB recipe: random affine warp (rotation, shear, aspect, scale), a random
      crop_size crop with `fill` outside the image, and the random mirror (centre crop
      at test). Set rotation=0, shear=0, aspect=scale=(1, 1) to turn the warp off.
    rotation: ndsb: angles are uniform in [-rotation, rotation] degrees.
    shear: ndsb: shear factor uniform in [-shear, shear].
    aspect: ndsb: aspect ratio (width/height stretch) uniform in this range.
    scale: ndsb: scale uniform in this range.
    fill: ndsb: raw pixel value outside the image (255: white, the NDSB background).
    canvas: ndsb: (min, max) side of the canvas that the crop is drawn from: scale x the
      image's side, clamped to this range (cxxnet's min_img_size/max_img_size; AuroraXie's
      model 2: (80, 100)). Unclamped, a scale of 1.7 lets a 70x70 crop of an 80x80 image
      land up to 33 pixels off centre, where it often misses the object.
  """

  crop: str = "none"
  crop_padding: int = 4
  crop_size: int = 0
  flip: bool = False
  ndsb: bool = False
  rotation: float = 180.0
  shear: float = 0.5
  aspect: tuple[float, float] = (0.5, 1.5)
  scale: tuple[float, float] = (0.3, 1.7)
  fill: float = 255.0
  canvas: tuple[float, float] = (0.0, 1e10)

  def __post_init__(self):
    def bad(field, value, allowed):
      raise ValueError(f"AugmentConfig.{field}={value!r} is invalid; allowed: {allowed}.")

    if self.crop not in CROPS:
      bad("crop", self.crop, " | ".join(repr(c) for c in CROPS))
    if self.crop_padding < 0:
      bad("crop_padding", self.crop_padding, "an int >= 0")
    if (self.crop == "random" or self.ndsb) and self.crop_size <= 0:
      bad("crop_size", self.crop_size, "an int > 0 when crop='random' or ndsb=True")
    if self.crop_size < 0:
      bad("crop_size", self.crop_size, "an int >= 0")
    if self.ndsb and self.crop != "none":
      bad("crop", self.crop, "'none' when ndsb=True (ndsb crops to crop_size itself)")
    if not 0 <= self.rotation <= 180:
      bad("rotation", self.rotation, "degrees in [0, 180]")
    if not 0 <= self.shear < 1:
      bad("shear", self.shear, "a factor in [0, 1)")
    for name in ("aspect", "scale"):
      lo_hi = getattr(self, name)
      if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        bad(name, lo_hi, "a pair (lo, hi) with 0 < lo <= hi")
    if not math.isfinite(self.fill):
      bad("fill", self.fill, "a finite pixel value")
    if len(self.canvas) != 2 or not 0 <= self.canvas[0] <= self.canvas[1]:
      bad("canvas", self.canvas, "a pair (min, max) of sides with 0 <= min <= max")
    if self.ndsb and self.canvas[1] < self.crop_size:
      bad("canvas", self.canvas, f"a max side >= crop_size={self.crop_size}")


def output_shape(image_shape: Sequence[int],
                 config: AugmentConfig) -> tuple[int, int, int]:
  """(H, W, C) of `preprocess`'s output for inputs of `image_shape`."""
  h, w, c = image_shape
  if config.crop == "random" or config.ndsb:
    if config.crop_size > min(h, w):
      raise ValueError(f"AugmentConfig.crop_size={config.crop_size} exceeds the input "
                       f"size {h}x{w}; allowed: 1..{min(h, w)}.")
    return (config.crop_size, config.crop_size, c)
  return (h, w, c)


def _crop(x: jax.Array, top: jax.Array, left: jax.Array, size: Sequence[int]) -> jax.Array:
  return jax.lax.dynamic_slice(x, (top, left, 0), (*size, x.shape[-1]))


def _random_crop(x: jax.Array, key: jax.Array, size: Sequence[int]) -> jax.Array:
  """A uniformly placed `size` window of x (H, W, C)."""
  k_top, k_left = jax.random.split(key)
  top = jax.random.randint(k_top, (), 0, x.shape[0] - size[0] + 1)
  left = jax.random.randint(k_left, (), 0, x.shape[1] - size[1] + 1)
  return _crop(x, top, left, size)


def _centre_crop(x: jax.Array, size: int) -> jax.Array:
  top, left = (x.shape[0] - size) // 2, (x.shape[1] - size) // 2
  return x[top:top + size, left:left + size]


def warp(x: jax.Array, *, angle: jax.Array, shear: jax.Array, scale: jax.Array,
         aspect: jax.Array, shift: jax.Array, size: int, fill: jax.Array) -> jax.Array:
  """cxxnet's affine warp of x (H, W, C) sampled on a size x size window, bilinear.

  As in cxxnet's ImageAugmenter, the forward map (on (col, row) coordinates about the
  image centre) is [[hs, shear*ws], [0, ws]] @ [[cos, sin], [-sin, cos]] with
  hs = 2*scale/(1+aspect), ws = aspect*hs, onto a canvas of scale * (W, H) whose
  centre is the image centre; the window is centred on canvas centre + shift (col, row).
  Points outside the image read `fill` (per channel).
  """
  h, w, _ = x.shape
  a, b = jnp.cos(angle), jnp.sin(angle)
  hs = 2 * scale / (1 + aspect)
  ws = aspect * hs
  # Inverse of the forward map, by hand: inv(S @ R) = R.T @ inv(S).
  s_inv = jnp.array([[1 / hs, -shear / hs], [0.0, 1 / ws]])
  r_t = jnp.array([[a, -b], [b, a]])
  inverse = r_t @ s_inv
  offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
  cols = offsets[None, :] + shift[0]
  rows = offsets[:, None] + shift[1]
  src_col = inverse[0, 0] * cols + inverse[0, 1] * rows + (w - 1) / 2
  src_row = inverse[1, 0] * cols + inverse[1, 1] * rows + (h - 1) / 2
  # Sampling [x, 1] with zeros outside gives the image and its coverage; blending
  # with coverage fills outside points exactly, including at partial edge pixels.
  stacked = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
  sample = jax.vmap(lambda ch: jax.scipy.ndimage.map_coordinates(
      ch, [src_row, src_col], order=1, mode="constant", cval=0.0), -1, -1)
  out = sample(stacked)
  return out[..., :-1] + (1 - out[..., -1:]) * fill


def _ndsb(x: jax.Array, key: jax.Array, config: AugmentConfig,
          fill: jax.Array) -> jax.Array:
  """The NDSB recipe's random warp and random crop_size crop of x (H, W, C)."""
  k_angle, k_shear, k_scale, k_aspect, k_shift = jax.random.split(key, 5)
  uniform = lambda k, lo, hi: jax.random.uniform(k, (), jnp.float32, lo, hi)
  angle = jnp.deg2rad(uniform(k_angle, -config.rotation, config.rotation))
  scale = uniform(k_scale, *config.scale)
  canvas = jnp.clip(scale * jnp.array([x.shape[1], x.shape[0]], jnp.float32),  # (W, H)
                    *config.canvas)
  # A random crop of the canvas, as cxxnet's (a uniform top-left corner); a canvas
  # smaller than the crop is centred in it.
  slack = jnp.maximum(canvas - config.crop_size, 0) / 2
  shift = jax.random.uniform(k_shift, (2,), jnp.float32, -1, 1) * slack
  return warp(x, angle=angle, shear=uniform(k_shear, -config.shear, config.shear),
              scale=scale, aspect=uniform(k_aspect, *config.aspect), shift=shift,
              size=config.crop_size, fill=fill)


def _augment_one(x: jax.Array, key: jax.Array, config: AugmentConfig,
                 fill: jax.Array) -> jax.Array:
  k_ndsb, k_crop, k_flip = jax.random.split(key, 3)
  if config.ndsb:
    x = _ndsb(x, k_ndsb, config, fill)
  if config.crop == "pad":
    p = config.crop_padding
    padded = jnp.pad(x, ((p, p), (p, p), (0, 0)))
    x = _random_crop(padded, k_crop, x.shape[:2])
  elif config.crop == "random":
    x = _random_crop(x, k_crop, (config.crop_size, config.crop_size))
  if config.flip or config.ndsb:
    x = jnp.where(jax.random.bernoulli(k_flip), x[:, ::-1], x)
  return x


@functools.partial(jax.jit, static_argnames=("config", "train"))
def preprocess(images: jax.Array, key: jax.Array, *, mean_image: jax.Array | np.ndarray,
               config: AugmentConfig, train: bool) -> jax.Array:
  """uint8 (B, H, W, C) -> float32 model input (B, H', W', C), see the module doc.

  Args:
    images: uint8 batch.
    key: PRNG key; the only source of randomness (unused when train=False).
    mean_image: float32 (H, W, C) per-pixel mean of the training split.
    config: the augmentations (static).
    train: augment at random if True; else only the deterministic centre crop.

  Returns:
    float32 (B, *output_shape(images.shape[1:], config)[:2], C).
  """
  output_shape(images.shape[1:], config)  # Validates crop_size against the input.
  x = images.astype(jnp.float32) - jnp.asarray(mean_image, jnp.float32)
  if not train:
    if config.crop == "random" or config.ndsb:
      x = jax.vmap(lambda e: _centre_crop(e, config.crop_size))(x)
    return x
  fill = config.fill - jnp.mean(jnp.asarray(mean_image, jnp.float32), axis=(0, 1))
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda e, k: _augment_one(e, k, config, fill))(x, keys)
