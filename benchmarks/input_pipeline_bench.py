r"""Whether the data path limits a run: images/s of the input pipeline, of the train step
alone, and of the two together as train.py's loop runs them, on a config's real data.

    python -m benchmarks.input_pipeline_bench --config=configs/ndsb.py --steps 40
    python -m benchmarks.input_pipeline_bench --config=configs/cifar10_full.py --steps 40

Three measurements, each the median of `--repeats` rounds of `--steps` batches:
- **pipeline**: `Setup.train_iterator()` alone (grain reading the decoded images, shuffling,
  batching), then `to_device`: what the host hands the step.
- **step**: the jitted train step (on-device augmentation, forward, backward, update) on
  one batch already on the devices, back to back.
- **loop**: both, as train.py's loop runs them (the next batch read while up to two
  steps are in flight).
loop / step near 1 means the data path is not what limits a run; pipeline / step says
by how much the host outpaces the step. The dataset load (from the decoded cache) is
timed apart. Data-dependent config keys take the config's values; `--width` and
`--batch` override the network's width and the batch.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax

import input_pipeline
import train
from configs import config_file
from training import builder, devices

def _load_config(path: str):
  try:
    return config_file.load(path)
  except config_file.ConfigFileError as e:
    raise SystemExit(str(e)) from None


def _rate(images: int, seconds: Sequence[float]) -> float:
  return images / statistics.median(seconds)


def measure(config, steps: int, repeats: int) -> dict[str, Any]:
  start = time.perf_counter()
  dataset = builder.load_dataset(config)
  load_s = time.perf_counter() - start
  s = builder.setup(config, dataset)
  state, key = s.parts.init(jax.random.key(0)), jax.random.key(0)
  data = s.train_iterator()
  batch = input_pipeline.to_device(next(data), s.data_sharding)
  start = time.perf_counter()
  state, metrics = s.parts.train_step(state, batch, key, s.mean_image)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  images = steps * config.batch_size
  pipeline, step, loop = [], [], []
  for _ in range(repeats):  # round-robin, so that load elsewhere hits all three alike
    start = time.perf_counter()
    for _ in range(steps):
      jax.block_until_ready(input_pipeline.to_device(next(data), s.data_sharding))
    pipeline.append(time.perf_counter() - start)

    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = s.parts.train_step(state, batch, key, s.mean_image)
    jax.block_until_ready((state, metrics))
    step.append(time.perf_counter() - start)

    start, in_flight = time.perf_counter(), collections.deque[Any]()
    for _ in range(steps):
      state, metrics = s.parts.train_step(state, input_pipeline.to_device(next(data), s.data_sharding),
                                    key, s.mean_image)
      in_flight.append(metrics)
      if len(in_flight) > train.STEPS_IN_FLIGHT:
        jax.block_until_ready(in_flight.popleft())
    jax.block_until_ready((state, metrics))
    loop.append(time.perf_counter() - start)
  rates = {"pipeline": _rate(images, pipeline), "step": _rate(images, step),
           "loop": _rate(images, loop)}
  return {"load_s": load_s, "compile_s": compile_s, "train_examples": len(dataset.train),
          "image_shape": list(dataset.image_shape), "devices": s.num_devices,
          "images_per_s": rates, "loop_vs_step": rates["loop"] / rates["step"],
          "pipeline_vs_step": rates["pipeline"] / rates["step"]}


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="configs/FILE.py[:rectifier]")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--width", type=float, default=None)
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--cpu-devices", type=int, default=None,
                      help="default: the config's cpu_devices (0: one per core)")
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  config = _load_config(args.config)
  if args.width is not None:
    config.model_options.width = args.width
  if args.batch is not None:
    config.batch_size = args.batch
  if args.cpu_devices is not None:
    config.cpu_devices = args.cpu_devices
  devices.configure_cpu_devices(config.cpu_devices)
  result = measure(config, args.steps, args.repeats)
  r = result["images_per_s"]
  print(f"{args.config}: {config.model} width {config.model_options.width}, batch "
        f"{config.batch_size}, {result['devices']} {jax.default_backend()} device(s); "
        f"{result['train_examples']} training images {tuple(result['image_shape'])} loaded "
        f"in {result['load_s']:.1f} s; step compiled in {result['compile_s']:.1f} s")
  print("| what | images/s | vs step |\n|---|---:|---:|")
  for name in ("pipeline", "step", "loop"):
    print(f"| {name} | {r[name]:.0f} | {r[name] / r['step']:.2f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"benchmark": "input_pipeline", "config": args.config, "steps": args.steps,
                 "repeats": args.repeats, "batch_size": config.batch_size,
                 "width": config.model_options.width, **result}, f, indent=1)


if __name__ == "__main__":
  main()
