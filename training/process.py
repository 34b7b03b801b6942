"""What a command-line entry point sets up in its own process: log filters, the compilation
cache, the CPU devices and jax.distributed; and, in a multi-process run, which processes
still answer and the one line that names a lost one.

`python train.py`, `python sweep.py` and `python evaluate.py` call `configure` first in
their `main`. The library (`train.train_and_evaluate`, `training.builder.setup`, `sweep.run_sweep`,
`evaluate.evaluate_run`) never does: it sets no environment variable, JAX option, log
filter or matplotlib backend, and computes on the devices JAX already has. A notebook or a
test that trains in process therefore gets JAX's defaults (on CPU one device, with XLA's
own threads) unless it calls `configure` itself before its first JAX computation. Flax's
examples draw the same line: their main.py sets up the platform, train.py computes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from absl import logging
from absl.logging import converter
import jax

from training import compilation_cache, devices, disk_space, supervisor

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project_info_or_warnings(record: Any) -> bool:
  ours = record.pathname.startswith(_REPOSITORY) and "site-packages" not in record.pathname
  if not ours and disk_space.mentions_full_disk(record.getMessage()):
    return False  # the entry point says it once (disk_space.exit_if_full)
  return record.levelno >= converter.STANDARD_WARNING or ours


def quiet_library_info_logs() -> None:
  """Keeps INFO lines from this project only; libraries (orbax, XLA) log warnings and up,
  except their reports of writes that failed on a full disk (the entry point reports it).
  Idempotent (logging adds a filter once)."""
  logging.get_absl_handler().addFilter(_project_info_or_warnings)


def is_closed_loop_callback(error: BaseException | None) -> bool:
  """Whether `error` is asyncio's "Event loop is closed": what TensorStore's threads raise
  when a write of a checkpoint completes after orbax has closed the save's event loop,
  which it does as soon as one write of the save fails (a full disk: one per write still
  in flight, a dozen tracebacks and more). The save's own error reaches the entry point,
  which reports it; these say nothing more."""
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def quiet_closed_loop_callbacks() -> None:
  """Drops the `is_closed_loop_callback` errors that TensorStore's threads hand to
  `sys.unraisablehook` (they print a traceback each, from threads the entry point cannot
  stop, before its one line); any other unraisable error is printed as before. Idempotent."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_callbacks", False):
    return

  def hook(unraisable: Any) -> None:
    if not is_closed_loop_callback(unraisable.exc_value):
      previous(unraisable)

  hook.drops_closed_loop_callbacks = True  # type: ignore[attr-defined]
  sys.unraisablehook = hook


def configure(cpu_devices: int | None = None) -> None:
  """Sets this process up for a command-line run: library INFO lines filtered, the
  checkpoint library's tracebacks after a failed save dropped, JAX's persistent
  compilation cache on, and, unless `cpu_devices` is None, the CPU devices
  (config.cpu_devices: 0 is one single-threaded device per core; training/devices.py).
  Call it before anything starts JAX's backend (jax.distributed included)."""
  quiet_library_info_logs()
  quiet_closed_loop_callbacks()
  compilation_cache.enable()
  if cpu_devices is not None:
    devices.configure_cpu_devices(cpu_devices)


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, heartbeat_timeout_s: int) -> None:
  """Joins a multi-process run (`jax.distributed.initialize`; None lets JAX detect the
  cluster), with gloo for collectives on CPU."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s)


def live_processes(processes: Sequence[int]) -> list[int] | None:
  """Those of `processes` that JAX's coordination service still hears from, or None when
  that cannot be known: no service (a single process), the service is gone (its host,
  process 0, died), or this JAX keeps its client elsewhere.

  JAX has no public call for it (jax.distributed offers initialize, is_initialized and
  shutdown), so this asks the client that jax._src.distributed holds. Anything that does
  not work gives None, and callers fall back to what is public: the failed collective's
  own error, and JAX ending the survivors after the heartbeat timeout, naming the lost.
  """
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    return [int(p) for p in distributed.global_state.client.get_live_nodes(list(processes))]
  except Exception:  # pylint: disable=broad-except
    return None


def failed_collective(error: BaseException) -> bool:
  """Whether `error` is a collective with the other processes of a multi-process run that
  failed: XLA's runtime error, or gloo's (raised as a ValueError naming Gloo). Asked
  without starting a JAX backend: a process that never joined one (`initialize_distributed`)
  has no other processes."""
  return (jax.distributed.is_initialized() and jax.process_count() > 1
          and (isinstance(error, jax.errors.JaxRuntimeError) or "Gloo" in str(error)))


def exit_naming_lost_processes(error: BaseException) -> None:
  """After a failed collective in a multi-process run: says which processes stopped
  answering, in one line, and exits 1 at once (a normal exit would wait for them in
  jax.distributed's shutdown, and JAX's own watchdog would end this process with a crash
  dump at the heartbeat timeout). With two processes the lost one is the other; with more,
  those JAX's coordination service no longer hears from, when it already knows."""
  everyone, me = list(range(jax.process_count())), jax.process_index()
  live = live_processes(everyone)
  lost = sorted(set(everyone) - set(live)) if live is not None else []
  if not lost and len(everyone) == 2:
    lost = [1 - me]
  first = str(error).split("\n")[0][-300:]
  who = supervisor.who_stopped(lost, len(everyone))
  logging.error("%s and %s (%s). Stopping this process; rerun every process to resume from "
                "the last checkpoint.", supervisor.CHILD_REPORT, who, first)
  logging.flush()
  os._exit(1)  # pylint: disable=protected-access
