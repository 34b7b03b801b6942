"""SIGINT and SIGTERM as a request to stop cleanly: the loop sees a flag, saves and exits.

A second signal while the first is being handled raises KeyboardInterrupt at once (the
user insists). In a thread other than the main one (some notebook runners) no handler can
be installed, and signals keep their default behaviour.

With several processes a signal may reach only some of them (clusters notify hosts of a
preemption at different moments), and a process that stops alone leaves the others
waiting in a collective. `agreed_stop` makes them decide together: every `every` steps they
exchange their flags (an all-gather), and all stop at that same step if any was asked,
so that the checkpoint they save is one consistent step.
"""

from __future__ import annotations

import signal
from typing import Any, Self

import jax
from jax.experimental import multihost_utils
import numpy as np

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
  """A command stopped on request; `signum` is the signal that asked, and `saved` whether
  a training saved a checkpoint first (not when it stopped before its first step)."""

  def __init__(self, message: str, signum: int, saved: bool = True):
    super().__init__(message)
    self.signum, self.saved = signum, saved


class StopRequest:
  """`with StopRequest() as stop:` ... `if stop.received: save and leave`."""

  def __init__(self):
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> Self:
    try:
      for sig in STOP_SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    except ValueError:  # not the main thread.
      pass
    return self

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    if self.received is not None:
      raise KeyboardInterrupt(f"Stopped by a second signal ({signal.Signals(signum).name}) "
                              "without saving.")
    self.received = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class RaiseOnSignal(StopRequest):
  """Where a stop signal has nothing to save (loading, compiling, evaluating, reporting):
  it interrupts at once, as a KeyboardInterrupt naming the signal (a training's own
  StopRequest replaces this handler while it trains). A library may swallow that
  exception (one raised inside a callback from C is only printed), so `check` raises it
  again at the next point where the command can stop without writing anything partial."""

  def _handle(self, signum: int, frame: Any) -> None:
    super()._handle(signum, frame)
    raise KeyboardInterrupt(signal.Signals(signum).name)

  def check(self) -> None:
    """Raises KeyboardInterrupt if a signal was received (and swallowed on its way)."""
    if self.received is not None:
      raise KeyboardInterrupt(signal.Signals(self.received).name)


def agreed_stop(stop: StopRequest, step: int, every: int) -> tuple[int, list[int]] | None:
  """(signal, the processes that received it) if the run stops at `step`, else None.

  One process decides alone, at any step. Several processes decide at steps that are
  multiples of `every`, all of them together.
  """
  if jax.process_count() == 1:
    return (stop.received, [0]) if stop.received else None
  if step % every:
    return None
  received = multihost_utils.process_allgather(np.int32(stop.received or 0))
  asked = [int(p) for p in np.flatnonzero(received)]
  return (int(received[asked[0]]), asked) if asked else None
