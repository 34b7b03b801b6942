r"""One training epoch of NIN on CIFAR-10-shaped synthetic data: images/s and wall time.

    python -m benchmarks.synthetic_epoch                    # 50,000 images, batch 128, width 1
    python -m benchmarks.synthetic_epoch --images 512 --width 0.0625 --json epoch.json

The recipe is configs/nin_cifar10.py's (batch 128, SGD with momentum and weight decay, the
warm-up schedule, the default rectifier RReLU); the step is `training.steps.train_step` compiled over a
Mesh of all devices with the batch on its "data" axis, as train.py runs it
(`benchmarks.scaling.build_train_step`). The data are `--images` random uint8 32x32x3 images
with 10 classes, made in host memory (nothing is written to disk) and fed batch by batch with
`jax.make_array_from_process_local_data`, as train.py feeds its batches; reading and
shuffling the real dataset is not part of the time. An epoch is images // batch steps
(drop_remainder, as the training iterator). Compile time is reported apart; the epoch's wall
time runs from the first batch's transfer to the last step's result.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import input_pipeline
from benchmarks import rectifiers_bench, scaling
from configs import nin_cifar10
from models import conv as conv_lib
from training import builder

IMAGE_SHAPE, NUM_CLASSES = scaling.DATASET_SHAPES["tfds:cifar10"]
CIFAR10_TRAIN_IMAGES = 50_000


def run(images: int, batch: int, width: float, dtype: str, conv_grad: str,
        rectifier: str | None = None, seed: int = 0) -> dict[str, Any]:
  """Trains one epoch of `images // batch` steps; returns its timings and mean loss."""
  config = nin_cifar10.get_config(rectifier) if rectifier else nin_cifar10.get_config()
  config.batch_size = batch
  config.dtype = dtype
  config.model_options.width = width
  config.model_options.conv_grad = conv_grad
  mesh = builder.data_mesh(config)
  step = scaling.build_train_step(config, mesh, batch, IMAGE_SHAPE, NUM_CLASSES)
  data = scaling.synthetic_batch(np.random.default_rng(seed), images, IMAGE_SHAPE, NUM_CLASSES)
  steps = images // batch
  loss_sum, first_step_s = None, None
  start = time.perf_counter()
  for i in range(steps):
    rows = slice(i * batch, (i + 1) * batch)
    metrics = step(input_pipeline.to_device({k: v[rows] for k, v in data.items()},
                                            step.data_sharding))
    loss_sum = metrics["loss"] if loss_sum is None else loss_sum + metrics["loss"]
    if i == 0:  # The first step alone shows one-time costs (allocation, autotuning).
      jax.block_until_ready(metrics)
      first_step_s = time.perf_counter() - start
  jax.block_until_ready((step.state, loss_sum))
  epoch_s = time.perf_counter() - start
  mean_loss = float(loss_sum) / (steps * batch)
  return {"steps": steps, "images_trained": steps * batch, "compile_s": step.compile_s,
          "first_step_s": first_step_s, "epoch_s": epoch_s,
          "images_per_s": steps * batch / epoch_s, "mean_train_loss": mean_loss,
          "loss_is_finite": math.isfinite(mean_loss), "rectifier": config.rectifier,
          "devices": jax.device_count(), "hlo_collectives": step.hlo_collectives}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--images", type=int, default=CIFAR10_TRAIN_IMAGES,
                      help="synthetic training images (default: CIFAR-10's %(default)s)")
  parser.add_argument("--batch", type=int, default=nin_cifar10.get_config().batch_size,
                      help="global batch (default: the recipe's %(default)s)")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--conv-grad", default=None, choices=sorted(conv_lib.CONV_GRADS),
                      help="models/conv.py (default: forward on CPU, xla elsewhere)")
  parser.add_argument("--rectifier", default=None, help="default: the recipe's")
  parser.add_argument("--json", default=None, help="also write the result here")
  args = parser.parse_args(argv)
  if args.batch < 1 or args.batch % jax.device_count():
    parser.error(f"--batch must be a positive multiple of the {jax.device_count()} devices, "
                 f"got {args.batch}.")
  if args.images < args.batch:
    parser.error(f"--images ({args.images}) must hold at least one --batch ({args.batch}).")
  if not args.width > 0:
    parser.error(f"--width must be > 0, got {args.width}.")
  conv_grad = args.conv_grad or ("forward" if jax.default_backend() == "cpu" else "xla")
  result = run(args.images, args.batch, args.width, args.dtype, conv_grad, args.rectifier)
  env = rectifiers_bench.environment()
  env["device_kind"] = jax.devices()[0].device_kind
  out = {"benchmark": "synthetic_epoch", "model": "nin", "config": "configs/nin_cifar10.py",
         "images": args.images, "batch": args.batch, "width": args.width, "dtype": args.dtype,
         "conv_grad": conv_grad, **result, "environment": env}
  print(f"NIN width {args.width} {args.dtype} conv_grad={conv_grad}, {result['rectifier']}: "
        f"{result['steps']} steps of {args.batch} on {result['devices']} "
        f"{env['backend']} device(s): epoch {result['epoch_s']:.2f} s, "
        f"{result['images_per_s']:,.0f} images/s (compile {result['compile_s']:.1f} s, first "
        f"step {result['first_step_s']:.3f} s), mean training loss "
        f"{result['mean_train_loss']:.4f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
