"""training/optimizer: which parameters decay, and the learning-rate schedule's values."""

import jax
import numpy as np

import models
from tests.helpers import tiny_config
from training import optimizer


def test_weight_decay_mask_covers_kernels_only():
  model = models.create("nin", num_classes=10, rectifier="prelu", width=0.0625)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3)),
                                             train=False))["params"]
  mask = optimizer.weight_decay_mask(params, ("kernel",))
  flat = {"/".join(str(k.key) for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat and all(v == path.endswith("kernel") for path, v in flat.items())
  assert any(p.endswith("slope") for p in flat) and any(p.endswith("bias") for p in flat)

  bn_model = models.create("inception_bn", num_classes=10, width=0.0625)
  bn_params = jax.eval_shape(lambda: bn_model.init(jax.random.key(0), np.zeros((1, 28, 28, 3)),
                                                   train=False))["params"]
  bn_flat = {"/".join(str(k.key) for k in path): v for path, v in
             jax.tree_util.tree_leaves_with_path(optimizer.weight_decay_mask(bn_params, ("kernel",)))}
  assert any(p.endswith("scale") for p in bn_flat)
  assert all(v == p.endswith("kernel") for p, v in bn_flat.items())


def test_learning_rate_schedule_warms_up_then_steps_down():
  config = tiny_config(learning_rate=0.1, warmup_epochs=1.0, lr_decay_epochs=(2, 3),
                       lr_decay_factor=0.1)
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=10)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 4, 9, 15, 20, 25, 35)],
                             [0.01, 0.05, 0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-6)
