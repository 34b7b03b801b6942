r"""The paper's CIFAR-10 experiment on the full training set, sized for 2 CPU cores.

    python sweep.py --config=configs/cifar10_full.py --seeds=3 --parallel=2 \
        --workdir=runs/cifar10-full

Data: CIFAR-10's official training set as JPEGs (../shared/data/cifar10 beside the
checkout: 50,000 images, 5,000 per class). A deterministic, stratified hold-out of 5,000
is the study's test split (`holdout=5000`: 500 per class); the network trains on the
other 45,000. The official test images are kept apart, for checking the study's
conclusions later (evaluate.py) on images no recipe was chosen on.

The network is the paper's NIN (Table 1, every layer, both dropouts 0.5, a rectifier after
every convolution) at a quarter of its width (63,770 parameters with ReLU), as the paper
trains it: raw pixels minus the mean image (x 1/255), no augmentation (§3.1).

One recipe for every rectifier, chosen on ReLU pilots alone (results/cifar10-full/README.md
lists them): SGD momentum 0.9, batch 128 (the NIN recipe's), weight decay 1e-4 on kernels,
He initialisation (N(0, 0.05) does not train a narrow NIN: configs/cifar10_mini.py), a
2-epoch linear warm-up (without one ReLU units die on raw pixels: docs/sources.md §3),
learning rate 0.1 (the NIN recipe's), x0.1 after 2/3 of training (epoch 7); 10 epochs
(3,510 steps), what the budget of 8 hours of two cores allows for 15 runs at the ~150
images/s a run trained in the pilots with two side by side. `conv_grad="forward"` is the
fast CPU gradient (same values).
"""

import os

import ml_collections

from configs import default

# Found from this file, named relative to the working directory: records name no path of
# this machine (as configs/cifar10_mini.py).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(_REPO, "..", "shared", "data", "cifar10"))


def get_config(rectifier: str = "relu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "folder:" + os.path.relpath(DATA)
  config.holdout = 5000
  config.model = "nin"
  config.rectifier = rectifier
  config.model_options = default.model_options(
      "nin", width=0.25, kernel_init="he", dropout_rate=0.5, conv_grad="forward")
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 10
  config.learning_rate = 0.1
  config.warmup_epochs = 2.0
  config.lr_decay_epochs = (7,)
  config.weight_decay = 1e-4
  config.eval_every_epochs = 1
  config.train_eval_examples = 2000
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 50
  return config
