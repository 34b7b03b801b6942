r"""A small Network-in-Network with RReLU on scikit-learn's digits: offline, ~30 s on 2 CPU cores.

    python train.py --config=configs/quickstart.py --workdir=runs/quickstart
    python train.py --config=configs/quickstart.py:relu --workdir=runs/quickstart-relu

1,437 training and 360 test images of 8x8 handwritten digits (real scans, bundled with
scikit-learn). Expect a test error of a few percent after 30 epochs.
"""

import ml_collections

from configs import default


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "digits"
  config.model = "nin"
  config.rectifier = rectifier
  # conv_grad="forward": convolution gradients as forward convolutions and matrix products
  # (models/conv.py), XLA:CPU's fast paths; this config is meant for CPUs.
  config.model_options = default.model_options(
      "nin", width=0.25, kernel_init="he", conv_grad="forward")
  config.batch_size = 64
  config.num_epochs = 30
  config.learning_rate = 0.05
  config.warmup_epochs = 2.0
  config.lr_decay_epochs = (20, 26)
  config.weight_decay = 1e-4
  config.eval_every_epochs = 2
  config.checkpoint_every_epochs = 10
  config.log_every_steps = 20
  # One XLA:CPU device, not one per core: at this size (8x8 images, 61k parameters) the
  # per-device work is too small for data parallelism to pay. Measured on 2 cores, end to
  # end: 29.9 s on one device, 32.9 s on two (medians of 3).
  config.cpu_devices = 1
  return config
