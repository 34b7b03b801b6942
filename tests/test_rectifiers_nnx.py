"""The Flax NNX modules in `rectifiers.nnx` against the functional form, the linen modules and
closed forms: outputs, gradients, NNX transforms, state, train/eval, and the shared registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from rectifiers import functional as F
from rectifiers import linen as L
from rectifiers import nnx as N

C = 4
# One exact 0, where every rectifier's derivative is 1 (the identity side).
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, C)), jnp.float32)
X = X.at[0, 0, 0, 0].set(0.0)
W = jnp.asarray(np.random.default_rng(1).normal(size=X.shape), jnp.float32)  # a loss's weights
SLOPES = jnp.array([0.0, 0.1, 0.2, 0.3], jnp.float32)  # PReLU's, away from the initial 0.25


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


# spec -> (functional form, closed-form reference in float64 numpy).
DETERMINISTIC = {
    "relu": (F.relu, lambda x: np.where(x >= 0, x, 0.0)),
    "leaky_relu_100": (lambda x: F.leaky_relu(x, 100.0), lambda x: np.where(x >= 0, x, x / 100)),
    "leaky_relu_5.5": (lambda x: F.leaky_relu(x, 5.5), lambda x: np.where(x >= 0, x, x / 5.5)),
    "prelu": (lambda x: F.prelu(x, SLOPES),
              lambda x: np.where(x >= 0, x, np.asarray(SLOPES, np.float64) * x)),
    "elu(alpha=0.5)": (lambda x: jax.nn.elu(x, 0.5),
                       lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    "gelu": (lambda x: jax.nn.gelu(x, approximate=False), lambda x: x * stats.norm.cdf(x)),
    "gelu(approximate=True)": (lambda x: jax.nn.gelu(x, approximate=True), _gelu_tanh),
    "silu": (jax.nn.silu, lambda x: x / (1 + np.exp(-x))),
}


def _nnx(spec, **kwargs):
  """The NNX module of `spec`, built as a model builds any rectifier; PReLU gets SLOPES."""
  module = N.rectifier_factory(spec)(C, rngs=nnx.Rngs(params=0, rrelu=1), **kwargs)
  if isinstance(module, N.PReLU):
    module.slope[...] = SLOPES
  return module


def _linen(spec):
  """The linen module of `spec` and its variables (PReLU: SLOPES)."""
  module = L.rectifier_factory(spec)()
  return module, ({"params": {"slope": SLOPES}} if spec == "prelu" else {})


def _input_grad(f):
  return jax.grad(lambda x: jnp.sum(f(x) * W))(X)


def _linen_rrelu_key(module, key):
  # Flax linen folds the module path into the collection's key; recover the key it uses.
  return module.apply({}, X, deterministic=False, rngs={"rrelu": key},
                      method=lambda m, x, deterministic: m.make_rng("rrelu"))


# --- Outputs and gradients -----------------------------------------------------------------


@pytest.mark.parametrize("spec", DETERMINISTIC)
def test_deterministic_modules_equal_functional_and_linen_outputs_and_input_gradients(spec):
  functional, reference = DETERMINISTIC[spec]
  module = _nnx(spec)
  linen, variables = _linen(spec)
  y = np.asarray(module(X))
  np.testing.assert_array_equal(y, np.asarray(functional(X)))
  np.testing.assert_array_equal(y, np.asarray(linen.apply(variables, X)))
  np.testing.assert_allclose(y, reference(np.asarray(X, np.float64)), rtol=1e-6, atol=1e-6)

  g = np.asarray(_input_grad(module))
  np.testing.assert_array_equal(g, np.asarray(_input_grad(functional)))
  np.testing.assert_array_equal(g, np.asarray(_input_grad(lambda x: linen.apply(variables, x))))


def test_rectifiers_have_derivative_one_at_zero_like_the_functional_form():
  for spec in ("relu", "leaky_relu_5.5", "prelu"):
    assert float(_input_grad(_nnx(spec))[0, 0, 0, 0]) == float(W[0, 0, 0, 0])


def test_prelu_slope_gradient_is_the_channel_sum_of_negative_inputs_as_in_functional_and_linen():
  module = _nnx("prelu")
  grads = nnx.grad(lambda m: jnp.sum(m(X) * W))(module)
  g = np.asarray(grads.slope[...])
  x, w = np.asarray(X, np.float64), np.asarray(W, np.float64)
  np.testing.assert_allclose(g, np.sum(np.where(x < 0, x * w, 0.0), axis=(0, 1, 2)), rtol=1e-5)
  np.testing.assert_array_equal(
      g, np.asarray(jax.grad(lambda s: jnp.sum(F.prelu(X, s) * W))(SLOPES)))
  linen, variables = _linen("prelu")
  linen_grads = jax.grad(lambda v: jnp.sum(linen.apply(v, X) * W))(variables)
  np.testing.assert_array_equal(g, np.asarray(linen_grads["params"]["slope"]))


@pytest.mark.parametrize("impl", ["fast", "exact"])
@pytest.mark.parametrize("sample", ["divisor", "slope"])
def test_rrelu_draws_with_fold_in_of_its_forked_stream_key_like_the_functional_form(impl, sample):
  # nnx.Rngs(rrelu=7) keys its stream jax.random.key(7); the module forks it, keeping the key
  # fold_in(key(7), 0), and its n-th call draws with fold_in(that key, n).
  module = N.RReLU(C, impl=impl, sample=sample, rngs=nnx.Rngs(rrelu=7))
  forked = jax.random.fold_in(jax.random.key(7), 0)
  for n in range(2):
    expected = F.rrelu(X, jax.random.fold_in(forked, n), impl=impl, sample=sample)
    np.testing.assert_array_equal(np.asarray(module(X)), np.asarray(expected))
  assert int(module.rngs.count[...]) == 2


@pytest.mark.parametrize("impl", ["fast", "exact"])
def test_rrelu_with_the_same_key_equals_functional_and_linen_outputs_and_input_gradients(impl):
  key = jax.random.key(3)
  module = N.RReLU(C, impl=impl)
  linen = L.RReLU(impl=impl)
  linen_key = _linen_rrelu_key(linen, key)
  y = np.asarray(module(X, rngs=key))
  np.testing.assert_array_equal(y, np.asarray(F.rrelu(X, key, impl=impl)))
  np.testing.assert_array_equal(
      np.asarray(module(X, rngs=linen_key)),
      np.asarray(linen.apply({}, X, deterministic=False, rngs={"rrelu": key})))
  # Independent of the implementation: y = x on the identity side, y = x / a with a in
  # [3, 8] on the other, and the gradient is the factor applied, y / x.
  x = np.asarray(X)
  assert np.array_equal(y[x >= 0], x[x >= 0])
  assert np.all((y[x < 0] / x[x < 0] >= 1 / 8 - 1e-6) & (y[x < 0] / x[x < 0] <= 1 / 3 + 1e-6))

  g = np.asarray(_input_grad(lambda v: module(v, rngs=key)))
  np.testing.assert_array_equal(g, np.asarray(_input_grad(lambda v: F.rrelu(v, key, impl=impl))))
  np.testing.assert_array_equal(
      np.asarray(_input_grad(lambda v: module(v, rngs=linen_key))),
      np.asarray(_input_grad(lambda v: linen.apply({}, v, deterministic=False,
                                                   rngs={"rrelu": key}))))
  w = np.asarray(W)
  np.testing.assert_allclose(g[x < 0], (y[x < 0] / x[x < 0]) * w[x < 0], rtol=1e-5)


def test_rrelu_broadcast_dims_share_draws_like_the_functional_noise_shape_and_linen():
  key = jax.random.key(4)
  module = N.rectifier_factory("rrelu(broadcast_dims=(1, 2))")(C)
  y = np.asarray(module(X, rngs=key))
  np.testing.assert_array_equal(y, np.asarray(F.rrelu(X, key, noise_shape=(2, 1, 1, C))))
  linen = L.RReLU(broadcast_dims=(1, 2))
  np.testing.assert_array_equal(
      np.asarray(module(X, rngs=_linen_rrelu_key(linen, key))),
      np.asarray(linen.apply({}, X, deterministic=False, rngs={"rrelu": key})))
  assert F.broadcast_noise_shape((2, 3, 3, C), (-3, -2)) == [2, 1, 1, C]


@pytest.mark.parametrize("test_slope,slope", [("paper", 1 / 5.5), ("expected", np.log(8 / 3) / 5)])
def test_rrelu_test_mode_equals_functional_linen_and_the_closed_form_slope(test_slope, slope):
  module = N.RReLU(C, test_slope=test_slope, deterministic=True)
  y = np.asarray(module(X))
  np.testing.assert_array_equal(
      y, np.asarray(F.rrelu(X, None, deterministic=True, test_slope=test_slope)))
  np.testing.assert_array_equal(
      y, np.asarray(L.RReLU(test_slope=test_slope).apply({}, X, deterministic=True)))
  x = np.asarray(X, np.float64)
  np.testing.assert_allclose(y, np.where(x >= 0, x, slope * x), rtol=1e-6)


# --- NNX transforms and state --------------------------------------------------------------


@pytest.mark.parametrize("spec", [*DETERMINISTIC, "rrelu"])
def test_modules_under_nnx_jit_equal_the_eager_call_and_rrelu_advances_its_stream(spec):
  eager, jitted = _nnx(spec), _nnx(spec)
  call = nnx.jit(lambda m, x: m(x))
  # The paper's four agree bit for bit; jax.nn's smooth ones to an ulp (XLA fuses their
  # transcendental functions differently in a jit).
  smooth = spec.startswith(("elu", "gelu", "silu"))
  for _ in range(2):  # RReLU: the stream's count comes out of the jit, so draws differ per call
    np.testing.assert_allclose(np.asarray(call(jitted, X)), np.asarray(eager(X)),
                               rtol=1e-6 if smooth else 0, atol=1e-7 if smooth else 0)
  if spec == "rrelu":
    assert int(jitted.rngs.count[...]) == 2


def test_rrelu_input_gradient_under_nnx_jit_and_grad_uses_the_streams_next_key():
  module = N.RReLU(C, rngs=nnx.Rngs(rrelu=7))
  forked = jax.random.fold_in(jax.random.key(7), 0)
  grad = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) * W), argnums=1))
  for n in range(2):
    expected = _input_grad(lambda v: F.rrelu(v, jax.random.fold_in(forked, n)))
    np.testing.assert_array_equal(np.asarray(grad(module, X)), np.asarray(expected))


def test_modules_under_nnx_vmap_equal_jax_vmap_of_the_functional_form():
  prelu = _nnx("prelu")
  mapped = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(prelu, X)
  np.testing.assert_array_equal(np.asarray(mapped),
                                np.asarray(jax.vmap(lambda x: F.prelu(x, SLOPES))(X)))
  # RReLU with one key per example, given to the call.
  keys = jax.random.split(jax.random.key(5), X.shape[0])
  rrelu = N.RReLU(C)
  mapped = nnx.vmap(lambda m, x, k: m(x, rngs=k), in_axes=(None, 0, 0))(rrelu, X, keys)
  np.testing.assert_array_equal(np.asarray(mapped), np.asarray(jax.vmap(F.rrelu)(X, keys)))


@pytest.mark.parametrize("spec", [*DETERMINISTIC, "rrelu(lower=5, upper=10, sample=slope)"])
def test_split_and_merge_rebuild_an_equal_module(spec):
  module, twin = _nnx(spec), _nnx(spec)
  graphdef, state = nnx.split(module)
  copy = nnx.merge(graphdef, state)
  assert type(copy) is type(module)
  # RReLU: the copy continues the stream from the same key and count as an untouched twin.
  for _ in range(2):
    np.testing.assert_array_equal(np.asarray(copy(X)), np.asarray(twin(X)))
  if isinstance(module, N.PReLU):
    np.testing.assert_array_equal(np.asarray(state["slope"][...]), np.asarray(SLOPES))


@pytest.mark.parametrize("spec", [*DETERMINISTIC, "rrelu"])
def test_param_state_holds_prelus_slopes_and_nothing_for_the_others(spec):
  params = nnx.state(_nnx(spec), nnx.Param)
  if spec == "prelu":
    assert list(params.keys()) == ["slope"]
    np.testing.assert_array_equal(np.asarray(params["slope"][...]), np.asarray(SLOPES))
  else:
    assert jax.tree.leaves(params) == []


def test_prelu_slopes_have_one_per_channel_or_one_shared_initialised_at_a_quarter():
  per_channel = N.PReLU(C)
  np.testing.assert_array_equal(np.asarray(per_channel.slope[...]), np.full((C,), 0.25))
  assert per_channel.slope[...].dtype == jnp.float32
  shared = N.PReLU(None, slope_init=0.1, param_dtype=jnp.bfloat16)
  assert shared.slope[...].shape == () and shared.slope[...].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(shared(X)), np.asarray(F.prelu(X, shared.slope[...])))
  with pytest.raises(ValueError, match=r"slope must have shape \(\) or \(C,\) with C = "
                                       r"x.shape\[-1\] = 4, got shape \(3,\)"):
    N.PReLU(3)(X)


# --- Train and test mode -------------------------------------------------------------------


class _Net(nnx.Module):
  """A model that holds its rectifier, as a network would."""

  def __init__(self, rectifier, rngs):
    self.act = N.rectifier_factory(rectifier)(C, rngs=rngs)

  def __call__(self, x):
    return self.act(x)


def test_eval_and_train_switch_rrelu_between_the_test_slope_and_random_slopes():
  model = _Net("rrelu", nnx.Rngs(rrelu=7))
  forked = jax.random.fold_in(jax.random.key(7), 0)
  test_mode = np.asarray(F.rrelu(X, None, deterministic=True))
  call = nnx.jit(lambda m, x: m(x))
  assert model.act.deterministic is False  # built for training, as nnx.Dropout is
  model.eval()
  assert model.act.deterministic is True
  np.testing.assert_array_equal(np.asarray(call(model, X)), test_mode)
  model.train()
  assert model.act.deterministic is False
  np.testing.assert_array_equal(np.asarray(call(model, X)),
                                np.asarray(F.rrelu(X, jax.random.fold_in(forked, 0))))
  # A call's deterministic overrides the module's; nnx.view gives a test-mode view.
  np.testing.assert_array_equal(np.asarray(model.act(X, deterministic=True)), test_mode)
  np.testing.assert_array_equal(np.asarray(nnx.view(model, deterministic=True)(X)), test_mode)
  assert model.act.deterministic is False


def test_training_rrelu_without_a_stream_raises_a_value_error_naming_the_fix():
  module = N.RReLU(C)
  with pytest.raises(ValueError, match=r"no 'rrelu' rng stream: build it with "
                                       r"rngs=nnx.Rngs\(rrelu=seed\).*model.eval\(\)"):
    module(X)
  module(X, deterministic=True)  # test mode needs no stream
  module.eval()
  module(X)
  with pytest.raises(ValueError, match=r"deterministic is None"):
    N.RReLU(C, deterministic=None)(X)
  with pytest.raises(ValueError, match=r"has no 'rrelu' stream and no 'default' one \(its "
                                       r"streams: params\).*nnx.Rngs\(params=0, rrelu=1\)"):
    N.RReLU(C, rngs=nnx.Rngs(params=0))
  with pytest.raises(TypeError, match="rngs must be an nnx.Rngs, an nnx.RngStream or a "):
    N.RReLU(C)(X, rngs=7)
  # Like every NNX layer, RReLU falls back on the Rngs' default stream.
  np.testing.assert_array_equal(
      np.asarray(N.RReLU(C, rngs=nnx.Rngs(7))(X)),
      np.asarray(F.rrelu(X, jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 0), 0))))


# --- The registry: the names, specs, options and errors of linen ----------------------------


@pytest.mark.parametrize("spec", [
    "relu", "leaky_relu_100", "leaky_relu_5.5", "prelu", "rrelu", "elu", "gelu", "silu",
    "leaky_relu(a=20)", "rrelu(lower=5, upper=10, sample=slope, broadcast_dims=(1, 2))",
    "prelu(slope_init=0.1)", "gelu(approximate=True)",
])
def test_rectifier_factory_reads_linens_specs_into_the_same_class_and_options(spec):
  nnx_factory, linen_factory = N.rectifier_factory(spec), L.rectifier_factory(spec)
  name = next(k for k, v in L.RECTIFIERS.items() if v is linen_factory.func)
  assert nnx_factory.func is N.RECTIFIERS[name]
  assert nnx_factory.keywords == linen_factory.keywords
  assert N.create(name, **nnx_factory.keywords).keywords == nnx_factory.keywords
  module = nnx_factory(C)
  for key, value in nnx_factory.keywords.items():
    if key == "slope_init":
      np.testing.assert_array_equal(np.asarray(module.slope[...]), np.full((C,), value, np.float32))
    else:
      assert getattr(module, key) == value


def test_names_and_options_are_linens_with_nnx_dropouts_training_default():
  assert list(N.RECTIFIERS) == list(L.RECTIFIERS)
  assert N.PAPER_SETTINGS == L.PAPER_SETTINGS
  for name in N.RECTIFIERS:
    nnx_options, linen_options = N.default_options(name), L.default_options(name)
    if name == "rrelu":
      assert nnx_options.pop("deterministic") is False
      assert linen_options.pop("deterministic") is None
    assert nnx_options == linen_options
  for spec in N.PAPER_SETTINGS + ("elu", "gelu", "silu"):
    N.rectifier_factory(spec)(C)
  assert N.rectifier_factory(N.ReLU) is N.ReLU


@pytest.mark.parametrize("spec", [
    "swish", "rrelu(foo=1)", "rrelu(3, 8)", "rrelu(lower=", "rrelu(lower=9, upper=8)",
    "leaky_relu_0", "rrelu(sample=uniform)", "rrelu(impl=philox)", "elu(alpha=-1)",
    "relu(num_channels=4)", "rrelu(rngs=1)",
])
def test_bad_specs_are_rejected_with_linens_message(spec):
  with pytest.raises(ValueError) as linen_error:
    L.rectifier_factory(spec)
  with pytest.raises(ValueError) as nnx_error:
    N.rectifier_factory(spec)
  assert str(nnx_error.value) == str(linen_error.value)


@pytest.mark.parametrize("name,options,error", [
    ("swish", {}, ValueError), ("rrelu", {"foo": 1}, TypeError), ("relu", {"a": 2}, TypeError),
    ("rrelu", {"lower": 9.0}, ValueError), ("leaky_relu", {"a": float("inf")}, ValueError),
])
def test_create_rejects_what_linens_create_rejects_with_the_same_message(name, options, error):
  with pytest.raises(error) as linen_error:
    L.create(name, **options)
  with pytest.raises(error) as nnx_error:
    N.create(name, **options)
  assert str(nnx_error.value) == str(linen_error.value)


@pytest.mark.parametrize("build,error,match", [
    (lambda: N.LeakyReLU(a=0.0), ValueError, "leaky_relu: a must be finite and > 0, got 0.0"),
    (lambda: N.ELU(alpha=-1.0), ValueError, "elu: alpha must be finite and > 0"),
    (lambda: N.RReLU(lower=9.0), ValueError, "need lower < upper, got lower=9.0, upper=8.0"),
    (lambda: N.RReLU(test_slope="mean"), ValueError, "test_slope must be one of"),
    (lambda: N.PReLU(0), ValueError, "num_channels must be >= 1, got 0"),
    (lambda: N.PReLU(4.0), TypeError, "num_channels must be an int .* got 4.0"),
    (lambda: N.RReLU(rngs=jax.random.key(0)), TypeError, "rngs must be an nnx.Rngs, an "
                                                         "nnx.RngStream or None"),
])
def test_constructors_reject_bad_options_with_the_functional_checks_messages(build, error, match):
  with pytest.raises(error, match=match):
    build()
