"""Round-robin timing: the way every benchmark here compares configurations on a shared machine.

Each round runs every call once, in turn, after `warmup` untimed rounds; the median over
rounds is reported. A burst of load from another job then hits every configuration of a
round alike, so ratios measured in one run hold even when absolute times drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import jax

K = TypeVar("K", bound=Hashable)


def round_robin(calls: Mapping[K, Callable[[], Any]], repeats: int,
                warmup: int) -> dict[K, float]:
  """{name: median seconds per call}; each call's result is waited for (JAX's async
  dispatch), whatever it returns (JAX arrays, PyTorch tensors, pytrees)."""
  for _ in range(warmup):
    for call in calls.values():
      jax.block_until_ready(call())
  times: dict[K, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def compile_step(step: Any, state: Any, args: tuple[Any, ...]
                 ) -> tuple[Any, float, dict[str, int]]:
  """(the compiled step, seconds to lower and compile it, the memory XLA planned for it)."""
  start = time.perf_counter()
  compiled = step.lower(state, *args).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  stats = {name: int(getattr(memory, f"{name}_in_bytes", 0) or 0)
           for name in ("temp_size", "argument_size", "output_size", "alias_size",
                        "peak_memory")}
  # XLA:CPU's `peak_memory` covers the arguments only; the planned peak is the buffers
  # live across the call (arguments, outputs not aliased to donated arguments) plus the
  # temporaries' heap-simulated peak.
  stats["xla_peak_memory"] = stats.pop("peak_memory")
  stats["peak_memory"] = (stats["argument_size"] + stats["output_size"] - stats["alias_size"]
                          + stats["temp_size"])
  return compiled, seconds, stats
