"""Which devices a run uses: every CPU core as its own device, and a mesh the batch divides.

XLA:CPU runs one device's convolutions on a thread pool, and for these networks that pays
off less than data parallelism over one single-threaded device per core: the NIN train step
(batch 128) trained 125-131 images/s on one two-threaded device and 146-147 on two
single-threaded ones (2-core machine, README "Performance"). `configure_cpu_devices` sets
that layout up before JAX creates its CPU backend; afterwards it can only say what it found.
The batch is split over the devices, so the run's numbers do not depend on their count
(train_step draws its noise for the global batch), apart from float rounding.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from absl import logging
import jax

def single_thread_xla_flags(devices: int) -> str:
  """XLA_FLAGS for one compute thread per device (each device is a core's worth of work).

  With one device the runtime's own thread pool is cut to one thread too. With several it
  must not be: their computations run concurrently on that pool, and a collective (the
  gradient all-reduce) waits for all of them, so one thread deadlocks it (XLA aborts after
  40 s: "Expected 2 threads to join the rendezvous").
  """
  flags = "--xla_cpu_multi_thread_eigen=false"
  return f"{flags} intra_op_parallelism_threads=1" if devices == 1 else flags

FORCED_COUNT_FLAG = "--xla_force_host_platform_device_count"


def forced_device_count(xla_flags: str) -> int | None:
  """The CPU device count XLA_FLAGS forces (FORCED_COUNT_FLAG=N), or None."""
  forced = re.search(FORCED_COUNT_FLAG + r"=(\d+)", xla_flags)
  return int(forced.group(1)) if forced else None


def usable_cores() -> int:
  """Cores this process may run on (its affinity mask, e.g. under taskset), else all."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def cpu_device_count(cpu_devices: int) -> int:
  """config.cpu_devices as a device count: 0 is one per usable core."""
  if cpu_devices < 0:
    raise ValueError(f"cpu_devices must be >= 0 (0: one per core, 1: one XLA:CPU device "
                     f"with its own threads, N: N single-threaded devices), got {cpu_devices}.")
  return cpu_devices or usable_cores()


# XLA:CPU sizes both of its client's thread pools from this variable (else from the cores),
# and never below the device count.
_CLIENT_THREADS = "PJRT_NPROC"


def client_threads(devices: int) -> int:
  """Threads for XLA:CPU's client pools with `devices` devices in one process.

  XLA:CPU runs each device's part of a multi-device program on its client pool, holding
  the thread until the part ends (waiting, in a collective, for the other devices), and it
  runs a part's independent operations on a second pool of the same size, where the train
  step's two all-reduces can wait side by side. At the default size, max(cores, devices),
  waiting parts could hold every thread while the last device's part waited for one: XLA
  then aborts after 40 s ("Expected 2 threads to join the rendezvous"). With the first
  devices - 1 parts holding two threads each, 2 x devices - 1 leaves the last one a
  thread. More costs speed on few cores: the NIN step (batch 128, 2 devices, 2 cores) ran
  34.5 images/s with 3 threads, 35.5 with 2 and 31 with 5 (medians of 2-4 runs). Compute
  stays one thread per device (`single_thread_xla_flags`)."""
  return max(usable_cores(), 2 * devices - 1)


def configure_cpu_devices(cpu_devices: int) -> None:
  """Makes the CPU backend `cpu_device_count(cpu_devices)` devices, single-threaded when
  there are several, with `client_threads` for XLA's pools; call before JAX's first
  computation. An explicit --xla_force_host_platform_device_count in XLA_FLAGS wins over
  `cpu_devices`, and an explicit PJRT_NPROC over `client_threads`. If the backend already
  exists (a notebook ran JAX first), says so once and leaves it as it is."""
  wanted = cpu_device_count(cpu_devices)
  flags = os.environ.get("XLA_FLAGS", "")
  if (forced := forced_device_count(flags)) is not None:
    if forced > 1:
      os.environ.setdefault(_CLIENT_THREADS, str(client_threads(forced)))
    return
  try:
    jax.config.update("jax_num_cpu_devices", wanted)
  except RuntimeError:  # JAX's backends exist already: nothing can change now.
    have = len(jax.devices("cpu"))
    if have != wanted:
      logging.log_first_n(
          logging.WARNING, "JAX's CPU backend was created before training set it up: "
          "training uses its %d CPU device(s), not %d (config.cpu_devices=%d). Run training "
          "before any other JAX call (e.g. first in a fresh kernel) to get them.", 1, have,
          wanted, cpu_devices)
    return
  if wanted > 1:
    os.environ.setdefault(_CLIENT_THREADS, str(client_threads(wanted)))
    if "xla_cpu_multi_thread_eigen" not in flags:
      os.environ["XLA_FLAGS"] = f"{flags} {single_thread_xla_flags(wanted)}".strip()


def mesh_devices(devices: Sequence[jax.Device], batch_sizes: Sequence[int]) -> list[jax.Device]:
  """The first n of `devices`, n the largest count that divides every batch size; with
  several processes all devices are needed (each feeds its own), so none are dropped."""
  n = len(devices)
  if jax.process_count() == 1:
    while any(b % n for b in batch_sizes):
      n -= 1
  if n < len(devices):
    logging.warning("The batch sizes %s do not divide over %d devices: using %d of them.",
                    list(batch_sizes), len(devices), n)
  return list(devices[:n])
