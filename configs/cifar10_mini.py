r"""A reduced NIN on cifar10-mini: the paper's five-rectifier comparison sized for 2 CPU cores.

    python sweep.py --config=configs/cifar10_mini.py --seeds=3 --workdir=runs/cifar10-mini

cifar10-mini (../shared/data/cifar10-mini, beside the checkout) holds 4,000 training and 1,000
test real CIFAR-10 images (32x32 RGB, 10 classes): the small-data regime in which the paper
expects RReLU's noise to help against overfitting (§4, observation 3).

The network is the paper's NIN (Table 1) at a fraction of its width (config.model_options.width),
with every layer, both dropouts and the final rectifier kept. As in the paper the input is raw
pixels (minus the per-pixel training mean, times 1/255); no crop or flip augmentation.

Recipe: SGD momentum 0.9, weight decay 1e-4, He initialisation and a linear warm-up. Both are
departures from the NIN recipe, measured to be needed here: with the NIN init N(0, 0.05) the
narrow net does not learn at all (loss stays at ln 10 = 2.303), and on raw pixels without a
warm-up ReLU units die and PReLU diverges (docs/sources.md §3). Then lr/10 for the last epochs.
"""

import os

import ml_collections

from configs import default

# The data lives beside the checkout (../shared/data from the repository root). Found from
# this file, so that the config works from any directory, and named relative to the working
# directory, so that run records name no path of this machine.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(_REPO, "..", "shared", "data", "cifar10-mini"))


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "folder:" + os.path.relpath(DATA)
  config.model = "nin"
  config.rectifier = rectifier
  config.model_options = default.model_options(
      "nin", width=0.125, kernel_init="he", dropout_rate=0.5)
  config.batch_size = 32
  config.eval_batch_size = 500
  config.num_epochs = 16
  config.learning_rate = 0.05
  config.warmup_epochs = 2.0
  config.lr_decay_epochs = (13,)
  config.weight_decay = 1e-4
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 4
  config.log_every_steps = 50
  return config
