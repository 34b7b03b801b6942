"""Forward and forward+backward time of every rectifier on one NHWC tensor.

Each time is the median over `--repeats` runs after warm-up, and is reported as a
ratio to ReLU's time *in the same run*: on a shared machine absolute times drift,
ratios measured side by side do not (much). The rows are timed round-robin (one run
of each row per repeat) so that a burst of load from elsewhere hits all of them.

Reference rows: `copy` (an HLO copy: one read and one write of x, the bandwidth
floor) and `negate` (the same traffic through an elementwise loop fusion, the code
path the rectifiers take). "fwd+bwd" is `jax.value_and_grad` of sum(f(x) * g) with
respect to x (and PReLU's slope), so that the forward output is computed too.

  python -m benchmarks.rectifiers_bench                         # (128, 32, 32, 192)
  python -m benchmarks.rectifiers_bench --shape 8,16,16,64 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rectifiers as R
from benchmarks import timing


# name -> f(x, params) with params a dict of float arrays that get gradients too.
Rectifier = Callable[[jax.Array, dict[str, jax.Array]], jax.Array]


def _rows(shape: Sequence[int]) -> dict[str, tuple[Rectifier, dict[str, Any]]]:
  channels = shape[-1]
  key = jax.random.key(0)  # made here, not at import: importing must not start JAX's backend.
  per_channel = tuple(d if i in (0, len(shape) - 1) else 1 for i, d in enumerate(shape))
  return {
      "copy": (lambda x, p: jnp.copy(x), {}),
      "negate": (lambda x, p: -x, {}),
      "relu": (lambda x, p: R.relu(x), {}),
      "leaky_relu(a=5.5)": (lambda x, p: R.leaky_relu(x, 5.5), {}),
      "prelu(per channel)": (lambda x, p: R.prelu(x, p["slope"]),
                             {"slope": np.full((channels,), 0.25, np.float32)}),
      "rrelu test": (lambda x, p: R.rrelu(x, None, deterministic=True), {}),
      "rrelu exact": (lambda x, p: R.rrelu(x, key, impl="exact"), {}),
      "rrelu fast": (lambda x, p: R.rrelu(x, key, impl="fast"), {}),
      "rrelu fast slope": (lambda x, p: R.rrelu(x, key, sample="slope", impl="fast"), {}),
      "rrelu exact per-channel": (
          lambda x, p: R.rrelu(x, key, noise_shape=per_channel, impl="exact"), {}),
      "rrelu fast per-channel": (
          lambda x, p: R.rrelu(x, key, noise_shape=per_channel, impl="fast"), {}),
  }


def _forward(fn: Rectifier) -> Callable[..., jax.Array]:
  return jax.jit(fn)


def _forward_backward(fn: Rectifier) -> Callable[..., Any]:
  def loss(x, params, g):
    return jnp.sum((fn(x, params) * g).astype(jnp.float32))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def run(shape: Sequence[int], dtypes: Sequence[str], repeats: int, warmup: int,
        only: Sequence[str] | None = None) -> list[dict[str, Any]]:
  rows = _rows(shape)
  if only:
    rows = {name: rows[name] for name in rows if name in ("relu", *only)}
  results = []
  for dtype_name in dtypes:
    dtype = jnp.dtype(dtype_name)
    x = jax.random.normal(jax.random.key(1), shape, dtype)
    g = jax.random.normal(jax.random.key(2), shape, dtype)
    calls = {}
    for name, (fn, params) in rows.items():
      params = {k: jnp.asarray(v) for k, v in params.items()}
      fwd, fwd_bwd = _forward(fn), _forward_backward(fn)
      calls[(name, "fwd")] = lambda fwd=fwd, params=params: fwd(x, params)
      calls[(name, "fwd+bwd")] = lambda fwd_bwd=fwd_bwd, params=params: fwd_bwd(x, params, g)
    medians = timing.round_robin(calls, repeats, warmup)
    for name in rows:
      row: dict[str, Any] = {"dtype": dtype_name, "rectifier": name}
      for pass_ in ("fwd", "fwd+bwd"):
        seconds = medians[(name, pass_)]
        row[f"{pass_}_ms"] = 1e3 * seconds
        row[f"{pass_}_vs_relu"] = seconds / medians[("relu", pass_)]
      results.append(row)
  return results


def format_table(results: list[dict[str, Any]]) -> str:
  lines = [f"| {'dtype':8} | {'rectifier':23} | {'fwd ms':>8} | {'fwd / ReLU':>10} | "
           f"{'fwd+bwd ms':>10} | {'fwd+bwd / ReLU':>14} |",
           f"|{'-' * 10}|{'-' * 25}|{'-' * 9}:|{'-' * 11}:|{'-' * 11}:|{'-' * 15}:|"]
  for r in results:
    lines.append(f"| {r['dtype']:8} | {r['rectifier']:23} | {r['fwd_ms']:8.2f} | "
                 f"{r['fwd_vs_relu']:10.2f} | {r['fwd+bwd_ms']:10.2f} | "
                 f"{r['fwd+bwd_vs_relu']:14.2f} |")
  return "\n".join(lines)


def environment() -> dict[str, Any]:
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "machine": platform.machine(),
      "processor": platform.processor(),
      "python": platform.python_version(),
  }


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="128,32,32,192",
                      help="NHWC shape, comma separated (default: %(default)s)")
  parser.add_argument("--dtypes", default="float32,bfloat16",
                      help="comma separated (default: %(default)s)")
  parser.add_argument("--repeats", type=int, default=11)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--only", default="",
                      help="comma separated row names to time besides relu (default: all)")
  parser.add_argument("--json", default=None, help="also write the results here")
  args = parser.parse_args(argv)
  shape = tuple(int(d) for d in args.shape.split(","))
  dtypes = [d for d in args.dtypes.split(",") if d]
  only = [o for o in args.only.split(",") if o] or None
  results = run(shape, dtypes, args.repeats, args.warmup, only)
  env = environment()
  print(f"shape {shape}, median of {args.repeats} after {args.warmup} warm-up, "
        f"jax {env['jax']} on {env['backend']} ({len(env['devices'])} device), {env['date']}")
  print(format_table(results))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"benchmark": "rectifiers", "shape": list(shape), "repeats": args.repeats,
                 "warmup": args.warmup, "environment": env, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
