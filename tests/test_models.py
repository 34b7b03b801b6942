"""Tests of models/: layer tables, parameter counts, rectifier placement, rngs, pooling, and
the `conv_grad` option's convolution gradients (models/conv.py).

Only shapes go through `jax.eval_shape` on the full-width networks; everything that runs
uses width 0.125 and batch 2, with one init per network shared by the module.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import conv as conv_lib
from models import pooling
from rectifiers import linen as rl

SMALL = 0.125
INPUTS = {"nin": (32, 32, 3), "ndsb": (70, 70, 1), "inception_bn": (28, 28, 3)}
CLASSES = {"nin": 10, "ndsb": 121, "inception_bn": 100}
NAMES = tuple(INPUTS)


def _x(name: str, batch: int = 2, seed: int = 0) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (batch, *INPUTS[name]))


def _rngs(dropout: int = 1, rrelu: int = 2) -> dict[str, jax.Array]:
  # unsafe_rbg keys compile ~3x faster than threefry on CPU, and 66 RReLU layers each
  # draw; the models must not depend on the key implementation anyway.
  return {"dropout": jax.random.key(dropout, impl="unsafe_rbg"),
          "rrelu": jax.random.key(rrelu, impl="unsafe_rbg")}


def _abstract_init(model: nn.Module, name: str):
  return jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, _x(name), train=False))


def _random_variables(abstract, seed: int = 0):
  """Values for abstract variables like `init`'s (He-scaled kernels, BatchNorm's start)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == "kernel":
      return rng.normal(0, math.sqrt(2 / math.prod(leaf.shape[:-1])), leaf.shape)
    return np.ones(leaf.shape) if path[-1].key in ("scale", "var") else np.zeros(leaf.shape)

  return jax.tree.map(jnp.asarray, jax.tree_util.tree_map_with_path(fill, abstract))


def _count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


# These tests check semantics, not speed: XLA's CPU backend optimisations only cost
# compile time here.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=_FAST_COMPILE, **kwargs)


_CAPTURED = (("act", rl.RReLU), ("bn", nn.BatchNorm), ("conv", nn.Conv), ("dense", nn.Dense))


class _Capture:
  """A `capture_intermediates` filter that also records the kind of each captured module."""

  def __init__(self):
    self.kinds: dict[tuple[str, ...], str] = {}

  def __call__(self, module: nn.Module, method: str) -> bool:
    kind = next((k for k, t in _CAPTURED if isinstance(module, t)), None)
    if kind is None or method != "__call__":
      return False
    self.kinds[module.path] = kind
    return True

  def outputs(self, state) -> dict[str, list[jax.Array]]:
    """Kind -> outputs of the modules of that kind, in call order."""
    flat = {tuple(k.key for k in path[:-2]): leaf for path, leaf in
            jax.tree_util.tree_leaves_with_path(state["intermediates"])}
    return {kind: [flat[p] for p, k in self.kinds.items() if k == kind] for kind, _ in _CAPTURED}


class _Small:
  """A width-0.125 network with RReLU, initialised once, and jitted forward passes."""

  def __init__(self, name: str):
    self.name, self.x = name, _x(name)
    self.model = models.create(name, num_classes=CLASSES[name], rectifier="rrelu", width=SMALL)
    if name == "inception_bn":
      # Compiling init (66 truncated-normal kernels) would cost more than all these tests.
      self.variables = _random_variables(_abstract_init(self.model, name))
    else:
      self.variables = _jit(lambda k: self.model.init({"params": k}, self.x, train=False))(
          jax.random.key(0))
    self.capture = _Capture()
    self._forward = _jit(self._apply, static_argnums=2)

  def _apply(self, variables, rngs, train: bool):
    # Training passes capture only what the BatchNorm test reads, to keep compiles short.
    capture = (lambda m, _: m.path == ("in3a_1x1", "conv")) if train else self.capture
    return self.model.apply(variables, self.x, train=train, rngs=rngs,
                            mutable=["batch_stats", "intermediates"],
                            capture_intermediates=capture)

  def forward(self, train: bool, rngs: dict[str, jax.Array]):
    """(logits, {"batch_stats": ..., "intermediates": ...}) of a batch of 2."""
    return self._forward(self.variables, rngs, train)


@pytest.fixture(scope="module")
def small() -> dict[str, _Small]:
  return {name: _Small(name) for name in NAMES}


@pytest.fixture(scope="module")
def full():
  """(name, rectifier) -> (full-width model, abstract variables), each traced once."""
  cache = {}

  def get(name: str, rectifier: str = "relu"):
    if (name, rectifier) not in cache:
      model = models.create(name, num_classes=CLASSES[name], rectifier=rectifier)
      cache[name, rectifier] = model, _abstract_init(model, name)
    return cache[name, rectifier]

  return get


# ----------------------------------------------------------------------------- registry


def test_registry_names():
  assert set(models.MODELS) == {"nin", "ndsb", "inception_bn"}
  assert isinstance(models.create("nin", num_classes=10), models.NetworkInNetwork)
  assert isinstance(models.create("ndsb", num_classes=121), models.NDSBNet)
  assert isinstance(models.create("inception_bn", num_classes=100), models.InceptionBN)


def test_registry_errors():
  with pytest.raises(ValueError, match="valid names: nin, ndsb, inception_bn"):
    models.create("resnet", num_classes=10)
  with pytest.raises(TypeError, match=r"\['widht'\].*width"):
    models.create("nin", num_classes=10, widht=0.5)
  with pytest.raises(TypeError, match="bn_momentum"):
    models.create("nin", num_classes=10, bn_momentum=0.9)
  with pytest.raises(ValueError, match="Unknown rectifier"):
    models.create("nin", num_classes=10, rectifier="swish")
  with pytest.raises(ValueError, match="num_classes"):
    models.create("nin", num_classes=0)
  with pytest.raises(ValueError, match="second_pool"):
    models.create("nin", num_classes=10, second_pool="median")
  with pytest.raises(ValueError, match="kernel_init"):
    models.create("ndsb", num_classes=121, kernel_init="nin")
  with pytest.raises(ValueError, match="width"):
    models.create("inception_bn", num_classes=100, width=0)


def test_from_config_builds_what_a_config_and_its_record_describe():
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config("prelu")
  config.dtype = "bfloat16"
  expected = models.create("nin", num_classes=7, rectifier="prelu",
                           **config.model_options.to_dict(), dtype=jnp.bfloat16)
  assert models.from_config(config, 7) == expected
  assert models.from_config(config.to_dict(), 7) == expected  # a run's config.json
  assert models.from_config(config, 7, rectifier="relu").rectifier == "relu"


def test_callable_rectifier():
  model = models.create("nin", num_classes=10, rectifier=functools.partial(rl.LeakyReLU, a=20.0))
  variables = _abstract_init(model, "nin")
  assert _count(variables["params"]) == 966_986


# ------------------------------------------------------------------ shapes and counts


@pytest.mark.parametrize("setting", rl.PAPER_SETTINGS)
@pytest.mark.parametrize("name", NAMES)
def test_builds_with_each_paper_setting(full, name, setting):
  model, variables = full(name, setting)
  logits, _ = jax.eval_shape(
      lambda v: model.apply(v, _x(name), train=True, rngs=_rngs(), mutable=["batch_stats"]),
      variables)
  assert logits.shape == (2, CLASSES[name]) and logits.dtype == jnp.float32
  slopes = [p for path, p in jax.tree_util.tree_leaves_with_path(variables["params"])
            if path[-1].key == "slope"]
  assert bool(slopes) == (setting == "prelu")


def test_nin_parameter_count(full):
  assert _count(full("nin")[1]["params"]) == 966_986
  model = models.create("nin", num_classes=100)
  assert _count(_abstract_init(model, "nin")["params"]) == 966_986 + 90 * 192 + 90


# Output channels of every rectified layer, from docs/sources.md §2.
_NIN_RECTIFIED = (192, 160, 96, 192, 192, 192, 192, 192)  # + the class layer
_NDSB_RECTIFIED = (32,) * 2 + (64,) * 3 + (96,) * 7 + (256,) * 5 + (1024,) * 2


def _inception_table_counts(num_classes: int) -> tuple[int, int]:
  """(weights, rectified channels) of Inception-BN from the table in docs/sources.md §2."""
  weights, channels, cin = 0, 0, 3

  def unit(cin, cout, k):
    nonlocal weights, channels
    weights += k * k * cin * cout + 2 * cout  # conv without bias, BN scale and shift
    channels += cout
    return cout

  for _, kind, c in models.inception_bn.INCEPTION_MODULES:
    if kind == "A":
      n1, r3, n3, rd, nd, _, proj = c
      unit(cin, n1, 1), unit(unit(cin, r3, 1), n3, 3), unit(unit(unit(cin, rd, 1), nd, 3), nd, 3)
      unit(cin, proj, 1)
      cin = n1 + n3 + nd + proj
    else:
      r3, n3, rd, nd = c
      unit(unit(cin, r3, 1), n3, 3), unit(unit(unit(cin, rd, 1), nd, 3), nd, 3)
      cin = n3 + nd + cin
  assert cin == 1024
  return weights + 1024 * num_classes + num_classes, channels


@pytest.mark.parametrize("name", NAMES)
def test_prelu_adds_one_slope_per_rectified_channel(full, name):
  relu = _count(full(name)[1]["params"])
  prelu_vars = full(name, "prelu")[1]
  if name == "nin":
    expected_relu, channels = 966_986, sum(_NIN_RECTIFIED) + 10
  elif name == "ndsb":
    expected_relu, channels = 10_110_521, sum(_NDSB_RECTIFIED)
  else:
    expected_relu, channels = _inception_table_counts(100)
  assert relu == expected_relu
  assert _count(prelu_vars["params"]) == relu + channels
  slopes = [p for path, p in jax.tree_util.tree_leaves_with_path(prelu_vars["params"])
            if path[-1].key == "slope"]
  assert all(s.ndim == 1 for s in slopes) and sum(s.size for s in slopes) == channels


def test_nin_rectify_last_off_drops_one_rectifier():
  model = models.create("nin", num_classes=10, rectifier="prelu", rectify_last=False)
  assert _count(_abstract_init(model, "nin")["params"]) == 966_986 + sum(_NIN_RECTIFIED)


def _conv_outputs(model, variables, x) -> dict[str, tuple[int, ...]]:
  """Module path -> output shape of every nn.Conv, from an abstract forward pass."""
  _, state = jax.eval_shape(
      lambda v: model.apply(v, x, train=False, mutable=["intermediates"],
                            capture_intermediates=lambda m, _: isinstance(m, nn.Conv)),
      variables)
  flat = jax.tree_util.tree_leaves_with_path(state["intermediates"])
  return {"/".join(str(k.key) for k in path[:-2]): leaf.shape for path, leaf in flat}


def test_intermediate_sizes(full):
  shapes = _conv_outputs(*full("nin"), _x("nin"))
  assert [shapes[k][1] for k in ("conv1", "conv2", "conv3")] == [32, 16, 8]
  assert shapes["cccp6"] == (2, 8, 8, 10)

  ndsb, variables = full("ndsb")
  shapes = _conv_outputs(ndsb, variables, _x("ndsb"))
  sizes = [shapes[k][1] for k in ("conv1_1", "conv2_1", "branch1_1", "conv4_1", "conv4_5")]
  assert sizes == [70, 35, 17, 6, 4]
  assert shapes["branch1_4"][-1] + shapes["branch2_3"][-1] == 192
  assert variables["params"]["conv4_1"]["kernel"].shape == (3, 3, 192, 256)
  assert variables["params"]["fc1"]["kernel"].shape == (5376, 1024)

  inception, variables = full("inception_bn")
  shapes = _conv_outputs(inception, variables, _x("inception_bn"))
  assert shapes["in3a_1x1/conv"][1:3] == (28, 28)
  assert shapes["in3c_3x3/conv"][1:3] == (14, 14)
  assert shapes["in4e_3x3/conv"][1:3] == (7, 7)
  assert variables["params"]["fc"]["kernel"].shape == (1024, 100)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_computation_float32_params_and_logits(name):
  model = models.create(name, num_classes=CLASSES[name], rectifier="prelu",
                        dtype=jnp.bfloat16, width=SMALL)
  variables = _abstract_init(model, name)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, _ = jax.eval_shape(
      lambda v: model.apply(v, _x(name), train=True, rngs=_rngs(), mutable=["batch_stats"]),
      variables)
  assert logits.dtype == jnp.float32


def test_bfloat16_nin_runs(small):
  model = models.create("nin", num_classes=10, rectifier="rrelu", dtype=jnp.bfloat16,
                        width=SMALL)
  logits = _jit(lambda v: model.apply(v, _x("nin"), train=False))(small["nin"].variables)
  reference = small["nin"].forward(False, _rngs())[0]
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, reference, rtol=0.1, atol=0.1 * float(jnp.std(reference)))


# ---------------------------------------------------------------- rectifier placement


@pytest.mark.parametrize("name", NAMES)
def test_every_convolution_is_followed_by_the_rectifier(small, name):
  net = small[name]
  outs = net.capture.outputs(net.forward(False, _rngs())[1])
  if name == "nin":
    pre = outs["conv"]
    assert len(pre) == 9
  elif name == "ndsb":
    pre = outs["conv"] + outs["dense"][:2]  # fc3 (the logits) is not rectified
    assert len(outs["conv"]) == 17 and len(outs["dense"]) == 3
  else:
    pre = outs["bn"]  # conv -> BatchNorm -> rectifier
    assert len(outs["conv"]) == len(outs["bn"]) == 8 * 7 + 2 * 5
  post = outs["act"]
  assert len(post) == len(pre)
  # Pair by value: each rectifier output is test-time RReLU, x / 5.5 for x < 0 (paper
  # Eq. 5), of exactly one of the inputs.
  expected = [np.where(p >= 0, p, p / np.float32(5.5)) for p in map(np.asarray, pre)]
  unmatched = list(range(len(pre)))
  for y in post:
    match = next(i for i in unmatched if expected[i].shape == y.shape and np.allclose(
        expected[i], y, rtol=1e-6, atol=0))
    unmatched.remove(match)
  assert not unmatched


def test_nin_rectify_last_false_and_max_pool_option(small):
  variables, x = small["nin"].variables, small["nin"].x
  base = dict(num_classes=10, rectifier="rrelu", width=SMALL)
  off = models.create("nin", rectify_last=False, **base)
  capture = _Capture()
  jax.eval_shape(lambda v: off.apply(v, x, train=False, mutable=["intermediates"],
                                     capture_intermediates=capture), variables)
  kinds = list(capture.kinds.values())
  assert kinds.count("act") == 8 and kinds.count("conv") == 9
  maxed = models.create("nin", second_pool="max", **base)
  logits = _jit(lambda v: maxed.apply(v, x, train=False))(variables)
  assert logits.shape == (2, 10)
  assert not np.allclose(logits, small["nin"].forward(False, _rngs())[0])


def test_kernel_init(small):
  conv2 = small["nin"].variables["params"]["conv2"]
  assert abs(float(jnp.std(conv2["kernel"])) - 0.05) < 0.004
  assert not np.any(conv2["bias"])
  he = models.create("nin", num_classes=10, width=SMALL, kernel_init="he")
  variables = _jit(lambda k: he.init({"params": k}, _x("nin"), train=False))(jax.random.key(1))
  kernel = variables["params"]["conv2"]["kernel"]
  fan_in = math.prod(kernel.shape[:3])
  assert abs(float(jnp.std(kernel)) / math.sqrt(2 / fan_in) - 1) < 0.08


# ---------------------------------------------------------------------- randomness


@pytest.mark.parametrize("name", ["nin", "ndsb", pytest.param("inception_bn", marks=pytest.mark.slow)])
def test_eval_is_deterministic_and_training_uses_both_rngs(small, name):
  net = small[name]
  eval_a = net.forward(False, _rngs(1, 2))[0]
  np.testing.assert_array_equal(eval_a, net.forward(False, _rngs(3, 4))[0])
  # Evaluation draws nothing: it traces without any rngs (Flax raises on a missing one).
  mutable = ["batch_stats"]
  jax.eval_shape(lambda v: net.model.apply(v, net.x, train=False, mutable=mutable), net.variables)

  train = net.forward(True, _rngs(1, 2))[0]
  np.testing.assert_array_equal(train, net.forward(True, _rngs(1, 2))[0])
  assert not np.allclose(train, net.forward(True, _rngs(1, 5))[0])  # the rrelu stream
  other_dropout = net.forward(True, _rngs(5, 2))[0]
  if name == "inception_bn":  # this network has no dropout
    np.testing.assert_array_equal(train, other_dropout)
  else:
    assert not np.allclose(train, other_dropout)
  if name != "inception_bn":
    assert not np.allclose(train, eval_a)


@pytest.mark.parametrize("missing", ["dropout", "rrelu"])
def test_training_without_an_rng_fails(small, missing):
  net = small["nin"]
  rngs = {k: v for k, v in _rngs().items() if k != missing}
  with pytest.raises(Exception, match=missing):
    jax.eval_shape(lambda v: net.model.apply(v, net.x, train=True, rngs=rngs), net.variables)


# ---------------------------------------------------------------------- BatchNorm


@pytest.mark.slow
def test_batch_norm_statistics_change_only_in_training(small):
  net = small["inception_bn"]
  old = net.variables["batch_stats"]
  _, state = net.forward(False, _rngs())
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], old)

  _, state = net.forward(True, _rngs())
  new = state["batch_stats"]
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), old, new)))
  # Running mean <- momentum * old + (1 - momentum) * batch mean, momentum 0.9, old = 0.
  conv_out = state["intermediates"]["in3a_1x1"]["conv"]["__call__"][0]
  np.testing.assert_allclose(new["in3a_1x1"]["bn"]["mean"],
                             0.1 * np.mean(conv_out, axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  with pytest.raises(Exception, match="batch_stats"):  # training must declare it mutable
    jax.eval_shape(lambda v: net.model.apply(v, net.x, train=True, rngs=_rngs()),
                   net.variables)


# ------------------------------------------------------------------------- pooling


def _np_ceil_pool(x: np.ndarray, k: int, s: int, kind: str, count_include_pad=False):
  """Reference loop: Caffe's ceil((n - k) / s) + 1, dropping a window that starts outside."""
  n_out = []
  for n in x.shape[1:3]:
    out = -(-(n - k) // s) + 1 if n >= k else 1
    if (out - 1) * s >= n:
      out -= 1
    n_out.append(out)
  y = np.empty((x.shape[0], *n_out, x.shape[3]), x.dtype)
  for i in range(n_out[0]):
    for j in range(n_out[1]):
      win = x[:, i * s:i * s + k, j * s:j * s + k]
      if kind == "max":
        y[:, i, j] = win.max(axis=(1, 2))
      else:
        y[:, i, j] = win.sum(axis=(1, 2)) / (k * k if count_include_pad else
                                             win.shape[1] * win.shape[2])
  return y


@pytest.mark.parametrize("n,k,s,expected", [(32, 3, 2, 16), (16, 3, 2, 8), (70, 3, 2, 35),
                                            (35, 3, 2, 17), (17, 3, 3, 6), (5, 3, 2, 2),
                                            (2, 3, 2, 1), (7, 2, 3, 3)])
def test_ceil_mode_pooling_matches_reference_loop(n, k, s, expected):
  assert pooling.ceil_mode_size(n, k, s) == expected
  x = np.random.default_rng(n).normal(size=(2, n, n + 1, 3)).astype(np.float32)  # negatives
  pools = _jit(lambda x: (pooling.max_pool_ceil(x, k, s), pooling.pool_ceil(x, "avg", k, s),
                          pooling.avg_pool_ceil(x, k, s, count_include_pad=True)))(x)
  references = (_np_ceil_pool(x, k, s, "max"), _np_ceil_pool(x, k, s, "avg"),
                _np_ceil_pool(x, k, s, "avg", count_include_pad=True))
  assert pools[0].shape[1] == expected
  for got, want in zip(pools, references):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_spp_hand_made_input():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  two = jnp.concatenate([x, -x], axis=-1)
  spp_max, spp_avg, spp_two, spp_wide = _jit(lambda x, two, wide: (
      models.spatial_pyramid_pool(x), models.spatial_pyramid_pool(x, kind="avg"),
      models.spatial_pyramid_pool(two, (1, 2)), models.spatial_pyramid_pool(wide)))(
          x, two, jnp.zeros((2, 4, 4, 256)))
  np.testing.assert_array_equal(spp_max[0], [15, 5, 7, 13, 15, *range(16)])
  np.testing.assert_array_equal(spp_avg[0], [7.5, 2.5, 4.5, 10.5, 12.5, *range(16)])
  # Each level is flattened in (row, column, channel) order.
  np.testing.assert_array_equal(spp_two[0], [15, 0, 5, 0, 7, -2, 13, -8, 15, -10])
  assert spp_wide.shape == (2, 256 * 21) == (2, 5376)


def _np_spp(x: np.ndarray, levels, kind="max") -> np.ndarray:
  """Reference: He et al. 2014's window ceil(a/n), stride floor(a/n), where it gives n bins."""
  feats = []
  for n in levels:
    (h, w) = x.shape[1:3]
    wins = [(math.ceil(a / n), a // n) for a in (h, w)]
    cells = np.empty((x.shape[0], n, n, x.shape[3]))
    for i in range(n):
      for j in range(n):
        cell = x[:, i * wins[0][1]:i * wins[0][1] + wins[0][0],
                 j * wins[1][1]:j * wins[1][1] + wins[1][0]]
        cells[:, i, j] = cell.max(axis=(1, 2)) if kind == "max" else cell.mean(axis=(1, 2))
    feats.append(cells.reshape(x.shape[0], -1))
  return np.concatenate(feats, axis=1)


@pytest.mark.parametrize("h,w", [(4, 4), (8, 12), (13, 13), (16, 9)])
def test_spp_matches_he_et_al_windows(h, w):
  x = np.random.default_rng(h * w).normal(size=(2, h, w, 3)).astype(np.float32)
  got = _jit(lambda x: [models.spatial_pyramid_pool(x, (1, 2, 4), k) for k in ("max", "avg")])(x)
  np.testing.assert_allclose(got[0], _np_spp(x, (1, 2, 4), "max"), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], _np_spp(x, (1, 2, 4), "avg"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_spp_bins_cover_any_size(size):
  # He et al.'s recipe breaks here (7 -> 6 bins for n = 4; size < n); every bin must be
  # non-empty, bins must cover the map, and each level's max over bins is the global max.
  x = np.random.default_rng(size).normal(size=(1, size, size, 2)).astype(np.float32)
  out = np.asarray(_jit(models.spatial_pyramid_pool)(x))
  assert out.shape == (1, 2 * 21)
  level4 = out[0, 2 * 5:].reshape(4, 4, 2)
  np.testing.assert_array_equal(level4.max(axis=(0, 1)), x[0].max(axis=(0, 1)))
  assert set(np.unique(level4)) <= set(np.unique(x))


# ------------------------------------------------------------- convolution gradients


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
  # NumPy draws: jax.random would compile once per shape.
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _lax_and_forward(x: jax.Array, w: jax.Array, **kwargs):
  """[(y, dx, dw)] of `lax.conv_general_dilated` (the reference) and of `models.conv`'s, for a
  random output cotangent; one compile for both."""
  fns = (jax.lax.conv_general_dilated, conv_lib.conv_general_dilated)
  convs = [lambda x, w, f=f: f(x, w, **kwargs) for f in fns]
  g = _normal(jax.eval_shape(convs[0], x, w).shape, seed=2)

  def values_and_vjps(x, w, g):
    return [(y, *vjp(g)) for y, vjp in (jax.vjp(conv, x, w) for conv in convs)]

  return _jit(values_and_vjps)(x, w, g)


# (spatial, in channels, out channels, kernel, padding). In channels >= 16 take the
# forward-convolution kernel gradient, fewer take XLA's (MIN_CHANNELS_FOR_FORWARD_CONV_DW).
@pytest.mark.parametrize("hw,cin,cout,k,pad", [
    (6, 20, 8, 1, (0, 0)),   # 1x1: matrix products
    (5, 24, 7, 3, (1, 1)),   # 3x3 pad 1
    (7, 16, 6, 5, (2, 2)),   # 5x5 pad 2
    (6, 18, 5, 3, (0, 0)),   # 3x3 unpadded (NDSB's conv4_5)
    (6, 3, 8, 5, (2, 2)),    # few input channels (NIN's conv1)
    (4, 17, 6, 2, (0, 1)),   # even kernel, asymmetric padding
    (5, 16, 4, 3, "SAME"),   # string padding
])
def test_forward_conv_grad_matches_lax_values_and_vjp(hw, cin, cout, k, pad):
  assert (cin >= conv_lib.MIN_CHANNELS_FOR_FORWARD_CONV_DW) == (cin != 3)
  x, w = _normal((3, hw, hw, cin), seed=0), _normal((k, k, cin, cout), seed=1)
  reference, got = _lax_and_forward(x, w, window_strides=(1, 1),
                                    padding=pad if isinstance(pad, str) else (pad, pad),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  for name, a, b in zip(("y", "dx", "dw"), got, reference):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=name)


def test_forward_conv_grad_defers_to_lax_for_strided_convolutions():
  x, w = _normal((2, 7, 7, 16), seed=0), _normal((3, 3, 16, 4), seed=1)
  kwargs = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  jaxpr = jax.make_jaxpr(lambda x, w: conv_lib.conv_general_dilated(x, w, **kwargs))(x, w)
  assert [e.primitive.name for e in jaxpr.eqns] == ["conv_general_dilated"]
  reference, got = _lax_and_forward(x, w, **kwargs)
  for a, b in zip(got, reference):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_conv_grad_option_is_validated(name):
  assert "conv_grad" in models.valid_options(name)
  with pytest.raises(ValueError, match=r"conv_grad must be one of \('xla', 'forward'\), "
                                       r"got 'fast'"):
    models.create(name, num_classes=CLASSES[name], conv_grad="fast")


def _custom_vjp_calls(model, variables, name: str) -> int:
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, _x(name), train=False))(variables)
  return sum(e.primitive.name == "custom_vjp_call" for e in jaxpr.eqns)


def test_inception_forward_conv_grad_skips_the_strided_convolutions(full):
  _, variables = full("inception_bn")
  counts = {g: _custom_vjp_calls(models.create("inception_bn", num_classes=100, conv_grad=g),
                                 variables, "inception_bn") for g in ("xla", "forward")}
  assert counts == {"xla": 0, "forward": 8 * 7 + 2 * 5 - 4}  # in3c, in4e: two 3x3/2 each


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nin", "ndsb"])
def test_forward_conv_grad_gives_the_same_logits_and_gradients(small, name):
  net = small[name]
  labels = jnp.arange(2) % CLASSES[name]
  model = {g: models.create(name, num_classes=CLASSES[name], rectifier="rrelu", width=SMALL,
                            conv_grad=g) for g in ("xla", "forward")}
  # Every convolution (all stride 1) takes the custom VJP, so the comparison is not vacuous.
  assert _custom_vjp_calls(net.model, net.variables, name) == 0  # "xla" is the default
  assert _custom_vjp_calls(model["forward"], net.variables, name) == {"nin": 9, "ndsb": 17}[name]

  def loss_and_grads(conv_grad: str):

    def loss(params):  # training mode: dropout and RReLU draw from the same fixed rngs
      logits = model[conv_grad].apply({"params": params}, net.x, train=True, rngs=_rngs())
      log_p = jax.nn.log_softmax(logits)
      return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1)), logits

    return _jit(jax.value_and_grad(loss, has_aux=True))(net.variables["params"])

  (loss_xla, logits_xla), grads_xla = loss_and_grads("xla")
  (loss_fwd, logits_fwd), grads_fwd = loss_and_grads("forward")
  np.testing.assert_allclose(logits_fwd, logits_xla, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss_fwd, loss_xla, rtol=1e-5)
  for path, got in jax.tree_util.tree_leaves_with_path(grads_fwd):
    want = functools.reduce(lambda t, k: t[k.key], path, grads_xla)
    # Summation order differs; relative to each tensor's scale for near-zero entries.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(want))),
                               err_msg=jax.tree_util.keystr(path))


def test_a_config_record_read_from_json_builds_a_hashable_ndsb_net():
  import json  # pylint: disable=g-import-not-at-top
  from configs import ndsb_cpu  # pylint: disable=g-import-not-at-top
  record = json.loads(json.dumps(ndsb_cpu.get_config("relu").to_dict()))  # lists, not tuples
  assert isinstance(record["model_options"]["spp_levels"], list)
  model = models.from_config(record, 121)
  assert model.spp_levels == (1, 2, 4)
  hash(model)  # jit takes the module as a static argument
