"""Tests of input_pipeline.augment against numpy and scipy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from input_pipeline import augment

Config = augment.AugmentConfig
RNG = np.random.RandomState(0)
IMAGES = RNG.randint(0, 256, (16, 12, 12, 3)).astype(np.uint8)
MEAN = RNG.uniform(50, 200, (12, 12, 3)).astype(np.float32)
KEY = jax.random.key(0)


def _run(config, train, images=IMAGES, mean=MEAN, key=KEY):
  out = augment.preprocess(images, key, mean_image=mean, config=config, train=train)
  assert out.dtype == jnp.float32
  assert out.shape == (len(images), *augment.output_shape(images.shape[1:], config))
  return np.asarray(out)


def _window_offsets(big, small):
  """All (top, left) where `small` is a window of `big` (both H, W, C)."""
  h, w = small.shape[:2]
  return [(t, l) for t in range(big.shape[0] - h + 1) for l in range(big.shape[1] - w + 1)
          if np.array_equal(big[t:t + h, l:l + w], small)]


@pytest.mark.parametrize("field, value", [
    ("crop", "centre"), ("crop_padding", -1), ("crop_size", -2), ("rotation", 200.0),
    ("shear", -0.1), ("aspect", (1.5, 0.5)), ("scale", (0.0, 1.0)), ("fill", float("nan")),
    ("canvas", (100.0, 80.0)), ("canvas", (-1.0, 80.0)),
])
def test_config_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=f"AugmentConfig.{field}=.*allowed"):
    Config(**{field: value})


def test_config_rejects_bad_combinations():
  with pytest.raises(ValueError, match="crop_size"):
    Config(crop="random")
  with pytest.raises(ValueError, match="crop_size"):
    Config(ndsb=True)
  with pytest.raises(ValueError, match="AugmentConfig.crop='pad'"):
    Config(ndsb=True, crop="pad", crop_size=8)
  with pytest.raises(ValueError, match="crop_size=40 exceeds the input size 32x32"):
    augment.output_shape((32, 32, 3), Config(crop="random", crop_size=40))


def test_output_shape():
  assert augment.output_shape((32, 32, 3), Config()) == (32, 32, 3)
  assert augment.output_shape((32, 32, 3), Config(crop="pad", flip=True)) == (32, 32, 3)
  assert augment.output_shape((32, 32, 3), Config(crop="random", crop_size=28)) == (28, 28, 3)
  assert augment.output_shape((80, 80, 1), Config(ndsb=True, crop_size=70)) == (70, 70, 1)


@pytest.mark.parametrize("train", [True, False])
def test_no_augmentation_is_mean_subtraction(train):
  np.testing.assert_allclose(_run(Config(), train), IMAGES.astype(np.float32) - MEAN,
                             atol=1e-5)


def test_pad_crop_is_a_window_of_the_padded_image():
  out = _run(Config(crop="pad", crop_padding=3), train=True)
  centred = IMAGES.astype(np.float32) - MEAN
  offsets = set()
  for x, y in zip(centred, out):
    found = _window_offsets(np.pad(x, ((3, 3), (3, 3), (0, 0))), y)
    assert found and all(0 <= t <= 6 and 0 <= l <= 6 for t, l in found)
    offsets.add(found[0])
  assert len(offsets) > 4  # Positions vary across the batch.


def test_random_crop_and_centre_crop():
  config = Config(crop="random", crop_size=8)
  centred = IMAGES.astype(np.float32) - MEAN
  offsets = set()
  for x, y in zip(centred, _run(config, train=True)):
    found = _window_offsets(x, y)
    assert found
    offsets.add(found[0])
  assert len(offsets) > 4
  np.testing.assert_allclose(_run(config, train=False), centred[:, 2:10, 2:10], atol=1e-5)


def test_flip_against_numpy():
  out = _run(Config(flip=True), train=True)
  centred = IMAGES.astype(np.float32) - MEAN
  flipped = [np.allclose(y, x[:, ::-1], atol=1e-5) for x, y in zip(centred, out)]
  kept = [np.allclose(y, x, atol=1e-5) for x, y in zip(centred, out)]
  assert all(f or k for f, k in zip(flipped, kept))
  assert any(flipped) and any(kept)
  np.testing.assert_allclose(_run(Config(flip=True), train=False), centred, atol=1e-5)


@pytest.mark.parametrize("config", [
    Config(crop="pad", crop_padding=0),
    Config(crop="random", crop_size=12),
], ids=["pad0", "random-full"])
def test_zero_strength_is_identity(config):
  np.testing.assert_allclose(_run(config, train=True), IMAGES.astype(np.float32) - MEAN,
                             atol=1e-4)


def test_ndsb_at_zero_strength_only_mirrors():
  config = Config(ndsb=True, crop_size=12, rotation=0.0, shear=0.0, aspect=(1.0, 1.0),
                  scale=(1.0, 1.0))
  centred = IMAGES.astype(np.float32) - MEAN
  out = _run(config, train=True)
  mirrored = [np.allclose(y, x[:, ::-1], atol=1e-4) for x, y in zip(centred, out)]
  kept = [np.allclose(y, x, atol=1e-4) for x, y in zip(centred, out)]
  assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_warp_against_scipy_and_rot90():
  x = RNG.uniform(0, 255, (9, 9, 2)).astype(np.float32)
  fill = np.array([255.0, 10.0], np.float32)
  warp = jax.jit(augment.warp, static_argnames="size")  # One compile, not many dispatches.
  args = dict(angle=0.0, shear=0.0, scale=1.0, aspect=1.0, shift=jnp.zeros(2), size=9,
              fill=fill)
  # cxxnet/OpenCV: a positive angle turns the picture counter-clockwise, like np.rot90.
  np.testing.assert_allclose(warp(x, **{**args, "angle": np.pi / 2}),
                             np.rot90(x), atol=1e-3)
  angle, shear, scale, aspect, shift, size = 0.7, 0.3, 1.2, 0.8, np.array([1.5, -2.0]), 7
  got = warp(x, angle=angle, shear=shear, scale=scale, aspect=aspect,
              shift=jnp.asarray(shift), size=size, fill=fill)
  # The same map written out independently; scipy maps output (row, col) to input.
  a, b = np.cos(angle), np.sin(angle)
  hs = 2 * scale / (1 + aspect)
  forward = np.array([[hs, shear * aspect * hs], [0, aspect * hs]]) @ np.array(
      [[a, b], [-b, a]])
  swap = np.array([[0, 1], [1, 0]])  # (col, row) <-> (row, col)
  inverse = swap @ np.linalg.inv(forward) @ swap
  out_centre = (size - 1) / 2 - shift[::-1]
  offset = np.array([4.0, 4.0]) - inverse @ out_centre
  want = np.stack([
      ndimage.affine_transform(x[..., c] - fill[c], inverse, offset=offset,
                               output_shape=(size, size), order=1, mode="grid-constant")
      + fill[c] for c in range(2)], axis=-1)
  np.testing.assert_allclose(got, want, atol=1e-3)


def test_ndsb_recipe_shapes_range_fill_and_determinism():
  images = RNG.randint(0, 256, (4, 80, 80, 1)).astype(np.uint8)
  mean = images.mean(0).astype(np.float32)
  config = Config(ndsb=True, crop_size=70)
  out = _run(config, True, images, mean)
  assert out.shape == (4, 70, 70, 1)
  # Bilinear samples are convex combinations of pixels and the (white) fill.
  assert out.min() >= -mean.max() - 1e-3 and out.max() <= 255 - mean.min() + 1e-3
  np.testing.assert_array_equal(out, _run(config, True, images, mean))
  assert not np.allclose(out, _run(config, True, images, mean, key=jax.random.key(1)))
  centred = images.astype(np.float32) - mean
  np.testing.assert_allclose(_run(config, False, images, mean), centred[:, 5:75, 5:75],
                             atol=1e-4)
  # Scaled to 0.3 x 80 = 24 pixels, the image leaves the corners white.
  small = _run(Config(ndsb=True, crop_size=70, scale=(0.3, 0.3)), True, images, mean)
  np.testing.assert_allclose(small[:, [0, 0, -1, -1], [0, -1, 0, -1]],
                             np.full((4, 4, 1), 255.0 - mean.mean()), atol=1e-3)


def _dot_offsets(canvas, scale=1.7, n=64):
  """Where a dark dot at the centre of an 80x80 white image lands in the NDSB crop (row and
  column offsets from the crop's centre), for n draws of the warp at a fixed `scale`."""
  image = np.full((80, 80, 1), 255, np.uint8)
  image[39:41, 39:41] = 0
  config = Config(ndsb=True, crop_size=70, rotation=0.0, shear=0.0, aspect=(1.0, 1.0),
                  scale=(scale, scale), canvas=canvas)
  out = _run(config, True, np.repeat(image[None], n, 0), np.zeros((80, 80, 1), np.float32))
  flat = out[..., 0].reshape(n, -1).argmin(1)
  return np.stack(np.unravel_index(flat, (70, 70)), 1) - 34.5


def test_ndsb_canvas_clamp_keeps_the_crop_within_cxxnets_canvas():
  # cxxnet (ImageAugmenter, AuroraXie's min_img_size=80, max_img_size=100): at scale 1.7 the
  # 136-pixel image lies on a 100-pixel canvas, so a 70-pixel crop is at most 15 pixels off
  # the centre; unclamped, the crop ranges over the whole 136 pixels (up to 33 off).
  clamped = np.abs(_dot_offsets((80.0, 100.0)))
  assert clamped.max() <= 15.5 + 1 and clamped.max() > 10  # the shift is used, and bounded
  assert np.abs(_dot_offsets((0.0, 1e10))).max() > 20
  # A canvas clamped below the crop size would leave nothing to crop at random.
  with pytest.raises(ValueError, match="AugmentConfig.canvas=.*crop_size=70"):
    Config(ndsb=True, crop_size=70, canvas=(0.0, 60.0))
