"""Batching with grain: shuffled, sharded, checkpointable training batches; exact eval.

Training: one seeded permutation of the split per epoch (a new one every epoch), cut
into global batches with drop_remainder; each process reads only its rows of every
global batch, so the global batch does not depend on the number of processes. Evaluation visits every example
exactly once across shards, padding with masked examples so that every shard yields the
same number of full batches (multi-host collectives line up).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Iterator, Mapping

from absl import flags
import grain
import jax
import numpy as np

from input_pipeline.sources import Source


def _check_shard(shard_index: int, shard_count: int) -> None:
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"Need 0 <= shard_index < shard_count, got shard_index={shard_index},"
                     f" shard_count={shard_count}.")


def _read_options() -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=min(16, os.cpu_count() or 1),
                           prefetch_buffer_size=256)


def _format(example: Mapping[str, Any]) -> dict[str, Any]:
  return {"image": np.asarray(example["image"], np.uint8),
          "label": np.int32(example["label"])}


def _shuffle_seed(seed: int) -> int:
  # grain reshuffles epoch e with seed + e; hashing the user seed keeps runs with
  # seeds s and s + 1 from sharing shifted sequences of permutations.
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Full training batches per epoch (drop_remainder), i.e. num_examples // batch."""
  if global_batch_size <= 0:
    raise ValueError(f"global_batch_size must be positive, got {global_batch_size}.")
  return num_examples // global_batch_size


def train_iterator(source: Source, *, batch_size: int, seed: int,
                   shard_index: int = 0, shard_count: int = 1,
                   worker_count: int = 0) -> grain.DatasetIterator:
  """An infinite, checkpointable iterator of training batches for this process.

  The global batch (batch_size * shard_count examples) is the same whatever the number
  of processes: one seeded permutation of the whole split per epoch, cut into global
  batches (drop_remainder), of which process `shard_index` reads rows
  [shard_index * batch_size, (shard_index + 1) * batch_size). Concatenated in process
  order, which is the order of jax.devices() in the mesh, the processes' batches are the
  single-process batch, so a run on N hosts computes what one host would.

  Args:
    source: random-access examples {"image": uint8 HWC, "label": int}.
    batch_size: examples per batch on this process (the per-process batch).
    seed: shuffle seed; the order is a function of the seed only, and differs from
      epoch to epoch.
    shard_index: this process's shard, usually jax.process_index().
    shard_count: number of shards, usually jax.process_count().
    worker_count: grain worker processes that read and decode (0: threads only).

  Returns:
    A grain DatasetIterator yielding {"image": uint8 (B, H, W, C), "label": int32 (B,)}.
    `get_state()` returns a JSON-serialisable dict (e.g. {"next_index": 12} without
    workers); `set_state(state)` continues at the exact next batch.
  """
  _check_shard(shard_index, shard_count)
  global_batch = batch_size * shard_count
  if not 0 < global_batch <= len(source):
    raise ValueError(f"batch_size={batch_size} must be in [1, {len(source) // shard_count}]: "
                     f"the global batch ({batch_size} x {shard_count} shards) must fit in the "
                     f"{len(source)}-example source (with drop_remainder a larger batch never "
                     "fills).")
  if worker_count < 0:
    raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
  rows = slice(shard_index * batch_size, (shard_index + 1) * batch_size)

  def read(global_indices: np.ndarray) -> dict[str, np.ndarray]:
    examples = [_format(source[int(i)]) for i in global_indices[rows]]
    return {"image": np.stack([e["image"] for e in examples]),
            "label": np.stack([e["label"] for e in examples])}

  ds = (grain.MapDataset.range(len(source))
        .shuffle(seed=_shuffle_seed(seed))
        # Batching before repeat() batches each epoch on its own, so that
        # drop_remainder drops the tail of every epoch (grain's BatchMapDataset).
        .batch(global_batch, drop_remainder=True)
        .repeat()
        # Only this process's rows are read (and decoded).
        .map(read)
        .to_iter_dataset(_read_options()))
  if worker_count:
    # grain's worker setup reads absl flags; outside absl.app (tests, notebooks) they
    # are unparsed and grain fails, so take their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(ds)


@dataclasses.dataclass(frozen=True, eq=False)
class _PaddedShard:
  """Examples at `indices` of `source`; index -1 is a padding example with mask False."""

  source: Source
  indices: np.ndarray
  image: np.ndarray  # A zero image of the right shape, for padding.

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i: int) -> dict[str, Any]:
    index = int(self.indices[i])
    if index < 0:
      return {"image": self.image, "label": np.int32(0), "mask": np.bool_(False)}
    return {**_format(self.source[index]), "mask": np.bool_(True)}


def eval_batches(source: Source, *, batch_size: int, shard_index: int = 0,
                 shard_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Evaluation batches that visit every example exactly once across all shards.

  Yields {"image": uint8 (B, H, W, C), "label": int32 (B,), "mask": bool (B,)}, B =
  batch_size always: padding examples (zeros, label 0) have mask False. Every shard
  yields ceil(ceil(N / shard_count) / batch_size) batches, the same number.
  """
  _check_shard(shard_index, shard_count)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  n = len(source)
  if n == 0:
    return iter(())
  num_batches = math.ceil(math.ceil(n / shard_count) / batch_size)
  indices = np.full(num_batches * batch_size, -1, np.int64)
  own = np.arange(shard_index, n, shard_count)
  indices[: len(own)] = own
  zero = np.zeros_like(_format(source[0])["image"])
  ds = (grain.MapDataset.source(_PaddedShard(source, indices, zero))
        .batch(batch_size)
        .to_iter_dataset(_read_options()))
  return iter(ds)


def to_device(batch: Mapping[str, np.ndarray],
              sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Assembles per-process batches into global arrays laid out by `sharding`.

  With a NamedSharding over a 'data' mesh axis, the global batch is the concatenation
  of every process's batch (docs/sources.md §4: make_array_from_process_local_data).
  """
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}
