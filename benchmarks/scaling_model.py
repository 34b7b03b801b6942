r"""Predicted step time and efficiency of data-parallel training on 1 ... 4,096 GPUs.

From a measured single-device step, with the limit that binds first for the paper's datasets:

    python -m benchmarks.scaling_model --from-json scaling.json     # benchmarks.scaling output
    python -m benchmarks.scaling_model --from-json step.json --rectifier relu  # train_step_bench
    python -m benchmarks.scaling_model --model nin --measured 128:6.5,32:2.4   # batch:ms
    python -m benchmarks.scaling_model --model nin,inception_bn,ndsb --assume-tflops 50

docs/scaling.md explains the model in prose. Per step, on N devices with b images each:

  compute     t_c(b) = t_0 + s b, fitted to the measured single-device steps (one point:
              t_0 = 0, time proportional to b; two or more: least squares, t_0 >= 0).
  gradients   S = 4 P bytes (float32 gradients of P parameters), one all-reduce per step.
  ring        T_ring(n, S, B, a) = 2 (n-1)/n S/B + 2 (n-1) a    (Patarasuk & Yuan 2009).
  hierarchy   N = G H devices, G per host (8), H hosts: a ring inside each host, then one
              between the hosts over their network ports (each GPU carrying S/G on its own
              port, or a host's S through its shared port):
              T(N) = base + T_ring(G, S, B_nvlink, a_nvlink) + T_ring(H, S, B_host, a_net).
  small       k other collectives per step (BatchNorm statistics, metrics): latency only, as
              NCCL's tree: base_ll + 2 ((G-1) a_ll_nvlink + ceil(log2 H) a_ll_net) each.
  no overlap  t(N) = t_c(b) + T(N) + k t_small(N)   (XLA's default: one combined all-reduce
                                                     after the backward pass)
  overlap     t(N) = t_c/3 + max(2 t_c/3, T(N)) + k t_small(N)   (the all-reduce hidden
              behind the backward pass, 2/3 of a step's FLOPs; the last bucket is ignored)
  weak        b fixed, global batch N b:       efficiency = t_c(b) / t(N)
  strong      global batch B fixed, b = B/N:   efficiency = t_c(B) / (N t(N))

Hardware constants (defaults; the flags below override them; all are peak values):
  B_nvlink  450 GB/s per direction per GPU: NVLink 4, 900 GB/s bidirectional per GPU (NVIDIA
            H100 and H200 Tensor Core GPU datasheets, SXM).
  B_host    --fabric=ib: 400 GB/s per host, 8 ConnectX-7 ports at 400 Gb/s NDR InfiniBand,
            one per GPU (NVIDIA DGX H100/H200 datasheets; ConnectX-7 product brief).
            ib-1nic: one such port per host, 50 GB/s. ethernet-100g: one 100 Gb/s Ethernet
            port per host, 12.5 GB/s (the IEEE 802.3 line rate).
  latencies NCCL's own cost model (NCCL source, src/graph/tuning.cc, hwLat and baseLat, recent
            2.x releases): Ring/Simple 3.4 us per NVLink step, 14 us per network step, 8.4 us
            base; Tree/LL 0.6 us per NVLink hop, 5.0 us per network hop, 6.8 us base. NCCL
            uses the same network latency for InfiniBand and Ethernet.

The batch limits (docs/scaling.md): beyond a critical batch size, which depends on the data
set and model, more devices stop saving steps (Shallue et al. 2019, "Measuring the Effects of
Data Parallelism on Neural Network Training"; McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training", reporting critical batches in the low thousands for CIFAR-10); Goyal
et al. 2017 ("Accurate, Large Minibatch SGD") held ImageNet accuracy to batch 8k with the
linear scaling rule and warm-up. `--critical-batch` (default 2,048) is an assumption, not a
measurement for these networks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from collections.abc import Sequence
from typing import Any

GRADIENT_BYTES_PER_PARAM = 4  # float32 gradients (parameters stay float32 in bfloat16 runs).
FORWARD_FLOPS_SHARE = 1 / 3   # backward = input and weight gradients, ~2x the forward FLOPs.
DEFAULT_DEVICES = tuple(2 ** k for k in range(13))  # 1 ... 4,096


@dataclasses.dataclass(frozen=True)
class Workload:
  """One of the paper's experiments: the network and its training recipe."""
  model: str
  title: str
  params: int               # README, `python -m benchmarks.model_costs` (ReLU)
  forward_gflops: float     # per image, XLA's cost analysis (same source)
  dataset: str
  train_images: int
  batch: int                # the recipe's global batch (configs/)
  epochs: int
  collectives: int          # per step, the compiled step's HLO on 2 devices (XLA:CPU)


WORKLOADS = {
    "nin": Workload("nin", "NIN", 966_986, 0.404, "CIFAR-10", 50_000, 128, 260, 2),
    "inception_bn": Workload("inception_bn", "Inception-BN", 10_195_652, 2.875, "CIFAR-100",
                             50_000, 64, 44, 85),
    "ndsb": Workload("ndsb", "NDSB net", 10_110_521, 0.750, "NDSB", 25_000, 128, 267, 2),
}


@dataclasses.dataclass(frozen=True)
class Network:
  """Link bandwidths (bytes/s, per direction) and per-step latencies (s)."""
  name: str
  gpus_per_host: int = 8
  nvlink_bandwidth: float = 450e9
  host_bandwidth: float = 400e9
  nvlink_latency: float = 3.4e-6
  net_latency: float = 14e-6
  base_latency: float = 8.4e-6
  small_nvlink_latency: float = 0.6e-6
  small_net_latency: float = 5.0e-6
  small_base_latency: float = 6.8e-6
  sources: tuple[str, ...] = ()


NVLINK_SOURCE = ("NVLink 4: 900 GB/s per GPU bidirectional, 450 GB/s per direction (NVIDIA H100 "
                 "and H200 Tensor Core GPU datasheets, SXM)")
NCCL_SOURCE = ("latencies: NCCL's cost model (src/graph/tuning.cc, recent 2.x): Ring/Simple 3.4 "
               "us per NVLink step, 14 us per network step, 8.4 us base; Tree/LL 0.6 / 5.0 us "
               "per hop, 6.8 us base")
FABRICS = {
    "ib": Network("8 x 400 Gb/s InfiniBand NDR per host", host_bandwidth=400e9, sources=(
        NVLINK_SOURCE, "hosts: 8 ConnectX-7 ports at 400 Gb/s NDR InfiniBand, one per GPU, "
        "400 GB/s per host (NVIDIA DGX H100/H200 datasheets; ConnectX-7 product brief)",
        NCCL_SOURCE)),
    "ib-1nic": Network("1 x 400 Gb/s InfiniBand NDR per host", host_bandwidth=50e9, sources=(
        NVLINK_SOURCE, "hosts: one ConnectX-7 port at 400 Gb/s NDR InfiniBand, 50 GB/s "
        "(ConnectX-7 product brief)", NCCL_SOURCE)),
    "ethernet-100g": Network("1 x 100 Gb/s Ethernet per host", host_bandwidth=12.5e9, sources=(
        NVLINK_SOURCE, "hosts: one 100 Gb/s Ethernet port, 12.5 GB/s (IEEE 802.3 line rate)",
        NCCL_SOURCE + "; NCCL uses the same network latency for Ethernet")),
}


@dataclasses.dataclass(frozen=True)
class Compute:
  """Single-device step time t_c(b) = floor + per_image b, and where it comes from."""
  floor: float
  per_image: float
  source: str
  placeholder: bool = False

  def __call__(self, batch: float) -> float:
    return self.floor + self.per_image * batch


# --- The cost model ------------------------------------------------------------------------


def ring_allreduce_seconds(ranks: int, nbytes: float, bandwidth: float, latency: float) -> float:
  """2 (n-1)/n bytes / bandwidth + 2 (n-1) latency: a ring's reduce-scatter and all-gather."""
  if ranks < 1:
    raise ValueError(f"ranks must be >= 1, got {ranks}.")
  return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def hosts(devices: int, net: Network) -> tuple[int, int]:
  """(GPUs per host used, hosts) for `devices`: one host up to gpus_per_host, then full hosts."""
  if devices <= net.gpus_per_host:
    return devices, 1
  if devices % net.gpus_per_host:
    raise ValueError(f"{devices} devices do not fill hosts of {net.gpus_per_host} GPUs; "
                     f"use a multiple of {net.gpus_per_host} above one host.")
  return net.gpus_per_host, devices // net.gpus_per_host


def allreduce_seconds(devices: int, nbytes: float, net: Network) -> float:
  """Hierarchical all-reduce: a ring inside each host (NVLink), then one between hosts."""
  if devices == 1:
    return 0.0
  g, h = hosts(devices, net)
  return (net.base_latency
          + ring_allreduce_seconds(g, nbytes, net.nvlink_bandwidth, net.nvlink_latency)
          + ring_allreduce_seconds(h, nbytes, net.host_bandwidth, net.net_latency))


def small_collective_seconds(devices: int, net: Network) -> float:
  """Latency of one tiny all-reduce as NCCL's tree: base + 2 ((G-1) a_nvl + log2(H) a_net)."""
  if devices == 1:
    return 0.0
  g, h = hosts(devices, net)
  return net.small_base_latency + 2 * ((g - 1) * net.small_nvlink_latency
                                       + math.ceil(math.log2(h)) * net.small_net_latency)


def step(devices: int, batch_per_device: float, compute: Compute, workload: Workload,
         net: Network, collectives: int) -> dict[str, float]:
  """Seconds per step at `devices` devices: compute, all-reduce, small collectives, total
  without and with overlap of the all-reduce and the backward pass."""
  t_c = compute(batch_per_device)
  t_ar = allreduce_seconds(devices, GRADIENT_BYTES_PER_PARAM * workload.params, net)
  t_small = max(collectives - 1, 0) * small_collective_seconds(devices, net)
  forward = FORWARD_FLOPS_SHARE * t_c
  return {"compute_s": t_c, "allreduce_s": t_ar, "small_collectives_s": t_small,
          "step_s": t_c + t_ar + t_small,
          "step_overlap_s": forward + max(t_c - forward, t_ar) + t_small}


def scaling_rows(mode: str, devices: Sequence[int], batch: int, compute: Compute,
                 workload: Workload, net: Network, collectives: int,
                 critical_batch: int) -> list[dict[str, Any]]:
  """One row per device count. weak: `batch` per device; strong: `batch` in all (rows whose
  per-device batch would fall below 1 are left out)."""
  rows = []
  b: float
  for n in devices:
    if mode == "weak":
      b, global_batch = batch, batch * n
      ideal = compute(b)
    else:
      if batch < n:
        break
      b, global_batch = batch / n, batch
      ideal = compute(batch) / n
    t = step(n, b, compute, workload, net, collectives)
    steps_per_epoch = workload.train_images // global_batch
    notes = []
    if global_batch > workload.train_images:
      notes.append(f"batch > the {workload.train_images:,} training images")
    elif global_batch > critical_batch:
      notes.append(f"batch > critical ~{critical_batch:,}")
    if mode == "strong" and batch % n:
      notes.append("uneven split")
    rows.append({
        "mode": mode, "devices": n, "hosts": hosts(n, net)[1], "batch_per_device": b,
        "global_batch": global_batch, **t,
        "images_per_s": global_batch / t["step_s"],
        "images_per_s_overlap": global_batch / t["step_overlap_s"],
        "efficiency": ideal / t["step_s"], "efficiency_overlap": ideal / t["step_overlap_s"],
        "steps_per_epoch": steps_per_epoch,
        "epoch_s": steps_per_epoch * t["step_s"] if steps_per_epoch else None,
        "notes": "; ".join(notes)})
  return rows


def sweep_rows(devices: Sequence[int], compute: Compute, workload: Workload, net: Network,
               collectives: int, runs: int) -> list[dict[str, Any]]:
  """A sweep of `runs` runs at the recipe's batch: devices per run against runs at once."""
  rows = []
  for row in scaling_rows("strong", devices, workload.batch, compute, workload, net,
                          collectives, critical_batch=workload.batch):
    run_s = workload.epochs * row["steps_per_epoch"] * row["step_s"]
    rows.append({"devices_per_run": row["devices"], "batch_per_device": row["batch_per_device"],
                 "efficiency": row["efficiency"], "run_hours": run_s / 3600,
                 "devices_for_all_runs": runs * row["devices"],
                 "sweep_hours_one_run_at_a_time": runs * run_s / 3600,
                 "device_hours": runs * row["devices"] * run_s / 3600})
  return rows


# --- Inputs ----------------------------------------------------------------------------------


def fit_compute(measured: Sequence[tuple[float, float]], source: str,
                placeholder: bool = False) -> Compute:
  """t_c(b) = floor + per_image b through (batch, seconds) points: proportional for one batch
  size, least squares with floor >= 0 for several."""
  if not measured or any(b <= 0 or t <= 0 for b, t in measured):
    raise ValueError(f"need (batch, seconds) points with both > 0, got {list(measured)}.")
  batches = {b for b, _ in measured}
  if len(batches) == 1:
    b = measured[0][0]
    return Compute(0.0, sum(t for _, t in measured) / len(measured) / b, source, placeholder)
  n = len(measured)
  mean_b = sum(b for b, _ in measured) / n
  mean_t = sum(t for _, t in measured) / n
  slope = (sum((b - mean_b) * (t - mean_t) for b, t in measured)
           / sum((b - mean_b) ** 2 for b, _ in measured))
  floor = mean_t - slope * mean_b
  if floor < 0:  # Through the origin instead: a step cannot take negative time at batch 0.
    floor, slope = 0.0, sum(b * t for b, t in measured) / sum(b * b for b, _ in measured)
  if slope <= 0:
    raise ValueError(f"the measured step times do not grow with the batch: {list(measured)}.")
  return Compute(floor, slope, source, placeholder)


def inputs_from_json(path: str, rectifier: str | None = None) -> dict[str, Any]:
  """Single-device (batch, seconds) points, model, width and collectives per step from a
  benchmarks.scaling or benchmarks.train_step_bench JSON file."""
  with open(path) as f:
    data = json.load(f)
  kind = data.get("benchmark")
  env = data.get("environment", {})
  where = f"{env.get('backend', '?')} ({env.get('device_kind', '?')})"
  if kind == "scaling":
    ones = [p for p in data["points"] if p["devices"] == 1]
    if not ones:
      raise ValueError(f"{path} has no single-device point: run benchmarks.scaling with 1 in "
                       f"--devices.")
    measured = sorted({(p["global_batch"], p["step_s_median"]) for p in ones})
    multi = [p["hlo_collectives"] for p in data["points"] if p["devices"] > 1]
    collectives = max(multi) if multi else None
  elif kind == "train_step":
    rows = [r for r in data["results"] if r["framework"] == "jax"]
    label = rectifier or (rows[0]["rectifier"] if rows else None)
    rows = [r for r in rows if r["rectifier"] == label]
    if not rows:
      raise ValueError(f"{path} has no JAX row for rectifier {rectifier!r}; rows: "
                       f"{sorted({r['rectifier'] for r in data['results']})}.")
    measured = sorted((r["batch"], r["step_ms"] / 1e3) for r in rows)
    collectives = None
  else:
    raise ValueError(f"{path} is not a benchmarks.scaling or train_step_bench JSON file "
                     f"(its 'benchmark' is {kind!r}).")
  return {"model": data["model"], "width": data.get("width", 1.0), "measured": measured,
          "collectives": collectives, "dtype": data.get("dtype"),
          "source": f"measured: {path}, {where}, {data.get('dtype', '?')}, " + ", ".join(
              f"batch {b}: {1e3 * t:.3g} ms" for b, t in measured)}


def placeholder_compute(workload: Workload, tflops: float) -> Compute:
  """3 x forward FLOPs per image at an assumed sustained rate: NOT a measurement."""
  per_image = 3 * workload.forward_gflops * 1e9 / (tflops * 1e12)
  return Compute(0.0, per_image, f"PLACEHOLDER (not measured): 3 x {workload.forward_gflops} "
                 f"forward GFLOPs per image at an assumed {tflops:g} TFLOP/s", placeholder=True)


# --- Output ----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
  return f"{1e3 * seconds:.3g}" if seconds < 10 else f"{1e3 * seconds:,.0f}"


def markdown(report: dict[str, Any]) -> str:
  w, net = report["workload"], report["network"]
  compute = report["compute"]
  lines = [f"## {w['title']} on {w['dataset']}: {w['params']:,} parameters, "
           f"{report['gradient_bytes'] / 1e6:.2f} MB of float32 gradients, "
           f"{report['collectives']} collectives per step", ""]
  if compute["placeholder"]:
    lines += ["**PLACEHOLDER INPUTS: the step times below are not measurements.**", ""]
  lines += [f"- Single-device step: t_c(b) = {1e3 * compute['floor']:.3g} ms + "
            f"{1e3 * compute['per_image']:.4g} ms x b; {compute['source']}."]
  if report.get("warning"):
    lines.append(f"- **Warning**: {report['warning']}.")
  lines += [f"- Network: NVLink {net['nvlink_bandwidth'] / 1e9:g} GB/s, "
            f"{net['gpus_per_host']} GPUs per host; between hosts {net['name']}, "
            f"{net['host_bandwidth'] / 1e9:g} GB/s per host; latencies "
            f"{1e6 * net['nvlink_latency']:g} / {1e6 * net['net_latency']:g} us per ring step, "
            f"{1e6 * net['base_latency']:g} us base."]
  lines += [f"  - {s}" for s in net["sources"]]
  lines += [f"- Collectives per step: {report['collectives']} ({report['collectives_source']});"
            " all but one are modelled as latency-only small all-reduces.", ""]
  header = ("| devices | hosts | batch/device | global batch | compute ms | all-reduce ms | "
            "small coll. ms | step ms | step ms, overlap | images/s | efficiency | "
            "eff., overlap | steps/epoch | epoch s | |")
  rule = "|" + "---:|" * 14 + "---|"
  for mode, title in (("weak", f"Weak scaling: {report['weak_batch']} images per device"),
                      ("strong", f"Strong scaling: global batch {report['strong_batch']}")):
    lines += [f"### {title}", "", header, rule]
    for r in report[mode]:
      epoch = f"{r['epoch_s']:.3g}" if r["epoch_s"] is not None else "-"
      b = r["batch_per_device"]
      lines.append(
          f"| {r['devices']:,} | {r['hosts']} | {b:g} | {r['global_batch']:,} | "
          f"{_ms(r['compute_s'])} | {_ms(r['allreduce_s'])} | {_ms(r['small_collectives_s'])} | "
          f"{_ms(r['step_s'])} | {_ms(r['step_overlap_s'])} | {r['images_per_s']:,.0f} | "
          f"{r['efficiency']:.2f} | {r['efficiency_overlap']:.2f} | {r['steps_per_epoch']:,} | "
          f"{epoch} | {r['notes']} |")
    lines.append("")
  lines += [f"### The sweep: {report['runs']} runs of {w['epochs']} epochs at the recipe's "
            f"batch {w['batch']}", "",
            "| devices per run | batch/device | efficiency | hours per run (the sweep, all runs "
            "at once) | devices for all runs at once | sweep hours, one run at a time | "
            "device-hours |",
            "|" + "---:|" * 7]
  for r in report["sweep"]:
    lines.append(f"| {r['devices_per_run']} | {r['batch_per_device']:g} | {r['efficiency']:.2f} "
                 f"| {r['run_hours']:.3g} | {r['devices_for_all_runs']:,} | "
                 f"{r['sweep_hours_one_run_at_a_time']:.3g} | "
                 f"{r['device_hours']:.3g} |")
  b_crit = report["critical_batch"]
  lines += ["", "### What binds first", "",
            f"- Data: {w['train_images']:,} training images, so an epoch at global batch B is "
            f"{w['train_images']:,} / B steps: {w['train_images'] // w['batch']} at the "
            f"recipe's {w['batch']}, {w['train_images'] // b_crit} at {b_crit:,}. Weak scaling "
            f"at {report['weak_batch']} per device passes the whole training set in one step at "
            f"{math.ceil(w['train_images'] / report['weak_batch']):,} devices.",
            f"- Batch: past the critical batch (assumed ~{b_crit:,}; Shallue et al. 2019, "
            f"McCandlish et al. 2018) more devices no longer cut the steps to a given error, so "
            f"weak scaling beyond {max(b_crit // report['weak_batch'], 1):,} devices buys "
            f"throughput, not time to result; Goyal et al. 2017's linear scaling rule held to "
            f"8k only on ImageNet's 1.28M images. The paper's numbers are at batch {w['batch']}: "
            f"a faithful reproduction keeps it, i.e. strong scaling, whose efficiency falls as "
            f"the per-device batch shrinks.",
            f"- Runs: the {report['runs']} runs of a sweep are independent, so {report['runs']} "
            f"devices (one run each) scale perfectly; more devices per run pay the strong-"
            f"scaling efficiency above."]
  return "\n".join(lines)


def report(workload: Workload, compute: Compute, net: Network, devices: Sequence[int],
           weak_batch: int, strong_batch: int, collectives: int, collectives_source: str,
           critical_batch: int, runs: int, warning: str = "") -> dict[str, Any]:
  return {
      "workload": dataclasses.asdict(workload), "compute": dataclasses.asdict(compute),
      "network": dataclasses.asdict(net),
      "gradient_bytes": GRADIENT_BYTES_PER_PARAM * workload.params,
      "collectives": collectives, "collectives_source": collectives_source,
      "critical_batch": critical_batch, "runs": runs, "weak_batch": weak_batch,
      "strong_batch": strong_batch, "warning": warning,
      "weak": scaling_rows("weak", devices, weak_batch, compute, workload, net, collectives,
                           critical_batch),
      "strong": scaling_rows("strong", devices, strong_batch, compute, workload, net,
                             collectives, critical_batch),
      "sweep": sweep_rows([n for n in devices if n <= workload.batch], compute, workload, net,
                          collectives, runs)}


def _parse_measured(text: str) -> list[tuple[float, float]]:
  """'128:6.5,32:2.4' (batch:milliseconds) -> [(128, 0.0065), (32, 0.0024)]."""
  try:
    points = [(float(b), float(ms) / 1e3) for b, ms in (p.split(":") for p in text.split(","))]
  except ValueError:
    raise ValueError(f"--measured takes BATCH:MS pairs separated by commas, e.g. 128:6.5,32:2.4;"
                     f" got {text!r}.") from None
  return points


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--from-json", help="a benchmarks.scaling or train_step_bench JSON file")
  source.add_argument("--measured", help="single-device BATCH:MS pairs, e.g. 128:6.5,32:2.4")
  source.add_argument("--assume-tflops", type=float,
                      help="PLACEHOLDER inputs: 3 x forward FLOPs at this sustained TFLOP/s")
  parser.add_argument("--model", default=None,
                      help=f"comma separated from {','.join(WORKLOADS)} (default: the JSON's, "
                           f"or nin)")
  parser.add_argument("--rectifier", default=None, help="train_step_bench JSON: the row to use")
  parser.add_argument("--devices", default=",".join(map(str, DEFAULT_DEVICES)))
  parser.add_argument("--batch-per-device", type=int, default=None,
                      help="weak scaling (default: the recipe's batch)")
  parser.add_argument("--global-batch", type=int, default=None,
                      help="strong scaling (default: the recipe's batch)")
  parser.add_argument("--fabric", default="ib", choices=sorted(FABRICS))
  parser.add_argument("--gpus-per-host", type=int, default=8)
  parser.add_argument("--nvlink-gbps", type=float, default=None, help="GB/s per direction")
  parser.add_argument("--host-gbps", type=float, default=None, help="GB/s per host and direction")
  parser.add_argument("--collectives", type=int, default=None,
                      help="collectives per step (default: the JSON's, else the table's)")
  parser.add_argument("--critical-batch", type=int, default=2048)
  parser.add_argument("--runs", type=int, default=15, help="runs per sweep (5 settings x 3 seeds)")
  parser.add_argument("--json", default=None, help="also write the predictions here")
  args = parser.parse_args(argv)

  try:
    json_inputs = inputs_from_json(args.from_json, args.rectifier) if args.from_json else None
    measured = _parse_measured(args.measured) if args.measured else None
  except (OSError, ValueError, KeyError) as e:
    parser.error(str(e))
  names = (args.model or (json_inputs["model"] if json_inputs else "nin")).split(",")
  if unknown := [m for m in names if m not in WORKLOADS]:
    parser.error(f"unknown --model {unknown}; valid: {','.join(WORKLOADS)}.")
  if len(names) > 1 and args.assume_tflops is None:
    parser.error("several --model values need --assume-tflops: measured inputs are one model's.")
  if json_inputs and json_inputs["model"] != names[0]:
    parser.error(f"{args.from_json} measured {json_inputs['model']!r}, not --model {names[0]!r}.")
  try:
    devices = sorted({int(d) for d in args.devices.split(",")})
  except ValueError:
    parser.error(f"--devices must be comma-separated device counts, got {args.devices!r}.")
  if devices[0] < 1:
    parser.error(f"--devices must be positive, got {args.devices!r}.")
  if args.assume_tflops is not None and not args.assume_tflops > 0:
    parser.error(f"--assume-tflops must be > 0, got {args.assume_tflops}.")
  for name in ("gpus_per_host", "critical_batch", "runs", "batch_per_device", "global_batch"):
    value = getattr(args, name)
    if value is not None and value < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
  net = dataclasses.replace(FABRICS[args.fabric], gpus_per_host=args.gpus_per_host)
  overrides = {"nvlink_bandwidth": args.nvlink_gbps, "host_bandwidth": args.host_gbps}
  for field, gbps in overrides.items():
    if gbps is not None:
      if not gbps > 0:
        parser.error(f"--{field.split('_')[0]}-gbps must be > 0, got {gbps}.")
      net = dataclasses.replace(net, **{field: gbps * 1e9},
                                sources=net.sources + (f"{field} {gbps:g} GB/s: given",))
  try:
    for n in devices:
      hosts(n, net)
  except ValueError as e:
    parser.error(f"--devices: {e}")

  reports = []
  header = shlex.join(["python", "-m", "benchmarks.scaling_model", *argv])
  print(f"<!-- {header} -->\n")
  for name in names:
    workload = WORKLOADS[name]
    warning = ""
    if args.assume_tflops is not None:
      compute = placeholder_compute(workload, args.assume_tflops)
    elif json_inputs:
      compute = fit_compute(json_inputs["measured"], json_inputs["source"])
      if json_inputs["width"] != 1.0:
        warning = (f"measured at width {json_inputs['width']}, not the paper's network: the "
                   f"compute time does not match the {workload.params:,} parameters")
    else:
      try:
        compute = fit_compute(measured, "given on the command line (--measured "
                              f"{args.measured})")
      except ValueError as e:
        parser.error(f"--measured: {e}")
    if args.collectives is not None:
      collectives, collectives_source = args.collectives, "given on the command line"
    elif json_inputs and json_inputs["collectives"]:
      collectives, collectives_source = json_inputs["collectives"], f"the HLO in {args.from_json}"
    else:
      collectives = workload.collectives
      collectives_source = "the compiled step's HLO on 2 CPU devices, jax 0.10.2"
    batch_per_device = args.batch_per_device or workload.batch
    global_batch = args.global_batch or workload.batch
    result = report(workload, compute, net, devices, batch_per_device, global_batch,
                    collectives, collectives_source, args.critical_batch, args.runs, warning)
    reports.append(result)
    print(markdown(result) + "\n")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"command": header, "reports": reports}, f, indent=1)
  return reports


if __name__ == "__main__":
  main()
