r"""Inception-BN (from inception-3a, no stem) on CIFAR-100: the paper's 75.68% RReLU network (§3.1).

    python train.py --config=configs/inception_bn_cifar100.py:rrelu --workdir=runs/inception-rrelu

Recipe: the mxnet 2015 CIFAR-100 notebook (docs/sources.md §3): SGD momentum 0.9, weight
decay 1e-4, batch 64, lr 0.05 for ~38 epochs then 0.01 for ~6; random 28x28 crop and
horizontal flip, per-pixel mean subtraction, centre crop at test.

Expect: 24.32% test error (75.68% accuracy) with RReLU, single view (paper §3.1).
On CPU: --config.model_options.conv_grad=forward (models/conv.py); "xla" suits GPU/TPU.
Needs: pip install ".[prepare]" && tfds build cifar100 --file_format=array_record
"""

import ml_collections

from configs import default


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "tfds:cifar100"
  config.model = "inception_bn"
  config.rectifier = rectifier
  config.model_options = default.model_options("inception_bn", conv_grad="xla")
  config.augment.crop = "random"
  config.augment.crop_size = 28
  config.augment.flip = True
  config.batch_size = 64
  config.num_epochs = 44
  config.learning_rate = 0.05
  config.lr_decay_epochs = (38,)
  config.lr_decay_factor = 0.2
  config.weight_decay = 1e-4
  config.checkpoint_every_epochs = 2
  return config
