r"""The NDSB plankton net (AuroraXie's "model 2") on Kaggle's NDSB data: the paper's Table 5.

    python train.py --config=configs/ndsb.py:rrelu --workdir=runs/ndsb-rrelu \
        --config.dataset=folder:/path/to/ndsb

The data is Kaggle's `train/<class>/<id>.jpg` (30,336 grayscale JPEGs, 121 classes); the
paper's split is 25,000 training / 5,336 validation images (config.holdout), stratified and
deterministic here.

Recipe (docs/sources.md §3, AuroraXie): SGD momentum 0.9, lr 0.01, weight decay 5e-4, batch
128; lr/10 at epoch ~236, ~267 epochs. Images resized to 80x80, then the NDSB augmentation
(rotation ±180°, shear, aspect ratio, scale, random 70x70 crop, mirror, white fill) and
mean-image subtraction; centre 70x70 crop at test. AuroraXie doubled the biases'
learning rate; this config does not.

Expect (paper Table 5, validation multi-class log-loss): ReLU 0.7727, LReLU a=100 0.7601,
LReLU a=5.5 0.7391, PReLU 0.7454, RReLU 0.7292.
On CPU: --config.model_options.conv_grad=forward (models/conv.py); "xla" suits GPU/TPU.
"""

import ml_collections

from configs import default


def get_config(rectifier: str = "rrelu") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "folder:data/ndsb"
  config.image_size = 80
  config.grayscale = True
  config.holdout = 5336
  config.model = "ndsb"
  config.rectifier = rectifier
  config.model_options = default.model_options("ndsb", conv_grad="xla")
  config.augment.ndsb = True
  config.augment.crop_size = 70
  config.batch_size = 128
  config.num_epochs = 267
  config.learning_rate = 0.01
  config.lr_decay_epochs = (236,)
  config.weight_decay = 5e-4
  config.checkpoint_every_epochs = 5
  return config
