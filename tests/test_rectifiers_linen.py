"""The Flax modules and the name registry in `rectifiers.linen`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rectifiers as R
from rectifiers import linen as L

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4)), jnp.float32)


@pytest.mark.parametrize("spec", ["relu", "leaky_relu_100", "leaky_relu_5.5", "rrelu"])
def test_parameter_free_rectifiers_have_no_parameters(spec):
  module = L.rectifier_factory(spec)()
  variables = module.init({"params": jax.random.key(0), "rrelu": jax.random.key(1)}, X,
                          deterministic=False)
  assert jax.tree.leaves(variables) == []


def test_prelu_has_one_slope_per_channel_initialised_at_a_quarter():
  variables = L.PReLU().init(jax.random.key(0), X)
  assert set(variables["params"]) == {"slope"}
  np.testing.assert_array_equal(np.asarray(variables["params"]["slope"]), np.full((4,), 0.25))
  slope = jnp.array([0.0, 0.1, 0.2, 0.3])
  y = L.PReLU().apply({"params": {"slope": slope}}, X)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(R.prelu(X, slope)))


def test_rrelu_module_draws_from_the_rrelu_collection():
  module = L.RReLU()
  a = module.apply({}, X, deterministic=False, rngs={"rrelu": jax.random.key(1)})
  b = module.apply({}, X, deterministic=False, rngs={"rrelu": jax.random.key(1)})
  c = module.apply({}, X, deterministic=False, rngs={"rrelu": jax.random.key(2)})
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  with pytest.raises(Exception, match="rrelu"):
    module.apply({}, X, deterministic=False, rngs={"dropout": jax.random.key(1)})


@pytest.mark.parametrize("impl", ["fast", "exact"])
def test_rrelu_module_impl_selects_the_functional_noise_generator(impl):
  module = L.rectifier_factory(f"rrelu(impl={impl}, sample=slope)")()
  assert module.impl == impl
  key = jax.random.key(3)
  y = module.apply({}, X, deterministic=False, rngs={"rrelu": key})
  # Flax folds the module path into the collection's key; recover the key it used.
  used = {}
  module.apply({}, X, deterministic=False, rngs={"rrelu": key},
               method=lambda m, x, deterministic: used.setdefault("k", m.make_rng("rrelu")))
  np.testing.assert_array_equal(
      np.asarray(y), np.asarray(R.rrelu(X, used["k"], sample="slope", impl=impl)))
  assert L.RReLU().impl == "fast"


def test_rrelu_module_deterministic_needs_no_rng_and_uses_test_slope():
  y = L.RReLU(deterministic=True).apply({}, X)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(R.rrelu(X, None, deterministic=True)))
  y_call = L.RReLU().apply({}, X, deterministic=True)
  np.testing.assert_array_equal(np.asarray(y_call), np.asarray(y))


def test_rrelu_module_broadcast_dims_share_slopes_per_example_and_channel():
  y = L.RReLU(broadcast_dims=(1, 2)).apply({}, -jnp.ones((2, 3, 3, 4)), deterministic=False,
                                           rngs={"rrelu": jax.random.key(0)})
  y = np.asarray(y)
  np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :1, :], y.shape))
  assert len(np.unique(y[:, 0, 0, :])) == 8


@pytest.mark.parametrize("spec,cls,kwargs", [
    ("relu", L.ReLU, {}),
    ("leaky_relu_100", L.LeakyReLU, {"a": 100.0}),
    ("leaky_relu_5.5", L.LeakyReLU, {"a": 5.5}),
    ("prelu", L.PReLU, {}),
    ("rrelu", L.RReLU, {}),
    ("leaky_relu(a=20)", L.LeakyReLU, {"a": 20}),
    ("rrelu(lower=5, upper=10, sample=slope, broadcast_dims=(1, 2))", L.RReLU,
     {"lower": 5, "upper": 10, "sample": "slope", "broadcast_dims": (1, 2)}),
    ("prelu(slope_init=0.1)", L.PReLU, {"slope_init": 0.1}),
])
def test_rectifier_factory_parses_names_and_keyword_calls(spec, cls, kwargs):
  module = L.rectifier_factory(spec)()
  assert type(module) is cls
  for key, value in kwargs.items():
    assert getattr(module, key) == value


def test_paper_settings_all_resolve():
  assert L.PAPER_SETTINGS == ("relu", "leaky_relu_100", "leaky_relu_5.5", "prelu", "rrelu")
  for spec in L.PAPER_SETTINGS:
    L.rectifier_factory(spec)


@pytest.mark.parametrize("spec,match", [
    ("swish", r"no rectifier called 'swish'.*Valid names: relu, leaky_relu, prelu, rrelu"),
    ("rrelu(foo=1)", r"rrelu takes .*not \['foo'\]"),
    ("rrelu(3, 8)", "arguments must be keywords"),
    ("rrelu(lower=", "cannot parse the arguments"),
    ("rrelu(lower=9, upper=8)", "need lower < upper"),
    ("leaky_relu_0", "a must be finite and > 0"),
    ("rrelu(sample=uniform)", "sample must be one of"),
    ("rrelu(impl=philox)", "impl must be one of"),
])
def test_rectifier_factory_rejects_bad_specs_with_a_useful_message(spec, match):
  with pytest.raises(ValueError, match=match):
    L.rectifier_factory(spec)


def test_rectifier_factory_passes_callables_through():
  assert L.rectifier_factory(L.ReLU) is L.ReLU


@pytest.mark.parametrize("spec,reference", [
    ("elu", jax.nn.elu),
    ("elu(alpha=0.5)", lambda x: jax.nn.elu(x, 0.5)),
    ("gelu", lambda x: jax.nn.gelu(x, approximate=False)),
    ("gelu(approximate=True)", lambda x: jax.nn.gelu(x, approximate=True)),
    ("silu", jax.nn.silu),
])
def test_modern_activations_are_jax_nn_and_parameter_free(spec, reference):
  module = L.rectifier_factory(spec)()
  variables = module.init(jax.random.key(0), X, deterministic=False)
  assert jax.tree.leaves(variables) == []
  np.testing.assert_array_equal(np.asarray(module.apply({}, X, deterministic=False)),
                                np.asarray(reference(X)))


def test_exact_gelu_is_x_times_the_normal_cdf():
  from scipy import stats
  x = np.linspace(-4, 4, 17)
  y = L.rectifier_factory("gelu")().apply({}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), x * stats.norm.cdf(x), atol=1e-6)


def test_elu_rejects_a_non_positive_alpha():
  with pytest.raises(ValueError, match="alpha must be finite and > 0"):
    L.rectifier_factory("elu(alpha=-1)")


def test_create_and_default_options_read_like_the_models_registry():
  module = L.create("rrelu", lower=5.0)()
  assert isinstance(module, L.RReLU) and module.lower == 5.0 and module.upper == 8.0
  assert L.default_options("leaky_relu") == {"a": 100.0}
  assert L.rectifier_factory("rrelu(lower=5)").keywords == L.create("rrelu", lower=5).keywords
  with pytest.raises(ValueError, match="Unknown rectifier 'swish'; valid names: relu, "):
    L.create("swish")
  with pytest.raises(ValueError, match="Unknown rectifier 'rleu'; Did you mean 'relu'?"):
    L.create("rleu")
  with pytest.raises(ValueError, match="'leaky_rellu_5.5'.* Did you mean 'leaky_relu_5.5'?"):
    L.parse_spec("leaky_rellu_5.5")
  with pytest.raises(TypeError, match=r"rrelu got unknown option\(s\) \['foo'\]; valid "
                                      r"options: lower, upper"):
    L.create("rrelu", foo=1)
  with pytest.raises(ValueError, match="need lower < upper"):
    L.create("rrelu", lower=9.0)
