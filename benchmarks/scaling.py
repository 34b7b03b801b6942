r"""Weak and strong scaling of the training script's step on meshes of 1, 2, 4, ... devices.

Images/s, efficiency, compile time and the share of the step spent in collectives, per point:

    python -m benchmarks.scaling --devices=1,2 --json=s.json --plot=s.png
    python -m benchmarks.scaling --mode=both --batch-per-device=32 --global-batch=128
    python -m benchmarks.scaling --model=inception_bn --width=0.25 --devices=1,2
    python -m benchmarks.scaling --devices=2,4 --processes=2   # 2 jax.distributed processes
    python -m benchmarks.scaling --cpu-threads-per-device=all  # XLA:CPU's own threading

What is timed: `training.steps.train_step` (on-device preprocessing, forward, backward, the gradient
all-reduce XLA inserts, SGD with momentum and weight decay, metrics), built from a config
file's recipe (`--config`, default the paper's config for `--model`) and jit-compiled over a
`Mesh` of N devices with the batch on its "data" axis and the state replicated, as train.py
runs it, on random uint8 images of the dataset's shape.

- `--mode=weak`: `--batch-per-device` images per device, global batch N x that.
  `--mode=strong`: `--global-batch` images split over the N devices (divisible by every N).
- Each point: the median step time over `--repeats` timed steps after `--warmup`, its min,
  max and quartiles; images/s = global batch / median; compile time (lower + compile);
  efficiency = (images/s at N / images/s at N0) / (N / N0), N0 the smallest device count
  measured (1 by default): X_N / (N X_1) for weak scaling and, the global batch being fixed,
  T_1 / (N T_N) for strong scaling.
- Collective share: a `jax.profiler` trace of `--profile-steps` steps; the time during which
  XLA's collective ops (all-reduce, all-gather, reduce-scatter, ...) run, summed over the
  point's devices, divided by devices x the traced steps' wall time. It includes the time a
  device waits inside a collective for the others to arrive. Recorded as null, with the
  reason, when the trace cannot tell; 0 when the compiled step has no collective.

Devices. On GPU/TPU one process measures every point on the first N of `jax.devices()`. On
CPU each point runs in a fresh subprocess (`--worker`, one JSON line on stdout) that creates
its N devices itself (`--xla_force_host_platform_device_count`: XLA reads it once per
process). `--processes=P` runs a point as P `jax.distributed` processes on this host (gloo,
CPU only), N/P devices each, each process feeding its rows of the global batch
(`jax.make_array_from_process_local_data`).

What the CPU numbers mean: fake CPU devices share the machine's physical cores, and their
"all-reduce" is a copy through shared memory. On CPU this benchmark measures how XLA:CPU uses
the cores (intra-op threads inside one device, `--cpu-threads-per-device=all`, against one
single-threaded device per core, `=1`, the default), not interconnect scaling. Interconnect
scaling needs accelerators; benchmarks/scaling_model.py predicts it from a measured
single-device step.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jaxlib
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

import input_pipeline
import models
from benchmarks import timing
from configs import config_file, validation
from models import conv as conv_lib
from training import builder, figures, steps
from training.devices import FORCED_COUNT_FLAG, single_thread_xla_flags

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = {"nin": "configs/nin_cifar10.py",
                 "inception_bn": "configs/inception_bn_cifar100.py", "ndsb": "configs/ndsb.py"}
# (image shape, classes) of the datasets the configs name: the synthetic data's shape.
DATASET_SHAPES = {"tfds:cifar10": ((32, 32, 3), 10), "tfds:cifar100": ((32, 32, 3), 100),
                  "digits": ((8, 8, 1), 10)}
NDSB_CLASSES = 121  # Kaggle's National Data Science Bowl; a folder dataset of the ndsb model.
# The learning-rate schedule's epoch length; the step's cost does not depend on it.
NOMINAL_STEPS_PER_EPOCH = 390
MODES = ("weak", "strong")
CPU_BATCH_PER_DEVICE = 32  # The CPU default: a full-width NIN step in about a second.
# HLO opcodes of XLA's collectives; the GPU's asynchronous pairs end in -start / -done.
COLLECTIVE_OPCODES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
                      "ragged-all-to-all", "collective-permute", "collective-broadcast")
_COLLECTIVE_EVENT = re.compile(rf"^%?({'|'.join(COLLECTIVE_OPCODES)})(-start|-done)?(\.\d+)*$")
_NCCL_KERNEL = re.compile(r"nccl", re.IGNORECASE)
_COLLECTIVE_IN_HLO = re.compile(rf" ({'|'.join(COLLECTIVE_OPCODES)})(-start)?\(")
_DEVICE_COUNT_FLAG = re.compile(re.escape(FORCED_COUNT_FLAG) + r"=\S+")


def _environment() -> dict[str, Any]:
  """rectifiers_bench's environment record, imported late: importing it creates JAX's
  backend, which must wait for jax.distributed.initialize in multi-process workers."""
  from benchmarks import rectifiers_bench  # pylint: disable=g-import-not-at-top
  return rectifiers_bench.environment()


# --- The step ------------------------------------------------------------------------------


def load_config(path: str, rectifier: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(rectifier)` of a configs/*.py file (a path, or relative to the repository)."""
  return config_file.load(f"{path}:{rectifier}" if rectifier else path)


def data_shape(config: ml_collections.ConfigDict,
               num_classes: int | None = None) -> tuple[tuple[int, int, int], int]:
  """(H, W, C) and class count of the data `config.dataset` names, for synthetic batches."""
  if config.dataset in DATASET_SHAPES:
    shape, classes = DATASET_SHAPES[config.dataset]
    return shape, num_classes or classes
  if config.dataset.startswith("folder:") and config.image_size:
    classes = num_classes or (NDSB_CLASSES if config.model == "ndsb" else None)
    if classes is None:
      raise ValueError(f"The class count of {config.dataset!r} is unknown: pass --num-classes.")
    return (config.image_size, config.image_size, 1 if config.grayscale else 3), classes
  raise ValueError(f"No synthetic shape for config.dataset={config.dataset!r}; known: "
                   f"{sorted(DATASET_SHAPES)} and folder datasets with config.image_size.")


def synthetic_batch(rng: np.random.Generator, batch: int, image_shape: Sequence[int],
                    num_classes: int) -> dict[str, np.ndarray]:
  """Random uint8 images and int32 labels, as input_pipeline's batches."""
  return {"image": rng.integers(0, 256, (batch, *image_shape), dtype=np.uint8),
          "label": rng.integers(0, num_classes, batch).astype(np.int32)}


@dataclasses.dataclass
class TrainStep:
  """`training.steps.train_step` compiled for one mesh and global batch, with its state and inputs."""
  compiled: Callable[..., Any]
  state: steps.TrainState
  rng: jax.Array
  mean_image: jax.Array
  data_sharding: NamedSharding
  global_batch: int
  compile_s: float
  memory: dict[str, int]
  hlo_collectives: int

  def __call__(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    # The state is donated: keep the new one for the next call.
    self.state, metrics = self.compiled(self.state, batch, self.rng, self.mean_image)
    return metrics


def build_train_step(config: ml_collections.ConfigDict, mesh: Mesh, global_batch: int,
                     image_shape: tuple[int, int, int], num_classes: int) -> TrainStep:
  """Compiles `training.steps.train_step` for `config` as train.py does
  (`training.builder.build`): batch on the mesh's "data" axis, state replicated, the state
  donated."""
  parts = builder.build(config, mesh, image_shape=image_shape, num_classes=num_classes,
                        steps_per_epoch=NOMINAL_STEPS_PER_EPOCH)
  data_sharding, replicated = parts.data_sharding, parts.replicated
  rng = jax.random.key(config.seed)
  state = parts.init(rng)
  # Mid-grey: centred inputs, like the real data after mean subtraction.
  mean_image = jax.device_put(np.full(image_shape, 127.5, np.float32), replicated)
  step = parts.train_step
  example = input_pipeline.to_device(
      synthetic_batch(np.random.default_rng(0), global_batch // jax.process_count(),
                      image_shape, num_classes), data_sharding)
  compiled, compile_s, memory = timing.compile_step(step, state, (example, rng, mean_image))
  return TrainStep(compiled=compiled, state=state, rng=rng, mean_image=mean_image,
                   data_sharding=data_sharding, global_batch=global_batch, compile_s=compile_s,
                   memory=memory, hlo_collectives=count_collectives(compiled.as_text()))


def count_collectives(hlo_text: str) -> int:
  """Collective instructions (all-reduce, all-gather, ...) in a compiled module's HLO text."""
  return len(_COLLECTIVE_IN_HLO.findall(hlo_text))


# --- The collectives' share, from a profiler trace -----------------------------------------


def union_seconds(intervals: Sequence[tuple[int, int]]) -> float:
  """Length in seconds of the union of [start_ns, end_ns) intervals (nested ones count once)."""
  total, end = 0, None
  for start, stop in sorted(intervals):
    if end is None or start >= end:
      total += stop - start
      end = stop
    elif stop > end:
      total += stop - end
      end = stop
  return total / 1e9


def collective_seconds(planes: Sequence[Any]) -> tuple[float, int, str]:
  """(busy seconds, events, where) of collective ops in a trace's planes.

  Accelerators: the "XLA Ops" lines of the /device: planes (one per device), or, in traces
  without them, the device's kernel lines, where collectives run as NCCL kernels. XLA:CPU:
  the host plane's thread lines, where each device's thunks run as events named after their
  HLO instructions (all-reduce.3, ...). The busy time is the union of a line's collective
  events, summed over lines.
  """
  device_planes = [p for p in planes if p.name.startswith("/device:")]
  is_collective = _COLLECTIVE_EVENT.match
  if device_planes:
    lines = [l for p in device_planes for l in p.lines if l.name == "XLA Ops"]
    where = "the XLA Ops lines of the device planes"
    if not lines:
      lines = [l for p in device_planes for l in p.lines]
      where = "the device planes' kernel lines (NCCL kernels)"
      is_collective = lambda name: (  # type: ignore[assignment]
          _COLLECTIVE_EVENT.match(name) or _NCCL_KERNEL.search(name))  # a match or a search
  else:
    lines = [l for p in planes if p.name.startswith("/host:") for l in p.lines]
    where = "the host threads' XLA:CPU thunk events"
  busy, count = 0.0, 0
  for line in lines:
    intervals = [(e.start_ns, e.start_ns + e.duration_ns) for e in line.events
                 if is_collective(e.name)]
    busy += union_seconds(intervals)
    count += len(intervals)
  return busy, count, where


def collective_share(run_steps: Callable[[int], Any], steps: int, local_devices: int,
                     hlo_collectives: int, trace: bool = True) -> tuple[float | None, str]:
  """(share, how it was obtained or why it is unknown) for `steps` steps under the profiler.

  `run_steps(n)` runs and waits for n steps; every process must call this (the steps are
  collective), but only the one with `trace` records and parses a trace.
  """
  if hlo_collectives == 0:
    return 0.0, "the compiled step has no collective ops"
  if steps == 0:
    return None, "not profiled (--profile-steps=0)"
  if not trace:
    run_steps(steps)
    return None, "not traced in this process"
  with tempfile.TemporaryDirectory(prefix="scaling-trace-") as trace_dir:
    try:
      jax.profiler.start_trace(trace_dir)
    except Exception as e:  # E.g. no CUPTI on a GPU machine: the steps still run, untraced.
      run_steps(steps)
      return None, f"the profiler did not start ({type(e).__name__}: {e})"
    start = time.perf_counter()
    try:
      run_steps(steps)
    finally:
      wall = time.perf_counter() - start
      jax.profiler.stop_trace()
    files = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not files:
      return None, "the profiler wrote no trace file"
    try:
      profile = jax.profiler.ProfileData.from_file(files[0])
      busy, events, where = collective_seconds(list(profile.planes))
    except Exception as e:  # A backend's trace format we cannot read: say so, do not guess.
      return None, f"the trace could not be parsed ({type(e).__name__}: {e})"
  if events == 0:
    return None, (f"the trace has no events named after the step's {hlo_collectives} "
                  f"collective ops ({where})")
  return busy / (local_devices * wall), (
      f"{events} collective events in {where} over {steps} traced steps: their time summed "
      f"over this process's {local_devices} device(s) / (devices x wall time); it includes "
      f"waiting inside a collective for the other devices")


# --- One device count (a worker, or in process on accelerators) ----------------------------


def point_specs(mode: str, devices: int, batch_per_device: int,
                global_batch: int) -> list[tuple[str, int]]:
  """[(mode, global batch)] measured at `devices` devices."""
  modes = MODES if mode == "both" else (mode,)
  return [(m, batch_per_device * devices if m == "weak" else global_batch) for m in modes]


def _spread(times: Sequence[float]) -> dict[str, float]:
  q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (
      times[0],) * 3
  return {"step_s_median": statistics.median(times), "step_s_min": min(times),
          "step_s_max": max(times), "step_s_q1": q1, "step_s_q3": q3}


def measure(config: ml_collections.ConfigDict, devices: Sequence[jax.Device],
            specs: Sequence[tuple[str, int]], *, num_classes: int | None, repeats: int,
            warmup: int, profile_steps: int) -> list[dict[str, Any]]:
  """One point per (mode, global batch) on a mesh of `devices` (all processes' devices)."""
  image_shape, classes = data_shape(config, num_classes)
  mesh = builder.mesh_over(devices)  # exactly these devices: the experiment's point
  local_devices = sum(d.process_index == jax.process_index() for d in devices)
  points: list[dict[str, Any]] = []
  measured: dict[int, dict[str, Any]] = {}
  for mode, global_batch in specs:
    if global_batch in measured:  # The same program (weak and strong at N0): measured once.
      points.append({**measured[global_batch], "mode": mode})
      continue
    step = build_train_step(config, mesh, global_batch, image_shape, classes)
    local = synthetic_batch(np.random.default_rng(1 + jax.process_index()),
                            global_batch // jax.process_count(), image_shape, classes)
    batch = input_pipeline.to_device(local, step.data_sharding)

    def run_steps(n: int, step=step, batch=batch) -> list[float]:
      times = []
      for _ in range(n):
        start = time.perf_counter()
        jax.block_until_ready(step(batch))
        times.append(time.perf_counter() - start)
      return times

    run_steps(warmup)
    times = run_steps(repeats)
    share, share_note = collective_share(run_steps, profile_steps, local_devices,
                                         step.hlo_collectives, trace=jax.process_index() == 0)
    spread = _spread(times)
    points.append({
        "mode": mode, "devices": len(devices), "processes": jax.process_count(),
        "devices_per_process": local_devices, "global_batch": global_batch,
        "batch_per_device": global_batch // len(devices), **spread,
        "step_times_s": times, "images_per_s": global_batch / spread["step_s_median"],
        "compile_s": step.compile_s, "peak_memory_bytes": step.memory["peak_memory"],
        "hlo_collectives": step.hlo_collectives, "collective_share": share,
        "collective_share_note": share_note})
    measured[global_batch] = points[-1]
  return points


def _worker_environment() -> dict[str, Any]:
  return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _worker(args: argparse.Namespace, config: ml_collections.ConfigDict) -> None:
  """Measures args.devices[0] devices (all of this process's, or all processes') and prints
  one JSON line on process 0."""
  [n] = args.devices
  if jax.device_count() != n:
    raise SystemExit(f"worker: expected {n} devices, JAX has {jax.device_count()}.")
  points = measure(config, jax.devices(), point_specs(args.mode, n, args.batch_per_device,
                                                      args.global_batch),
                   num_classes=args.num_classes, repeats=args.repeats, warmup=args.warmup,
                   profile_steps=args.profile_steps)
  if jax.process_index() == 0:
    print(json.dumps({"points": points, "environment": _worker_environment()}), flush=True)
  if args.processes > 1:
    jax.distributed.shutdown()


# --- The driver ----------------------------------------------------------------------------


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _worker_env(devices_per_process: int, threads: str) -> dict[str, str]:
  env = dict(os.environ)
  flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", ""))
  flags += f" {FORCED_COUNT_FLAG}={devices_per_process}"
  if threads == "1":
    flags += " " + single_thread_xla_flags(devices_per_process)
  env["XLA_FLAGS"] = " ".join(flags.split())
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
  return env


def _worker_argv(args: argparse.Namespace, devices: int) -> list[str]:
  """The worker's command line: every resolved setting, spelled out."""
  argv = [sys.executable, "-m", "benchmarks.scaling", "--worker", f"--devices={devices}",
          f"--processes={args.processes}", f"--mode={args.mode}", f"--config={args.config}",
          f"--width={args.width}", f"--dtype={args.dtype}", f"--conv-grad={args.conv_grad}",
          f"--batch-per-device={args.batch_per_device}", f"--global-batch={args.global_batch}",
          f"--repeats={args.repeats}", f"--warmup={args.warmup}",
          f"--profile-steps={args.profile_steps}", f"--model={args.model}"]
  if args.rectifier:
    argv.append(f"--rectifier={args.rectifier}")
  if args.num_classes:
    argv.append(f"--num-classes={args.num_classes}")
  return argv


def _run_workers(args: argparse.Namespace, devices: int) -> dict[str, Any]:
  """Runs one device count as args.processes CPU subprocesses; returns process 0's result."""
  per_process = devices // args.processes
  env = _worker_env(per_process, args.cpu_threads_per_device)
  argv = _worker_argv(args, devices)
  if args.processes > 1:
    argv.append(f"--coordinator=127.0.0.1:{_free_port()}")
  with tempfile.TemporaryDirectory(prefix="scaling-workers-") as tmp:
    procs, logs = [], []
    for i in range(args.processes):
      out = open(os.path.join(tmp, f"{i}.out"), "w+")
      err = open(os.path.join(tmp, f"{i}.err"), "w+")
      logs.append((out, err))
      procs.append(subprocess.Popen(argv + [f"--process-id={i}"], env=env, stdout=out,
                                    stderr=err, text=True))
    deadline, timed_out = time.monotonic() + args.timeout, False
    while any(p.poll() is None for p in procs):
      timed_out = time.monotonic() > deadline
      # One failed process leaves the others waiting in a collective: stop them all.
      if any(p.returncode not in (None, 0) for p in procs) or timed_out:
        for p in procs:
          if p.poll() is None:
            p.kill()
        break
      time.sleep(0.1)
    texts = []
    for p, (out, err) in zip(procs, logs):
      p.wait()
      out.seek(0)
      err.seek(0)
      texts.append((out.read(), err.read()))
      out.close()
      err.close()
  for i, (p, (_, err_text)) in enumerate(zip(procs, texts)):
    if p.returncode != 0:
      why = (f"timed out after --timeout={args.timeout} s" if timed_out
             else f"exited with status {p.returncode}")
      raise RuntimeError(f"The worker for {devices} devices (process {i} of {args.processes}) "
                         f"{why}; its stderr ends with:\n{err_text[-3000:]}")
  lines = [l for l in texts[0][0].splitlines() if l.startswith("{")]
  if not lines:
    raise RuntimeError(f"The worker for {devices} devices printed no result:\n"
                       f"{texts[0][0][-2000:]}")
  result = json.loads(lines[-1])
  result["environment"]["command"] = shlex.join(argv)
  return result


def add_efficiency(points: list[dict[str, Any]]) -> None:
  """speedup = X_N / X_N0 and efficiency = speedup / (N / N0) per mode, in place; N0 is the
  mode's smallest device count."""
  for mode in {p["mode"] for p in points}:
    rows = sorted((p for p in points if p["mode"] == mode), key=lambda p: p["devices"])
    base = rows[0]
    for p in rows:
      p["baseline_devices"] = base["devices"]
      p["speedup"] = p["images_per_s"] / base["images_per_s"]
      p["efficiency"] = p["speedup"] / (p["devices"] / base["devices"])


def run(args: argparse.Namespace, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """All points: one subprocess group per device count on CPU, in process otherwise."""
  points, workers = [], []
  for n in args.devices:
    if args.backend == "cpu":
      result = _run_workers(args, n)
      points += result["points"]
      workers.append(result["environment"])
    else:
      points += measure(config, jax.devices()[:n],
                        point_specs(args.mode, n, args.batch_per_device, args.global_batch),
                        num_classes=args.num_classes, repeats=args.repeats, warmup=args.warmup,
                        profile_steps=args.profile_steps)
  add_efficiency(points)
  env = _environment()
  env.update({
      "device_kind": jax.devices()[0].device_kind, "jaxlib": jaxlib.__version__,
      "cores": os.cpu_count(),
      "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "command": args.command, "workers": workers})
  env["devices"] = env["devices"] if args.backend != "cpu" else "per worker, see workers"
  return {
      "benchmark": "scaling", "model": config.model, "config": args.config,
      "rectifier": config.rectifier, "dataset_shape": list(data_shape(config, args.num_classes)[0]),
      "width": args.width, "dtype": args.dtype, "conv_grad": args.conv_grad, "mode": args.mode,
      "batch_per_device": args.batch_per_device, "global_batch": args.global_batch,
      "processes": args.processes,
      "cpu_threads_per_device": args.cpu_threads_per_device if args.backend == "cpu" else None,
      "repeats": args.repeats, "warmup": args.warmup, "profile_steps": args.profile_steps,
      "environment": env, "points": points}


def format_table(points: Sequence[dict[str, Any]]) -> str:
  lines = ["| mode | devices | processes | global batch | step ms (median) | min-max ms | "
           "images/s | speedup | efficiency | compile s | collectives | collective share |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for p in points:
    share = "n/a" if p["collective_share"] is None else f"{p['collective_share']:.3f}"
    lines.append(
        f"| {p['mode']} | {p['devices']} | {p['processes']} | {p['global_batch']} | "
        f"{1e3 * p['step_s_median']:.1f} | {1e3 * p['step_s_min']:.1f}-"
        f"{1e3 * p['step_s_max']:.1f} | {p['images_per_s']:.1f} | {p['speedup']:.2f} | "
        f"{p['efficiency']:.2f} | {p['compile_s']:.1f} | {p['hlo_collectives']} | {share} |")
  return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
  """Images/s and efficiency against devices, per mode, with the ideal (linear) line."""
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  fig = figures.figure(figsize=(10, 4))
  ax_speed, ax_eff = fig.subplots(1, 2)
  for mode in MODES:
    rows = sorted((p for p in result["points"] if p["mode"] == mode), key=lambda p: p["devices"])
    if not rows:
      continue
    n = [p["devices"] for p in rows]
    line, = ax_speed.plot(n, [p["images_per_s"] for p in rows], "o-", label=f"{mode}")
    base = rows[0]
    ax_speed.plot(n, [base["images_per_s"] * d / base["devices"] for d in n], "--",
                  color=line.get_color(), alpha=0.6, label=f"{mode}, ideal")
    ax_eff.plot(n, [p["efficiency"] for p in rows], "o-", color=line.get_color(), label=mode)
  ax_eff.axhline(1.0, ls="--", color="grey", label="ideal")
  for ax, label in ((ax_speed, "images/s"), (ax_eff, "scaling efficiency")):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({p["devices"] for p in result["points"]}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("devices")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
  ax_eff.set_ylim(bottom=0)
  env = result["environment"]
  fig.suptitle(f"{result['model']} width {result['width']} {result['dtype']}, "
               f"{env['backend']} ({env['device_kind']}), jax {env['jax']}")
  fig.tight_layout()
  figures.save(fig, path, dpi=120)


def _parse_devices(text: str) -> list[int]:
  try:
    counts = [int(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"--devices must be comma-separated device counts, got {text!r}.") from None
  if not counts or any(n < 1 for n in counts):
    raise ValueError(f"--devices must be positive device counts, got {text!r}.")
  return sorted(set(counts))


def _default_devices(available: int) -> list[int]:
  counts = [1 << k for k in range(available.bit_length()) if 1 << k <= available]
  return counts + [available] * (available not in counts)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", default=None,
                      help="comma-separated device counts (default: powers of 2 up to the "
                           "number of GPUs/TPUs, or of usable cores on CPU)")
  parser.add_argument("--mode", default="weak", choices=[*MODES, "both"])
  parser.add_argument("--batch-per-device", type=int, default=None,
                      help=f"weak scaling: images per device (default: the config's batch on "
                           f"accelerators, {CPU_BATCH_PER_DEVICE} on CPU)")
  parser.add_argument("--global-batch", type=int, default=None,
                      help="strong scaling: images per step over all devices (default: the "
                           "config's batch_size)")
  parser.add_argument("--model", default=None, choices=sorted(models.MODELS),
                      help="picks the paper's config for this network (default: nin)")
  parser.add_argument("--config", default=None,
                      help=f"a configs/*.py file (default: {MODEL_CONFIGS['nin']}, or --model's)")
  parser.add_argument("--rectifier", default=None, help="default: the config's")
  parser.add_argument("--width", type=float, default=1.0, help="the model's width multiplier")
  parser.add_argument("--dtype", default="float32", choices=sorted(models.DTYPES))
  parser.add_argument("--conv-grad", default=None, choices=sorted(conv_lib.CONV_GRADS),
                      help="models/conv.py (default: forward on CPU, the config's elsewhere)")
  parser.add_argument("--num-classes", type=int, default=None,
                      help="default: the config's dataset's")
  parser.add_argument("--processes", type=int, default=1,
                      help="jax.distributed processes per point (CPU, gloo)")
  parser.add_argument("--cpu-threads-per-device", default="1", choices=["1", "all"],
                      help="CPU: one XLA thread per device (default) or XLA's thread pool")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--profile-steps", type=int, default=3,
                      help="steps traced for the collective share (0: not profiled)")
  parser.add_argument("--timeout", type=float, default=1800.0,
                      help="seconds per CPU worker before it is stopped")
  parser.add_argument("--json", default=None, help="write all points and the environment here")
  parser.add_argument("--plot", default=None, help="write images/s and efficiency plots here")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  return parser


def _resolve(parser: argparse.ArgumentParser, args: argparse.Namespace,
             argv: Sequence[str]) -> ml_collections.ConfigDict:
  """Checks the arguments, fills in the defaults, and returns the benchmarked config."""
  args.command = shlex.join(["python", "-m", "benchmarks.scaling", *argv])
  args.config = args.config or MODEL_CONFIGS[args.model or "nin"]
  try:
    config = load_config(args.config, args.rectifier)
  except ValueError as e:
    parser.error(str(e))
  if args.model:  # Another network with this config's recipe.
    config.model = args.model
  args.model = config.model
  if not args.width > 0:
    parser.error(f"--width must be > 0, got {args.width}.")
  for name, low in (("repeats", 1), ("warmup", 0), ("profile_steps", 0), ("processes", 1)):
    if getattr(args, name) < low:
      parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}.")
  args.backend = jax.default_backend()
  if args.processes > 1 and args.backend != "cpu" and not args.worker:
    parser.error(f"--processes={args.processes} runs CPU devices over gloo; on {args.backend} "
                 "one process drives all local devices (use --processes=1).")
  if args.devices is None:
    available = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count()) if args.backend == "cpu" else jax.device_count()
    args.devices = _default_devices(available)
  else:
    try:
      args.devices = _parse_devices(args.devices)
    except ValueError as e:
      parser.error(str(e))
  if args.backend != "cpu" and max(args.devices) > jax.device_count():
    parser.error(f"--devices asks for {max(args.devices)} devices; this {args.backend} machine "
                 f"has {jax.device_count()}.")
  if bad := [n for n in args.devices if n % args.processes]:
    parser.error(f"--processes={args.processes} splits each point's devices evenly; device "
                 f"counts {bad} (from --devices) are not multiples of it.")
  if args.batch_per_device is None:
    args.batch_per_device = config.batch_size if args.backend != "cpu" else CPU_BATCH_PER_DEVICE
  if args.global_batch is None:
    args.global_batch = config.batch_size
  for name in ("batch_per_device", "global_batch"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
  if args.mode in ("strong", "both") and (
      bad := [n for n in args.devices if args.global_batch % n]):
    parser.error(f"--global-batch={args.global_batch} is not divisible by {bad} devices (from "
                 f"--devices); strong scaling splits the global batch evenly: pick a multiple "
                 f"of {np.lcm.reduce(args.devices)}.")
  if args.conv_grad is None:
    args.conv_grad = "forward" if args.backend == "cpu" else config.model_options.get(
        "conv_grad", "xla")
  config.dtype = args.dtype
  config.model_options.width = args.width
  config.model_options.conv_grad = args.conv_grad
  # Some batch every process count divides, for validate_config; each point sets its own.
  config.batch_size = (args.global_batch if args.mode == "strong"
                       else args.batch_per_device * args.devices[0])
  try:
    validation.validate_config(config)
    data_shape(config, args.num_classes)
  except ValueError as e:
    parser.error(str(e))
  return config


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = _parser()
  args = parser.parse_args(argv)
  if args.worker and args.processes > 1:  # Before anything creates JAX's backends.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, args.processes, args.process_id)
  config = _resolve(parser, args, argv)
  if args.worker:
    _worker(args, config)
    return None
  try:
    result = run(args, config)
  except RuntimeError as e:
    raise SystemExit(f"benchmarks.scaling: {e}") from None
  env = result["environment"]
  print(f"{result['model']} ({args.config}, {result['rectifier']}) width {args.width} "
        f"{args.dtype}, conv_grad={args.conv_grad}; {args.repeats} timed steps after "
        f"{args.warmup}; {env['backend']} ({env['device_kind']}), jax {env['jax']}, {env['date']}")
  print(format_table(result["points"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  if args.plot:
    plot(result, args.plot)
  return result


if __name__ == "__main__":
  main()
