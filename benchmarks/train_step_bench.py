"""Images/s of a full train step per rectifier, compile time and peak memory; optionally
the same NIN step in PyTorch side by side.

For each (rectifier, batch size) the step is compiled once (compile time = lower +
compile), its `memory_analysis()` gives the peak and temporary bytes XLA planned, and
the median step time over `--repeats` calls after warm-up gives images/s. Steps are
timed round-robin over all configurations, so a burst of load elsewhere on a shared
machine hits every row; compare rows by their ratios (to ReLU, to PyTorch), which are
measured in the same run.

`--step train` times `training.steps.train_step` (the training script's step: preprocessing,
forward, backward, SGD with momentum and weight decay, metrics) built from the model's
config file (`WORKLOADS`: NIN configs/nin_cifar10.py on 32x32x3, the NDSB net
configs/ndsb.py on 80x80x1 images that its on-device augmentation crops to 70x70,
Inception-BN configs/inception_bn_cifar100.py on 32x32x3 cropped to 28x28) at `--width`;
`--step minimal` a bare step with the same optimiser on the network's own input shape
(the computation PyTorch runs: forward, cross-entropy, backward, SGD momentum 0.9 with
weight decay).
`--torch` (needs `pip install ".[bench]"`, torch 2.13 CPU) adds PyTorch's NIN step in
NCHW and channels-last. `--conv-grad xla,forward` times the models' `conv_grad` options
side by side (models/conv.py: "forward" computes convolution gradients as forward
convolutions and matrix products, XLA:CPU's fast paths).

  python -m benchmarks.train_step_bench --batch-sizes 128 --torch --json nin.json
  python -m benchmarks.train_step_bench --rectifiers relu --conv-grad xla,forward
  python -m benchmarks.train_step_bench --width 0.25 --batch-sizes 32 --repeats 3
  python -m benchmarks.train_step_bench --model ndsb --width 0.25 --rectifiers relu \
      --conv-grad forward --cpu-devices 0
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import models
from models import conv as conv_lib
from benchmarks import timing
from training import devices
from benchmarks.rectifiers_bench import environment

PAPER_RECTIFIERS = "relu,leaky_relu_100,leaky_relu_5.5,prelu,rrelu,rrelu(impl=exact)"
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4  # the NIN recipe (docs/sources.md §3)


@dataclasses.dataclass(frozen=True)
class Workload:
  """A model's inputs as its config feeds them: `stored` is the uint8 image the data
  pipeline hands the step (which crops it on device), `network` what the network sees."""

  config: str  # configs/<config>.py, the recipe --step train builds
  stored: tuple[int, int, int]
  network: tuple[int, int, int]
  num_classes: int


WORKLOADS = {
    "nin": Workload("nin_cifar10", (32, 32, 3), (32, 32, 3), 10),
    "ndsb": Workload("ndsb", (80, 80, 1), (70, 70, 1), 121),
    "inception_bn": Workload("inception_bn_cifar100", (32, 32, 3), (28, 28, 3), 100),
}


# --- JAX ---------------------------------------------------------------------------------


def _minimal_step(model, tx):
  """Forward, softmax cross-entropy, backward and the optimiser update; nothing else."""

  def step(state, batch, key):
    params, opt_state = state
    dropout_key, rrelu_key = jax.random.split(key)

    def loss_fn(params):
      logits = model.apply({"params": params}, batch["image"], train=True,
                           rngs={"dropout": dropout_key, "rrelu": rrelu_key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return step


def _build_minimal(model_name: str, rectifier: str, batch: int, width: float, dtype: str,
                   num_classes: int, conv_grad: str):
  model = models.create(model_name, num_classes=num_classes, rectifier=rectifier, width=width,
                        dtype=jnp.dtype(dtype), conv_grad=conv_grad)
  tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                   optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
  shape = WORKLOADS[model_name].network
  @jax.jit  # One compile instead of one per op.
  def init(key):
    params = model.init({"params": key}, jnp.zeros((1, *shape)), train=False)["params"]
    return params, tx.init(params)
  state = init(jax.random.key(0))
  rng = np.random.default_rng(0)
  data = {"image": jnp.asarray(rng.normal(size=(batch, *shape)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)}
  step = jax.jit(_minimal_step(model, tx), donate_argnums=(0,))
  return step, state, (data, jax.random.key(1))


def _build_train(model_name: str, rectifier: str, batch: int, width: float, dtype: str,
                 num_classes: int, conv_grad: str):
  from training import builder  # pylint: disable=g-import-not-at-top  (the data stack)

  workload = WORKLOADS[model_name]
  config = importlib.import_module(f"configs.{workload.config}").get_config(rectifier)
  config.dtype = dtype
  config.model_options.width = width
  config.model_options.conv_grad = conv_grad
  config.batch_size = config.eval_batch_size = batch
  # As train.py runs it (training/builder.py): the batch split over the devices that
  # divide it, the state replicated.
  shape = workload.stored
  parts = builder.build(config, builder.data_mesh(config),
                        image_shape=shape, num_classes=num_classes, steps_per_epoch=390)
  state = parts.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  data = jax.device_put(
      {"image": rng.integers(0, 256, (batch, *shape)).astype(np.uint8),
       "label": rng.integers(0, num_classes, batch).astype(np.int32)}, parts.data_sharding)
  mean_image = jax.device_put(np.zeros(shape, np.float32), parts.replicated)
  return parts.train_step, state, (data, jax.random.key(1), mean_image)


BUILDERS = {"train": _build_train, "minimal": _build_minimal}


# --- PyTorch -----------------------------------------------------------------------------


def _torch_nin(torch, num_classes: int, width: float, rectifier: str):
  """NIN as models/nin.py builds it (docs/sources.md §2), in PyTorch, for the side by side."""
  nn = torch.nn
  c = lambda n: max(1, round(n * width))
  act = {"relu": nn.ReLU, "rrelu": lambda: nn.RReLU(1 / 8, 1 / 3)}[rectifier]

  def conv(cin, cout, k):
    return [nn.Conv2d(cin, cout, k, padding=(k - 1) // 2), act()]

  layers = [*conv(3, c(192), 5), *conv(c(192), c(160), 1), *conv(c(160), c(96), 1),
            nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
            *conv(c(96), c(192), 5), *conv(c(192), c(192), 1), *conv(c(192), c(192), 1),
            nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
            *conv(c(192), c(192), 3), *conv(c(192), c(192), 1),
            *conv(c(192), num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
  return nn.Sequential(*layers)


def _torch_runs(batch: int, width: float, num_classes: int, rectifiers: Sequence[str]):
  """{name: step()} for PyTorch's NIN in NCHW and channels-last."""
  import torch

  runs = {}
  for rectifier in rectifiers:
    for layout in ("nchw", "channels_last"):
      torch.manual_seed(0)
      model = _torch_nin(torch, num_classes, width, rectifier)
      images = torch.randn(batch, 3, *WORKLOADS["nin"].network[:2])
      if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
      labels = torch.randint(0, num_classes, (batch,))
      opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                            weight_decay=WEIGHT_DECAY)

      def step(model=model, images=images, labels=labels, opt=opt):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss
      runs[(f"torch {rectifier}", layout)] = step
  return runs, torch.__version__, torch.get_num_threads()


# --- Driver ------------------------------------------------------------------------------


def run(model_name: str, rectifiers: Sequence[str], batch_sizes: Sequence[int], width: float,
        dtype: str, num_classes: int, repeats: int, warmup: int, step_kind: str,
        torch_rectifiers: Sequence[str] = (),
        conv_grads: Sequence[str] = ("xla",)) -> dict[str, Any]:
  build = BUILDERS[step_kind]
  rows: list[dict[str, Any]] = []
  calls: dict[tuple[str, int], Callable[[], Any]] = {}
  for batch, conv_grad, rectifier in (
      (b, c, r) for b in batch_sizes for c in conv_grads for r in rectifiers):
    step, state, args = build(model_name, rectifier, batch, width, dtype, num_classes,
                              conv_grad)
    compiled, compile_s, memory = timing.compile_step(step, state, args)
    holder = {"state": state}

    def timed(holder=holder, compiled=compiled, args=args):
      # The state is donated: keep the new one for the next call.
      holder["state"], out = compiled(holder["state"], *args)
      jax.block_until_ready((holder["state"], out))
    # The default keeps the plain name: ratios are to the "relu" row (XLA's gradients).
    label = rectifier if conv_grad == "xla" else f"{rectifier} conv_grad={conv_grad}"
    calls[(label, batch)] = timed
    rows.append({"framework": "jax", "rectifier": label, "conv_grad": conv_grad,
                 "batch": batch, "compile_s": compile_s,
                 **{f"{k}_bytes": v for k, v in memory.items()}})
  torch_info = {}
  for batch in batch_sizes if torch_rectifiers else ():
    runs, version, threads = _torch_runs(batch, width, num_classes, torch_rectifiers)
    torch_info = {"torch": version, "torch_threads": threads}
    for (name, layout), step in runs.items():
      calls[(f"{name} {layout}", batch)] = step
      rows.append({"framework": "torch", "rectifier": f"{name.split()[1]} {layout}",
                   "batch": batch, "_key": f"{name} {layout}"})
  medians = timing.round_robin(calls, repeats, warmup)
  for row in rows:
    key = (row.pop("_key", row["rectifier"]), row["batch"])
    row["step_ms"] = 1e3 * medians[key]
    row["images_per_s"] = row["batch"] / medians[key]
  for row in rows:  # Ratios to the same-batch JAX ReLU row (and its memory).
    relu = next((r for r in rows if r["framework"] == "jax" and r["rectifier"] == "relu"
                 and r["batch"] == row["batch"]), None)
    if relu:
      row["speed_vs_jax_relu"] = row["images_per_s"] / relu["images_per_s"]
      if row["framework"] == "jax" and relu["peak_memory_bytes"]:
        row["peak_memory_vs_relu"] = row["peak_memory_bytes"] / relu["peak_memory_bytes"]
  return {"rows": rows, **torch_info}


def format_table(rows: list[dict[str, Any]]) -> str:
  lines = ["| framework | rectifier | batch | images/s | vs JAX ReLU | step ms | compile s | "
           "peak MiB | peak vs ReLU |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    fmt = lambda k, f: format(r[k], f) if k in r else "-"
    peak = f"{r['peak_memory_bytes'] / 2**20:.0f}" if "peak_memory_bytes" in r else "-"
    lines.append(f"| {r['framework']} | {r['rectifier']} | {r['batch']} | "
                 f"{r['images_per_s']:.1f} | {fmt('speed_vs_jax_relu', '.2f')} | "
                 f"{r['step_ms']:.0f} | {fmt('compile_s', '.1f')} | {peak} | "
                 f"{fmt('peak_memory_vs_relu', '.3f')} |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="nin", choices=sorted(models.MODELS))
  parser.add_argument("--rectifiers", default=PAPER_RECTIFIERS,
                      help="';'-separated rectifier specs (default: %(default)s)")
  parser.add_argument("--batch-sizes", default="128", help="comma separated")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--num-classes", type=int, default=None,
                      help="default: the model's data set's (NIN 10, NDSB 121, Inception-BN 100)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--step", default="train", choices=sorted(BUILDERS))
  parser.add_argument("--conv-grad", default="xla",
                      help=f"comma separated from {','.join(conv_lib.CONV_GRADS)}: the models' "
                           "conv_grad option (models/conv.py); several give side-by-side rows")
  parser.add_argument("--torch", action="store_true",
                      help="also time PyTorch's NIN step (NCHW and channels-last)")
  parser.add_argument("--torch-rectifiers", default="relu", help="comma separated: relu,rrelu")
  parser.add_argument("--cpu-devices", type=int, default=1,
                      help="CPU: XLA devices for the train step, the batch split over them "
                           "(train.py's config.cpu_devices: 0 = one single-threaded device "
                           "per core; 1 = one multi-threaded device, the default here)")
  parser.add_argument("--json", default=None, help="also write the results here")
  args = parser.parse_args(argv)
  devices.configure_cpu_devices(args.cpu_devices)  # before anything starts JAX's backend.
  # Specs may contain commas ("rrelu(lower=3, upper=8)"): split on ';' if present.
  sep = ";" if ";" in args.rectifiers else ","
  rectifiers = [r.strip() for r in args.rectifiers.split(sep) if r.strip()]
  if sep == "," and any("(" in r and ")" not in r for r in rectifiers):
    parser.error("separate rectifier specs that contain commas with ';'")
  batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
  torch_rectifiers = args.torch_rectifiers.split(",") if args.torch else []
  if args.torch and args.model != "nin":
    parser.error("--torch compares the NIN step only")
  conv_grads = [c for c in args.conv_grad.split(",") if c]
  if unknown := [c for c in conv_grads if c not in conv_lib.CONV_GRADS]:
    parser.error(f"unknown --conv-grad {unknown}; valid: {','.join(conv_lib.CONV_GRADS)}")
  num_classes = args.num_classes or WORKLOADS[args.model].num_classes
  result = run(args.model, rectifiers, batch_sizes, args.width, args.dtype, num_classes,
               args.repeats, args.warmup, args.step, torch_rectifiers, conv_grads)
  env = {**environment(), **{k: v for k, v in result.items() if k != "rows"}}
  print(f"{args.model} width {args.width} {args.dtype}, step={args.step}, median of "
        f"{args.repeats} after {args.warmup} warm-up; {jax.device_count()} "
        f"{jax.default_backend()} device(s); jax {env['jax']}"
        + (f", torch {env['torch']} ({env['torch_threads']} threads)" if "torch" in env else "")
        + f", {env['date']}")
  print(format_table(result["rows"]))
  if args.json:
    with open(args.json, "w") as f:
      workload = WORKLOADS[args.model]
      json.dump({"benchmark": "train_step", "model": args.model, "width": args.width,
                 "image_shape": workload.stored if args.step == "train" else workload.network,
                 "num_classes": num_classes,
                 "dtype": args.dtype, "step": args.step, "repeats": args.repeats,
                 "cpu_devices": args.cpu_devices, "devices": jax.device_count(),
                 "warmup": args.warmup, "environment": env, "results": result["rows"]},
                f, indent=1)


if __name__ == "__main__":
  main()
