r"""Network-in-Network on CIFAR-100, the paper's Table 4 experiment (Xu et al. 2015, §3.1).

    python train.py --config=configs/nin_cifar100.py:rrelu --workdir=runs/nin-cifar100-rrelu

Recipe: the public NIN CIFAR-100 recipe (docs/sources.md §3): as CIFAR-10 but lr 0.02 and
weight decay 5e-4; raw pixels minus the per-pixel mean, no augmentation (the paper), a
2-epoch warm-up for raw pixels.

Expect (paper Table 4, test error): ReLU 42.90%, LReLU a=100 42.05%, LReLU a=5.5 40.42%,
PReLU 41.63%, RReLU 40.25%.
On CPU: --config.model_options.conv_grad=forward (models/conv.py); "xla" suits GPU/TPU.
Needs: pip install ".[prepare]" && tfds build cifar100 --file_format=array_record
"""

import ml_collections

from configs import nin_cifar10


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = nin_cifar10.get_config(rectifier)
  config.dataset = "tfds:cifar100"
  config.learning_rate = 0.02
  config.weight_decay = 5e-4
  return config
