"""training/builder.py: what a config builds (the network, the schedule, the state, the
evaluation) and what it takes from the data (epoch length, train-eval subset, record)."""

import math
import os
import shutil

import jax
import numpy as np
import pytest

import input_pipeline
from training import builder
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def digits_setup():
  config = tiny_config("prelu", steps_per_epoch=0, batch_size=100, eval_batch_size=120)
  return builder.setup(config, builder.load_data(config))


def test_an_epoch_is_the_full_batches_of_the_training_split(digits_setup):
  s = digits_setup
  assert len(s.dataset.train) == 1437
  assert s.steps_per_epoch == 1437 // 100 == 14
  assert s.total_steps == 14 * s.config.num_epochs


def test_the_built_state_is_the_networks_own_parameters_from_the_runs_key(digits_setup):
  s = digits_setup
  state = s.parts.init(jax.random.key(s.config.seed))
  again = s.parts.init(jax.random.key(s.config.seed))
  direct = s.parts.model.init({"params": jax.random.fold_in(jax.random.key(s.config.seed), 0)},
                              np.zeros((1, *s.parts.input_shape), np.float32), train=False)
  shapes = jax.tree.map(np.shape, direct["params"])
  assert jax.tree.map(np.shape, state.params) == shapes
  assert s.num_params == sum(math.prod(x) for x in jax.tree.leaves(
      shapes, is_leaf=lambda x: isinstance(x, tuple)))
  jax.tree.map(np.testing.assert_array_equal, state.params, again.params)
  jax.tree.map(np.testing.assert_array_equal, state.params, direct["params"])
  # The schedule is the config's: no warm-up, no decay in the tiny config.
  assert float(s.parts.schedule(0)) == pytest.approx(s.config.learning_rate)


def test_the_evaluation_shares_the_runs_mesh_mean_image_and_batch(digits_setup):
  s = digits_setup
  assert s.evaluator.batch_size == 120
  assert s.evaluator.data_sharding.mesh == s.data_sharding.mesh
  np.testing.assert_allclose(np.asarray(s.mean_image), s.dataset.mean_image)
  # Network-in-Network's nine rectified layers, in the order the network runs them.
  assert s.evaluator.layers == ("conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3",
                                "cccp5", "cccp6") and s.evaluator.rrelu_expected_slope is None


def test_the_train_eval_subset_is_fixed_and_inside_the_training_split():
  train = input_pipeline.load("digits").train
  a, b = builder.train_eval_subset(train, 100), builder.train_eval_subset(train, 100)
  assert len(a) == 100 and len(builder.train_eval_subset(train, 0)) == 0
  assert builder.train_eval_subset(train, 10**6) is train
  images = [a[i]["image"] for i in range(len(a))]
  assert all(np.array_equal(x, b[i]["image"]) for i, x in enumerate(images))
  pool = {train[i]["image"].tobytes() for i in range(len(train))}
  assert all(x.tobytes() in pool for x in images)


def test_dataset_record_names_skipped_images_inside_the_folder(cifar10_mini, tmp_path):
  root = tmp_path / "data"
  for c in ("airplane", "automobile"):
    (root / "train" / c).mkdir(parents=True)
    (root / "test" / c).mkdir(parents=True)
    for i, f in enumerate(sorted((cifar10_mini / "train" / c).iterdir())[:6]):
      shutil.copy(f, root / ("train" if i < 4 else "test") / c / f.name)
  (root / "train" / "airplane" / "garbage.jpg").write_bytes(b"not an image")
  config = tiny_config(dataset=f"folder:{root}", skip_corrupt=True, batch_size=2,
                       eval_batch_size=2, cache_dir=str(tmp_path / "cache"))
  record = builder.setup(config, builder.load_data(config)).dataset_record()
  assert record["skipped_files"] == [os.path.join("train", "airplane", "garbage.jpg")]
  assert record["train_examples"] == 8 and record["num_classes"] == 2
