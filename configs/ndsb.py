r"""The NDSB plankton net (AuroraXie's "model 2") on Kaggle's NDSB images: the paper's Table 5.

    python train.py --config=configs/ndsb.py:rrelu --workdir=runs/ndsb-rrelu
    python sweep.py --config=configs/ndsb.py --seeds=3 --workdir=runs/ndsb

Data: Kaggle's `train/<class>/<id>.jpg`, found at ../shared/data/ndsb beside the checkout
(27,338 of the 30,336 labelled images, 121 classes; `--config.dataset=folder:PATH` for
another copy), read as grayscale and resized to 80x80 as AuroraXie's `convert -resize
80x80!` did (the aspect ratio is not kept). A deterministic, stratified `holdout=2338` is
the test split (every class is in it) and leaves exactly the paper's 25,000 training
images (§3.2); with all 30,336 images, `--config.holdout=5336` is the paper's split. The
headline metric is the multi-class log-loss (Table 5, the competition's).

Augmentation (AuroraXie's models/model2/val.conf through cxxnet's ImageAugmenter,
input_pipeline/augment.py): rotation ±180°, shear ±0.5, aspect ratio 0.5-1.5, scale
0.3-1.7 onto a canvas clamped to 80..100 pixels (`min_img_size`/`max_img_size`), a random
70x70 crop of it, mirror, white fill; raw pixels minus the mean image (x 1/255). Centre
70x70 crop at test.

Recipe (val.conf): SGD momentum 0.9, lr 0.01, weight decay 5e-4 on kernels (none on
biases), batch 128, 267 epochs, lr/10 at iteration 56,000 (epoch ~236 at the 237 steps an
epoch of all 30,336 images). Departures: He-normal initialisation (val.conf: cxxnet's
Xavier, Gaussian sigma 0.03 on five convolutions), and the biases share the kernels'
learning rate (val.conf doubles it). The full network and schedule need an accelerator;
configs/ndsb_cpu.py is the recipe sized for two CPU cores (results/ndsb/).

Expect (paper Table 5, validation multi-class log-loss): ReLU 0.7727, LReLU a=100 0.7601,
LReLU a=5.5 0.7391, PReLU 0.7454, RReLU 0.7292. On CPU, --config.model_options.conv_grad=
forward (models/conv.py); "xla" suits GPU/TPU.
"""

import os

import ml_collections

from configs import default

# Found from this file, named relative to the working directory: records name no path of
# this machine (as configs/cifar10_full.py).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(_REPO, "..", "shared", "data", "ndsb"))
HOLDOUT = 2338  # 27,338 - 2,338 = the paper's 25,000 training images.


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "folder:" + os.path.relpath(DATA)
  config.image_size = 80
  config.grayscale = True
  config.holdout = HOLDOUT
  config.model = "ndsb"
  config.rectifier = rectifier
  config.model_options = default.model_options("ndsb", kernel_init="he", conv_grad="xla")
  config.augment.ndsb = True
  config.augment.crop_size = 70
  config.augment.canvas = (80.0, 100.0)
  config.batch_size = 128
  config.num_epochs = 267
  config.learning_rate = 0.01
  config.lr_decay_epochs = (236,)
  config.weight_decay = 5e-4
  # The generalisation gap is measured on a fixed subset of the 25,000 as large as the
  # test split.
  config.train_eval_examples = HOLDOUT
  config.checkpoint_every_epochs = 5
  return config
