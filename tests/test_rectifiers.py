"""The functional rectifiers against numpy, finite differences and their distributions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import rectifiers as R

X = np.array([-3.0, -1.5, -0.25, -1e-3, 0.0, 1e-3, 0.5, 2.0, 7.0], np.float32)
XNZ = X[X != 0]  # points where the finite differences are defined


def np_relu(x):
  return np.where(x >= 0, x, 0).astype(x.dtype)


def np_leaky(x, a):
  # The library rounds 1 / a once (see leaky_relu's docstring); x / a is checked to 1 ulp below.
  return np.where(x >= 0, x, x * np.float32(1 / a)).astype(x.dtype)


def np_prelu(x, slope):
  return np.where(x >= 0, x, np.asarray(slope, x.dtype) * x).astype(x.dtype)


def finite_difference(f, x, eps=1e-3):
  x = np.asarray(x, np.float64)
  return (np.asarray(f(jnp.asarray(x + eps, jnp.float32)), np.float64)
          - np.asarray(f(jnp.asarray(x - eps, jnp.float32)), np.float64)) / (2 * eps)


DETERMINISTIC = {
    "relu": (R.relu, np_relu),
    "leaky_relu_100": (lambda x: R.leaky_relu(x, 100.0), lambda x: np_leaky(x, 100.0)),
    "leaky_relu_5.5": (lambda x: R.leaky_relu(x, 5.5), lambda x: np_leaky(x, 5.5)),
    "prelu_scalar": (lambda x: R.prelu(x, 0.25), lambda x: np_prelu(x, 0.25)),
    "rrelu_test": (lambda x: R.rrelu(x, None, deterministic=True), lambda x: np_leaky(x, 5.5)),
}


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_matches_numpy_reference(name):
  fn, reference = DETERMINISTIC[name]
  np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(X))), reference(X))


@pytest.mark.parametrize("a", [100.0, 5.5, 3.0])
def test_leaky_relu_is_within_one_ulp_of_true_division(a):
  x = np.random.default_rng(0).uniform(-10, 0, size=10_000).astype(np.float32)
  np.testing.assert_array_max_ulp(np.asarray(R.leaky_relu(jnp.asarray(x), a)), x / np.float32(a),
                                  maxulp=1)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_gradient_matches_finite_differences_away_from_zero(name):
  fn, _ = DETERMINISTIC[name]
  grad = jax.vmap(jax.grad(fn))(jnp.asarray(XNZ))
  np.testing.assert_allclose(np.asarray(grad), finite_difference(jax.vmap(fn), XNZ), rtol=2e-3)


@pytest.mark.parametrize("fn", [
    R.relu,
    lambda x: R.leaky_relu(x, 5.5),
    lambda x: R.prelu(x, 0.25),
    lambda x: R.rrelu(x, None, deterministic=True),
    lambda x: R.rrelu(x, jax.random.key(0)),
    lambda x: R.rrelu(x, jax.random.key(0), sample="slope"),
    lambda x: R.rrelu(x, jax.random.key(0), impl="exact"),
    lambda x: R.rrelu(x, jax.random.key(0), sample="slope", impl="exact"),
], ids=["relu", "leaky", "prelu", "rrelu_test", "rrelu_train_divisor", "rrelu_train_slope",
        "rrelu_train_divisor_exact", "rrelu_train_slope_exact"])
def test_zero_is_on_the_identity_side_with_unit_gradient(fn):
  assert float(fn(jnp.float32(0.0))) == 0.0
  assert float(jax.grad(fn)(jnp.float32(0.0))) == 1.0


def test_prelu_per_channel_slope_broadcasts_on_last_axis():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4)), jnp.float32)
  slope = np.array([0.0, 0.1, 0.25, 1.0], np.float32)
  np.testing.assert_array_equal(np.asarray(R.prelu(x, slope)), np_prelu(np.asarray(x), slope))


def test_prelu_gradient_wrt_slope_is_sum_of_negative_inputs():
  x = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)
  g = np.random.default_rng(2).normal(size=(8, 5)).astype(np.float32)
  loss = lambda slope: jnp.sum(R.prelu(jnp.asarray(x), slope) * g)
  expected = np.sum(np.where(x < 0, x * g, 0), axis=0)
  np.testing.assert_allclose(np.asarray(jax.grad(loss)(jnp.full((5,), 0.25))), expected, rtol=1e-5)
  expected_scalar = np.sum(np.where(x < 0, x * g, 0))
  np.testing.assert_allclose(float(jax.grad(loss)(jnp.float32(0.25))), expected_scalar, rtol=1e-5)


# --- RReLU in training mode -------------------------------------------------------------
# Every statistical test runs on both noise generators: "fast" (hashed, custom VJP) and
# "exact" (jax.random.uniform), so that a fast path cannot drift from the reference.

IMPLS = R.functional.RRELU_IMPLS
NEG = -jnp.linspace(0.5, 2.0, 40_000, dtype=jnp.float32)  # distinct negative inputs


def implied(y, x=NEG):
  return np.asarray(x, np.float64) / np.asarray(y, np.float64)  # the divisor a = x / y


def test_rrelu_default_impl_is_fast():
  x, key = NEG[:100], jax.random.key(0)
  np.testing.assert_array_equal(np.asarray(R.rrelu(x, key)),
                                np.asarray(R.rrelu(x, key, impl="fast")))
  assert not np.array_equal(np.asarray(R.rrelu(x, key)), np.asarray(R.rrelu(x, key, impl="exact")))


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_positive_side_is_identity(impl):
  x = jnp.linspace(0.0, 5.0, 101)
  np.testing.assert_array_equal(np.asarray(R.rrelu(x, jax.random.key(3), impl=impl)),
                                np.asarray(x))


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_same_key_same_output_different_keys_differ(impl):
  a = R.rrelu(NEG, jax.random.key(1), impl=impl)
  b = R.rrelu(NEG, jax.random.key(1), impl=impl)
  c = R.rrelu(NEG, jax.random.key(2), impl=impl)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.mean(np.asarray(a) != np.asarray(c)) > 0.99


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_accepts_typed_and_raw_keys_with_equal_results(impl):
  typed = R.rrelu(NEG[:100], jax.random.key(7), impl=impl)
  raw = R.rrelu(NEG[:100], jax.random.PRNGKey(7), impl=impl)
  np.testing.assert_array_equal(np.asarray(typed), np.asarray(raw))


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_divisor_sampling_draws_divisors_uniform_in_lower_upper(impl):
  a = implied(R.rrelu(NEG, jax.random.key(0), 3.0, 8.0, impl=impl))
  assert 3.0 <= a.min() and a.max() <= 8.0
  assert stats.kstest(a, stats.uniform(3.0, 5.0).cdf).pvalue > 1e-3
  # Uniform divisors are not uniform slopes: the test must tell the two modes apart.
  assert stats.kstest(1 / a, stats.uniform(1 / 8, 1 / 3 - 1 / 8).cdf).pvalue < 1e-6


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_slope_sampling_draws_slopes_uniform_like_pytorch(impl):
  s = 1 / implied(R.rrelu(NEG, jax.random.key(0), 3.0, 8.0, sample="slope", impl=impl))
  assert 1 / 8 - 1e-6 <= s.min() and s.max() <= 1 / 3 + 1e-6
  assert stats.kstest(s, stats.uniform(1 / 8, 1 / 3 - 1 / 8).cdf).pvalue > 1e-3
  assert stats.kstest(1 / s, stats.uniform(3.0, 5.0).cdf).pvalue < 1e-6


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_mean_training_slope_matches_expected_test_slope(impl):
  s = 1 / implied(R.rrelu(NEG, jax.random.key(4), impl=impl))
  expected = math.log(8 / 3) / 5
  assert abs(expected - 0.19617) < 1e-5
  # The standard error of the mean of 40k slopes is ~2.6e-4; allow 5 of them.
  assert abs(s.mean() - expected) < 1.3e-3
  assert R.rrelu_test_slope(3.0, 8.0, "divisor", "expected") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_draws_are_uncorrelated_across_neighbours_and_keys(impl):
  # A counter-based hash that mixes badly shows up as correlated neighbours (counters
  # i, i + 1) or as related streams for related keys; 5 standard errors of a correlation.
  u = (implied(R.rrelu(NEG, jax.random.key(0), impl=impl)) - 3.0) / 5.0
  v = (implied(R.rrelu(NEG, jax.random.key(1), impl=impl)) - 3.0) / 5.0
  bound = 5 / math.sqrt(NEG.size)
  for lag in (1, 2, 192):  # 192: the neighbour in the next pixel of a 192-channel map
    assert abs(np.corrcoef(u[:-lag], u[lag:])[0, 1]) < bound
  assert abs(np.corrcoef(u, v)[0, 1]) < bound
  # The two keys' multisets of draws must differ too (not a re-indexed copy).
  assert len(np.intersect1d(u, v)) < 0.01 * u.size


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_noise_shape_shares_one_slope_per_example_and_channel(impl):
  x = -jnp.ones((3, 4, 5, 6), jnp.float32)
  slopes = np.asarray(R.rrelu(x, jax.random.key(5), noise_shape=(3, 1, 1, 6), impl=impl))
  np.testing.assert_array_equal(slopes, np.broadcast_to(slopes[:, :1, :1, :], slopes.shape))
  per_example_channel = slopes[:, 0, 0, :]
  assert len(np.unique(per_example_channel)) == per_example_channel.size


def test_rrelu_deterministic_modes_give_their_constants_exactly():
  x = np.asarray(NEG[:1000])
  np.testing.assert_array_equal(np.asarray(R.rrelu(jnp.asarray(x), None, deterministic=True)),
                                x * np.float32(1 / 5.5))
  expected = np.float32(math.log(8 / 3) / 5)
  np.testing.assert_array_equal(
      np.asarray(R.rrelu(jnp.asarray(x), None, deterministic=True, test_slope="expected")),
      x * expected)
  mean_slope = np.float32((1 / 3 + 1 / 8) / 2)
  for test_slope in ("paper", "expected"):
    np.testing.assert_array_equal(
        np.asarray(R.rrelu(jnp.asarray(x), None, deterministic=True, sample="slope",
                           test_slope=test_slope)), x * mean_slope)


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_works_under_jit_and_vmap_over_keys(impl):
  keys = jax.random.split(jax.random.key(0), 3)
  batched = jax.jit(jax.vmap(lambda k: R.rrelu(NEG[:64], k, impl=impl)))(keys)
  for i in range(3):
    np.testing.assert_array_equal(np.asarray(batched[i]),
                                  np.asarray(R.rrelu(NEG[:64], keys[i], impl=impl)))


# --- RReLU's gradient in training mode ------------------------------------------------------

XG = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5, 6)), jnp.float32)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("sample", R.functional.SAMPLE_MODES)
def test_rrelu_gradient_is_the_slope_actually_used(impl, sample):
  # With a fixed key the noise is a fixed function of position, so dy/dx is the slope
  # y / x on the negative side and 1 on the other, and finite differences agree.
  f = lambda x: R.rrelu(x, jax.random.key(9), sample=sample, impl=impl)
  y, grad = np.asarray(f(XG), np.float64), np.asarray(jax.grad(lambda x: f(x).sum())(XG))
  x = np.asarray(XG, np.float64)
  np.testing.assert_allclose(grad, np.where(x >= 0, 1.0, y / x), rtol=1e-6)
  np.testing.assert_allclose(grad, finite_difference(f, x), rtol=2e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_vector_jacobian_product_with_noise_shape(impl):
  key, g = jax.random.key(2), jax.random.normal(jax.random.key(3), (2, 3, 3, 4))
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 3, 3, 4)), jnp.float32)
  f = lambda x: R.rrelu(x, key, noise_shape=(2, 1, 1, 4), impl=impl)
  y, vjp = jax.vjp(f, x)
  slope = np.asarray(R.rrelu(-jnp.ones((2, 1, 1, 4)), key, noise_shape=(2, 1, 1, 4), impl=impl))
  expected = np.where(np.asarray(x) >= 0, 1.0, -slope) * np.asarray(g)
  np.testing.assert_allclose(np.asarray(vjp(g)[0]), expected, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_rrelu_gradient_keeps_the_input_dtype(impl, dtype):
  x = XG.astype(dtype)
  grad = jax.grad(lambda x: R.rrelu(x, jax.random.key(0), impl=impl).astype(jnp.float32).sum())(x)
  assert grad.dtype == dtype
  y = np.asarray(R.rrelu(x, jax.random.key(0), impl=impl), np.float64)
  slope = np.where(np.asarray(x, np.float64) >= 0, 1.0, y / np.asarray(x, np.float64))
  np.testing.assert_allclose(np.asarray(grad, np.float64), slope, rtol=2e-2)


@pytest.mark.parametrize("impl", IMPLS)
def test_rrelu_gradient_under_jit_and_vmap_equals_eager(impl):
  keys = jax.random.split(jax.random.key(1), 3)
  grad = lambda x, k: jax.grad(lambda x: (R.rrelu(x, k, impl=impl) * XG).sum())(x)
  batched = jax.jit(jax.vmap(grad, in_axes=(None, 0)))(XG, keys)
  for i in range(3):
    np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(grad(XG, keys[i])))


def test_rrelu_fast_stores_no_input_sized_float_tensor_for_the_backward_pass():
  # The residuals of jax.vjp are the leaves of the returned function: the fast path keeps
  # the sign mask (bool) and the seeds; the exact one keeps the float32 noise.
  x = jnp.asarray(np.random.default_rng(5).normal(size=(8, 4, 4, 16)), jnp.float32)
  def residuals(impl):
    _, vjp = jax.vjp(lambda x: R.rrelu(x, jax.random.key(0), impl=impl), x)
    return [leaf for leaf in jax.tree.leaves(vjp) if getattr(leaf, "size", 0) == x.size]
  assert {leaf.dtype for leaf in residuals("fast")} == {jnp.dtype(bool)}
  assert jnp.dtype(jnp.float32) in {leaf.dtype for leaf in residuals("exact")}


SHARDING_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np, rectifiers as R
from jax.sharding import NamedSharding, PartitionSpec as P
assert jax.device_count() == 4, jax.devices()
x = jax.random.normal(jax.random.key(0), (8, 4, 4, 6))
g = jax.random.normal(jax.random.key(1), (8, 4, 4, 6))
mesh = jax.make_mesh((4,), ("data",))
shard = NamedSharding(mesh, P("data"))
for impl in {impls}:
  def step(x, g):
    return jax.value_and_grad(lambda x: (R.rrelu(x, jax.random.key(2), impl=impl) * g).sum())(x)
  y1, g1 = jax.jit(step)(x, g)
  y4, g4 = jax.jit(step)(jax.device_put(x, shard), jax.device_put(g, shard))
  assert len(g4.sharding.device_set) == 4
  y0 = R.rrelu(x, jax.random.key(2), impl=impl)
  y0s = jax.jit(lambda x: R.rrelu(x, jax.random.key(2), impl=impl))(jax.device_put(x, shard))
  np.testing.assert_array_equal(np.asarray(y0), np.asarray(y0s))
  np.testing.assert_array_equal(np.asarray(g1), np.asarray(g4))
  np.testing.assert_allclose(float(y1), float(y4), rtol=1e-5)
print("ok")
"""


def test_rrelu_noise_does_not_depend_on_how_the_batch_is_sharded():
  # The train step is jit over a mesh with the batch sharded: an example's noise must be
  # the same on 1 device and on 4 (fake CPU devices need a fresh process).
  import os
  import subprocess
  import sys
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
  result = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT.format(impls=IMPLS)], env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("fn", [
    R.relu,
    lambda x: R.leaky_relu(x, 5.5),
    lambda x: R.prelu(x, jnp.full((x.shape[-1],), 0.25)),
    lambda x: R.rrelu(x, jax.random.key(0)),
    lambda x: R.rrelu(x, jax.random.key(0), impl="exact"),
    lambda x: R.rrelu(x, None, deterministic=True, test_slope="expected"),
], ids=["relu", "leaky", "prelu", "rrelu_train", "rrelu_train_exact", "rrelu_test"])
def test_output_dtype_equals_input_dtype(fn, dtype):
  x = jnp.asarray(X.reshape(3, 3), dtype)
  assert fn(x).dtype == dtype


# --- Bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("a", [0.0, -1.0, float("nan"), float("inf")])
def test_leaky_relu_rejects_non_positive_or_non_finite_a(a):
  with pytest.raises(ValueError, match=r"a must be finite and > 0, got"):
    R.leaky_relu(jnp.asarray(X), a)


@pytest.mark.parametrize("lower,upper,match", [
    (8.0, 3.0, "need lower < upper"), (3.0, 3.0, "need lower < upper"),
    (0.0, 8.0, "lower must be finite and > 0"), (-1.0, 8.0, "lower must be finite and > 0"),
    (3.0, float("inf"), "upper must be finite and > 0"),
])
def test_rrelu_rejects_bad_bounds(lower, upper, match):
  with pytest.raises(ValueError, match=match):
    R.rrelu(jnp.asarray(X), jax.random.key(0), lower, upper)


def test_rrelu_rejects_unknown_sample_and_test_slope():
  with pytest.raises(ValueError, match=r"sample must be one of \('divisor', 'slope'\), got 'uniform'"):
    R.rrelu(jnp.asarray(X), jax.random.key(0), sample="uniform")
  with pytest.raises(ValueError, match=r"test_slope must be one of .*got 'mean'"):
    R.rrelu(jnp.asarray(X), None, deterministic=True, test_slope="mean")


def test_rrelu_rejects_noise_shape_that_does_not_broadcast():
  x = jnp.ones((2, 3, 3, 4))
  for bad in [(2, 3, 3), (2, 2, 1, 4), (1, 1, 1, 5)]:
    with pytest.raises(ValueError, match=r"noise_shape .* does not broadcast to x.shape \(2, 3, 3, 4\)"):
      R.rrelu(x, jax.random.key(0), noise_shape=bad)


def test_rrelu_rejects_unknown_impl():
  with pytest.raises(ValueError, match=r"impl must be one of \('fast', 'exact'\), got 'philox'"):
    R.rrelu(jnp.asarray(X), jax.random.key(0), impl="philox")


def test_rrelu_requires_key_in_training_mode():
  with pytest.raises(ValueError, match="key is None but deterministic=False"):
    R.rrelu(jnp.asarray(X), None)
  with pytest.raises(TypeError, match="key must be a PRNG key"):
    R.rrelu(jnp.asarray(X), 0)


@pytest.mark.parametrize("fn", [
    R.relu, lambda x: R.leaky_relu(x), lambda x: R.prelu(x, 0.25),
    lambda x: R.rrelu(x, jax.random.key(0)),
], ids=["relu", "leaky", "prelu", "rrelu"])
def test_integer_inputs_are_rejected(fn):
  with pytest.raises(TypeError, match=r"x must have a floating dtype .* got int32"):
    fn(jnp.arange(4, dtype=jnp.int32))


def test_prelu_rejects_slope_of_wrong_shape():
  with pytest.raises(ValueError, match=r"slope must have shape \(\) or \(C,\) with C = x.shape\[-1\] = 4, got shape \(3,\)"):
    R.prelu(jnp.ones((2, 4)), jnp.ones((3,)))


@pytest.mark.parametrize("fn", [
    R.relu, lambda x: R.leaky_relu(x, 5.5), lambda x: R.prelu(x, 0.25),
    lambda x: R.rrelu(x, jax.random.key(0)),
    lambda x: R.rrelu(x, None, deterministic=True),
], ids=["relu", "leaky", "prelu", "rrelu_train", "rrelu_test"])
def test_nan_stays_nan_like_jax_nn_relu(fn):
  x = jnp.asarray([np.nan, -1.0, 0.0, 2.0], jnp.float32)
  y = np.asarray(fn(x))
  assert np.isnan(y[0]) and np.isnan(np.asarray(jax.nn.relu(x))[0])
  assert np.all(np.isfinite(y[1:]))


@pytest.mark.parametrize("a,match", [
    (np.array([0.0, 2.0, 3.0], np.float32), r"a must be finite and > 0 everywhere, got \[0.0\]"),
    (np.array([2.0, np.inf, 3.0], np.float32), r"a must be finite and > 0 everywhere, got \[inf\]"),
    (np.ones((2,), np.float32), r"a must have shape \(\) or \(C,\) with C = x.shape\[-1\] = 3, got shape \(2,\)"),
    (np.ones((3, 3), np.float32), r"a must have shape \(\) or \(C,\) .* got shape \(3, 3\)"),
])
def test_leaky_relu_checks_an_array_divisor(a, match):
  with pytest.raises(ValueError, match=match):
    R.leaky_relu(-jnp.ones((2, 3)), jnp.asarray(a))


def test_leaky_relu_takes_a_per_channel_divisor_and_vmaps_over_it():
  x = -jnp.ones((2, 3))
  np.testing.assert_allclose(R.leaky_relu(x, jnp.asarray([1.0, 2.0, 4.0])),
                             np.tile([-1.0, -0.5, -0.25], (2, 1)))
  out = jax.vmap(lambda a: R.leaky_relu(x, a))(jnp.asarray([2.0, 4.0]))
  np.testing.assert_allclose(out[:, 0, 0], [-0.5, -0.25])
