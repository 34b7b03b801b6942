r"""The paper's NDSB experiment (Table 5) sized for two CPU cores: results/ndsb/.

    python sweep.py --config=configs/ndsb_cpu.py --seeds=3 --parallel=2 --workdir=runs/ndsb

configs/ndsb.py's data, split (25,000 / 2,338), augmentation and network, with:
- the network at a quarter of its width (656,105 parameters with ReLU; the full one has
  10,110,521), He-normal initialisation, dropout 0.55 as in the paper;
- a 1-epoch linear warm-up to lr 0.05, x0.1 at epoch 15, 20 epochs (3,900 steps), instead
  of lr 0.01 for 267 epochs: at width 0.25 a step trains about 79 images/s on one core
  (benchmarks/train_step_bench.py), so 15 runs of 20 epochs, two side by side, take about
  14 of the 16 hours the study may use;
- weight decay 5e-4 on kernels, batch 128 (val.conf's); `conv_grad="forward"`, the fast
  CPU gradient (same values).
Every choice was made on ReLU pilots alone (results/ndsb/README.md lists them).
"""

import ml_collections

from configs import ndsb


def get_config(rectifier: str = "relu") -> ml_collections.ConfigDict:
  config = ndsb.get_config(rectifier)
  config.model_options.width = 0.25
  config.model_options.conv_grad = "forward"
  config.eval_batch_size = 500
  config.num_epochs = 20
  config.learning_rate = 0.05
  config.warmup_epochs = 1.0
  config.lr_decay_epochs = (15,)
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 50
  return config
