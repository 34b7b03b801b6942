"""training/divergence: a non-finite number anywhere stops a run, with the way on."""

import numpy as np
import pytest

from training import checkpoints, divergence, records


def test_all_finite_finds_a_nan_or_an_infinity_anywhere_in_a_tree():
  assert bool(divergence.all_finite({"a": np.ones(3), "b": (np.int32(1), np.zeros(2))}))
  assert not bool(divergence.all_finite({"a": np.ones(3), "b": np.array([0.0, np.inf])}))
  assert not bool(divergence.all_finite([np.array(np.nan, np.float32)]))


def test_all_finite_agrees_with_numpy_on_mixed_dtypes_and_shapes():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shapes = [(), (3,), (2, 4), (1, 1, 5)]
  for case in range(12):
    tree = {f"x{i}": rng.normal(size=shape).astype(np.float32) for i, shape in enumerate(shapes)}
    tree["half"] = jnp.asarray(rng.normal(size=(4,)), jnp.bfloat16)
    tree["count"] = np.int32(case)
    if case % 3:  # a bad number in one leaf, of either dtype
      name = ["x0", "x2", "half", "x3"][case % 4]
      flat = jnp.asarray(tree[name]).reshape(-1)
      bad = flat.at[case % flat.size].set([np.nan, np.inf][case % 2])
      tree[name] = bad.reshape(np.shape(tree[name]))
    expected = all(np.isfinite(np.asarray(x, np.float32)).all() for k, x in tree.items()
                   if k != "count")
    assert bool(divergence.all_finite(tree)) == expected, case
  assert bool(divergence.all_finite({}))


def test_a_diverged_run_without_a_checkpoint_says_to_lower_the_rate(tmp_path):
  saved = checkpoints.Checkpoints(str(tmp_path), keep=2)
  with pytest.raises(FloatingPointError, match=r"Non-finite training loss at step 7 \(epoch "
                                               r"0.70\); stopped. No checkpoint was saved yet: "
                                               "lower config.learning_rate"):
    divergence.check_training_sums({"first_nonfinite_step": np.int32(7)}, 10, saved)
  divergence.check_training_sums({"first_nonfinite_step": np.int32(np.iinfo(np.int32).max)},
                                 10, saved)


def test_a_non_finite_evaluation_names_its_keys(tmp_path):
  saved = checkpoints.Checkpoints(str(tmp_path), keep=2)
  row = {records.EPOCH: 2, records.STEP: 20, records.TEST_LOSS: float("nan"),
         records.TEST_ERROR: 0.5}
  with pytest.raises(FloatingPointError, match="Non-finite evaluation at epoch 2 "
                                               r"\(step 20\): test_loss"):
    divergence.check_row(row, saved)
