"""Parameter counts and forward FLOPs per image of the paper's three networks.

FLOPs come from XLA's cost analysis of the compiled inference forward pass
(`jax.jit(...).lower(...).compile().cost_analysis()`), divided by the batch size; XLA
counts a multiply-add as 2 FLOPs. Nothing is executed, so this runs on any backend.

  python -m benchmarks.model_costs [--batch 8] [--rectifier relu]   # from the repo root
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp

import models

# (registry name, table name, classes as in the paper, input HWC, dataset)
NETWORKS = (
    ("nin", "NIN (Table 1)", 10, (32, 32, 3), "CIFAR-10"),
    ("nin", "NIN (Table 1)", 100, (32, 32, 3), "CIFAR-100"),
    ("ndsb", "NDSB net (Table 2)", 121, (70, 70, 1), "NDSB"),
    ("inception_bn", "Inception-BN (§3.1)", 100, (28, 28, 3), "CIFAR-100 crop"),
)


def measure(name: str, num_classes: int, input_shape: Sequence[int], batch: int,
            rectifier: str = "relu") -> tuple[int, float]:
  """(parameters, forward FLOPs per image) of one network."""
  model = models.create(name, num_classes=num_classes, rectifier=rectifier)
  x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init({"params": jax.random.key(0)}, x, train=False), x)
  params = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
  compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0]
  return params, float(cost["flops"]) / batch


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rectifier", default="relu")
  args = parser.parse_args()
  print(f"<!-- python -m benchmarks.model_costs --batch {args.batch} --rectifier {args.rectifier}; "
        f"jax {jax.__version__}, {jax.default_backend()} -->")
  print("| network | classes | params | forward GFLOPs/image | input |")
  print("|---|---:|---:|---:|---|")
  for name, title, classes, shape, dataset in NETWORKS:
    params, flops = measure(name, classes, shape, args.batch, args.rectifier)
    h, w, c = shape
    print(f"| {title} | {classes} | {params:,} | {flops / 1e9:.3f} | {h}x{w}x{c} ({dataset}) |")


if __name__ == "__main__":
  main()
