r"""Network-in-Network on CIFAR-10, the paper's Table 3 experiment (Xu et al. 2015, §3.1).

    python train.py --config=configs/nin_cifar10.py:rrelu --workdir=runs/nin-cifar10-rrelu

The argument after the colon is the rectifier: relu, leaky_relu_100, leaky_relu_5.5, prelu,
rrelu (the paper's five settings) or any name rectifiers.linen.rectifier_factory accepts.

Recipe: the public NIN recipe (Lin et al. 2013; docs/sources.md §3): SGD momentum 0.9, batch
128, lr 0.1, weight decay 1e-4, weights N(0, 0.05); ~200 epochs, then lr/10 for 30 and
lr/10 for 30. The paper trains on raw images without augmentation, so the input is raw
pixels minus the per-pixel training mean; on raw pixels the recipe needed a warm-up here
(docs/sources.md §3: without it ReLU units died and PReLU diverged), hence 2 warm-up epochs.

Expect (paper Table 3, test error): ReLU 12.45%, LReLU a=100 12.66%, LReLU a=5.5 11.20%,
PReLU 11.79%, RReLU 11.19%; training errors (training mode) 0.2%-0.6%.
On CPU: --config.model_options.conv_grad=forward (models/conv.py); "xla" suits GPU/TPU.
Needs the prepared TFDS dataset: pip install ".[prepare]" && tfds build cifar10 --file_format=array_record
"""

import ml_collections

from configs import default


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "tfds:cifar10"
  config.model = "nin"
  config.rectifier = rectifier
  config.model_options = default.model_options("nin", kernel_init="nin", conv_grad="xla")
  config.batch_size = 128
  config.num_epochs = 260
  config.learning_rate = 0.1
  config.warmup_epochs = 2.0
  config.lr_decay_epochs = (200, 230)
  config.weight_decay = 1e-4
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 5
  return config
