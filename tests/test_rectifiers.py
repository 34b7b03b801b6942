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
], ids=["relu", "leaky", "prelu", "rrelu_test", "rrelu_train_divisor", "rrelu_train_slope"])
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

NEG = -jnp.linspace(0.5, 2.0, 40_000, dtype=jnp.float32)  # distinct negative inputs


def implied(y, x=NEG):
  return np.asarray(x, np.float64) / np.asarray(y, np.float64)  # the divisor a = x / y


def test_rrelu_positive_side_is_identity():
  x = jnp.linspace(0.0, 5.0, 101)
  np.testing.assert_array_equal(np.asarray(R.rrelu(x, jax.random.key(3))), np.asarray(x))


def test_rrelu_same_key_same_output_different_keys_differ():
  a = R.rrelu(NEG, jax.random.key(1))
  b = R.rrelu(NEG, jax.random.key(1))
  c = R.rrelu(NEG, jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.mean(np.asarray(a) != np.asarray(c)) > 0.99


def test_rrelu_accepts_typed_and_raw_keys_with_equal_results():
  typed = R.rrelu(NEG[:100], jax.random.key(7))
  raw = R.rrelu(NEG[:100], jax.random.PRNGKey(7))
  np.testing.assert_array_equal(np.asarray(typed), np.asarray(raw))


def test_rrelu_divisor_sampling_draws_divisors_uniform_in_lower_upper():
  a = implied(R.rrelu(NEG, jax.random.key(0), 3.0, 8.0))
  assert 3.0 <= a.min() and a.max() <= 8.0
  assert stats.kstest(a, stats.uniform(3.0, 5.0).cdf).pvalue > 1e-3
  # Uniform divisors are not uniform slopes: the test must tell the two modes apart.
  assert stats.kstest(1 / a, stats.uniform(1 / 8, 1 / 3 - 1 / 8).cdf).pvalue < 1e-6


def test_rrelu_slope_sampling_draws_slopes_uniform_like_pytorch():
  s = 1 / implied(R.rrelu(NEG, jax.random.key(0), 3.0, 8.0, sample="slope"))
  assert 1 / 8 - 1e-6 <= s.min() and s.max() <= 1 / 3 + 1e-6
  assert stats.kstest(s, stats.uniform(1 / 8, 1 / 3 - 1 / 8).cdf).pvalue > 1e-3
  assert stats.kstest(1 / s, stats.uniform(3.0, 5.0).cdf).pvalue < 1e-6


def test_rrelu_mean_training_slope_matches_expected_test_slope():
  s = 1 / implied(R.rrelu(NEG, jax.random.key(4)))
  expected = math.log(8 / 3) / 5
  assert abs(expected - 0.19617) < 1e-5
  # The standard error of the mean of 40k slopes is ~2.6e-4; allow 5 of them.
  assert abs(s.mean() - expected) < 1.3e-3
  assert R.rrelu_test_slope(3.0, 8.0, "divisor", "expected") == pytest.approx(expected, abs=1e-12)


def test_rrelu_noise_shape_shares_one_slope_per_example_and_channel():
  x = -jnp.ones((3, 4, 5, 6), jnp.float32)
  slopes = np.asarray(R.rrelu(x, jax.random.key(5), noise_shape=(3, 1, 1, 6)))
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


def test_rrelu_works_under_jit_and_vmap_over_keys():
  keys = jax.random.split(jax.random.key(0), 3)
  batched = jax.jit(jax.vmap(lambda k: R.rrelu(NEG[:64], k)))(keys)
  for i in range(3):
    np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(R.rrelu(NEG[:64], keys[i])))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("fn", [
    R.relu,
    lambda x: R.leaky_relu(x, 5.5),
    lambda x: R.prelu(x, jnp.full((x.shape[-1],), 0.25)),
    lambda x: R.rrelu(x, jax.random.key(0)),
    lambda x: R.rrelu(x, None, deterministic=True, test_slope="expected"),
], ids=["relu", "leaky", "prelu", "rrelu_train", "rrelu_test"])
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
