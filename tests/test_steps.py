"""training/steps.py: the train and evaluation steps against independent references (one
SGD step by hand, numpy's log-loss), the step keys, the metric sums and the jitted forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from input_pipeline import augment
from training import builder, steps


class TinyNet(nn.Module):
  """Dense -> tanh -> Dense on flattened images: no BatchNorm, no noise."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = jnp.tanh(nn.Dense(5)(x.reshape((x.shape[0], -1))))
    return nn.Dense(3)(x)


NO_AUGMENTATION = augment.AugmentConfig()
SCALE = 1 / 255


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8),
           "label": rng.integers(0, 3, 8).astype(np.int32),
           "mask": np.array([1] * 6 + [0] * 2, bool)}
  mean_image = rng.uniform(0, 255, (4, 4, 1)).astype(np.float32)
  tx = optax.sgd(0.5)
  state = steps.create_train_state(TinyNet(), (4, 4, 1), tx, jax.random.key(3))
  return batch, mean_image, tx, state


def test_kaggle_log_loss_clips_renormalises_and_matches_numpy():
  logits = np.array([[0.0, 1.0, 2.0], [80.0, -80.0, 0.0]], np.float32)
  labels = np.array([2, 1])
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p = np.clip(p, 1e-15, 1 - 1e-15)
  p /= p.sum(1, keepdims=True)
  expected = -np.log(p[np.arange(2), labels])
  got = np.asarray(steps.kaggle_log_loss(jnp.asarray(logits), jnp.asarray(labels)))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert got[1] == pytest.approx(-np.log(1e-15), rel=1e-4)  # finite, not inf


def test_step_keys_depend_on_the_seed_and_step_only_and_streams_differ():
  a = steps.step_keys(jax.random.key(0), jnp.int32(7))
  b = steps.step_keys(jax.random.key(0), jnp.int32(7))
  c = steps.step_keys(jax.random.key(0), jnp.int32(8))
  data = {k: jax.random.key_data(v) for k, v in a.items()}
  assert all(np.array_equal(data[k], jax.random.key_data(b[k])) for k in a)
  assert not any(np.array_equal(data[k], jax.random.key_data(c[k])) for k in a)
  assert len({tuple(np.asarray(v).ravel()) for v in data.values()}) == len(data)


def test_train_step_is_one_sgd_step_on_the_mean_cross_entropy(problem):
  batch, mean_image, tx, state = problem
  new, metrics = steps.train_step(state, batch, jax.random.key(1), mean_image, model=TinyNet(),
                                  tx=tx, augment_config=NO_AUGMENTATION, input_scale=SCALE)
  images = (batch["image"].astype(np.float32) - mean_image) * SCALE

  def mean_loss(params):
    logits = TinyNet().apply({"params": params}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  grads = jax.grad(mean_loss)(state.params)
  expected = jax.tree.map(lambda p, g: p - 0.5 * g, state.params, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               new.params, expected)
  assert int(new.step) == 1
  # Sums over the whole batch (training batches carry no padding).
  assert float(metrics["loss"]) == pytest.approx(8 * float(mean_loss(state.params)), rel=1e-5)
  assert float(metrics["count"]) == 8
  assert int(metrics["first_nonfinite_step"]) == np.iinfo(np.int32).max


def test_eval_step_sums_error_and_log_loss_over_unmasked_examples_only(problem):
  batch, mean_image, _, state = problem
  out = steps.eval_step(state, batch, mean_image, model=TinyNet(),
                        augment_config=NO_AUGMENTATION, input_scale=SCALE)
  images = (batch["image"].astype(np.float32) - mean_image) * SCALE
  logits = np.asarray(TinyNet().apply({"params": state.params}, images))
  keep = batch["mask"]
  losses = np.asarray(steps.kaggle_log_loss(jnp.asarray(logits), jnp.asarray(batch["label"])))
  assert float(out["count"]) == keep.sum() == 6
  assert float(out["loss"]) == pytest.approx(losses[keep].sum(), rel=1e-5)
  assert float(out["errors"]) == (logits.argmax(1) != batch["label"])[keep].sum()


def test_metric_sums_add_and_keep_the_first_nonfinite_step():
  total = steps.zero_metrics()
  for loss, step in ((1.5, np.iinfo(np.int32).max), (2.0, 4), (0.5, 9)):
    total = steps.add_metrics(total, {"loss": np.float32(loss), "errors": np.int32(1),
                                      "count": np.float32(2),
                                      "first_nonfinite_step": np.int32(step)})
  assert float(total["loss"]) == 4.0 and int(total["errors"]) == 3
  assert float(total["count"]) == 6 and int(total["first_nonfinite_step"]) == 4


def test_a_nonfinite_loss_names_its_step(problem):
  batch, mean_image, tx, state = problem
  state = state.replace(step=jnp.int32(11),
                        params=jax.tree.map(lambda p: p * np.nan, state.params))
  _, metrics = steps.train_step(state, batch, jax.random.key(1), mean_image, model=TinyNet(),
                                tx=tx, augment_config=NO_AUGMENTATION, input_scale=SCALE)
  assert int(metrics["first_nonfinite_step"]) == 11


def test_the_jitted_steps_over_a_mesh_equal_the_plain_functions(problem):
  batch, mean_image, tx, state = problem
  mesh = builder.mesh_over(jax.devices()[:1])
  options = dict(model=TinyNet(), augment_config=NO_AUGMENTATION, input_scale=SCALE)
  plain, _ = steps.train_step(state, batch, jax.random.key(1), mean_image, tx=tx, **options)
  plain_eval = steps.eval_step(state, batch, mean_image, **options)
  jitted_eval = steps.jit_eval_step(mesh, **options)(state, batch, mean_image)
  # The jitted train step donates its state: give it a copy.
  jitted, _ = steps.jit_train_step(mesh, tx, **options)(
      jax.tree.map(jnp.copy, state), batch, jax.random.key(1), mean_image)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jitted.params, plain.params)
  for k in ("loss", "errors", "count"):
    assert float(jitted_eval[k]) == pytest.approx(float(plain_eval[k]), rel=1e-5)
