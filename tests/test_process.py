"""training/process.py: what the scripts set up in their process, in milliseconds."""

import asyncio
import sys

from absl import logging
import pytest

from training import process


def test_live_processes_is_none_without_a_coordination_service():
  assert process.live_processes([0, 1]) is None  # this test process never joined one


def test_live_processes_asks_the_coordination_client(monkeypatch):
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  class Client:
    def get_live_nodes(self, processes):
      assert processes == [0, 1, 2]
      return [0, 2]

  monkeypatch.setattr(distributed.global_state, "client", Client())
  assert process.live_processes((0, 1, 2)) == [0, 2]


@pytest.mark.parametrize("broken", ["no module", "no client call", "service gone"])
def test_live_processes_is_none_when_jax_cannot_answer(monkeypatch, broken):
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  class Gone:
    def get_live_nodes(self, processes):
      raise RuntimeError("UNAVAILABLE: failed to connect to the coordination service")

  if broken == "no module":  # a JAX that moved its internals: importing them fails.
    monkeypatch.setitem(sys.modules, "jax._src.distributed", None)
  else:
    monkeypatch.setattr(distributed.global_state, "client",
                        object() if broken == "no client call" else Gone())
  assert process.live_processes([0, 1]) is None


def test_quiet_library_info_logs_adds_its_filter_once():
  handler = logging.get_absl_handler()
  before = list(handler.filters)
  handler.filters[:] = []
  try:
    process.quiet_library_info_logs()
    process.quiet_library_info_logs()
    assert len(handler.filters) == 1
  finally:
    handler.filters[:] = before



def test_the_checkpoint_librarys_callbacks_on_a_closed_loop_print_nothing(monkeypatch):
  # What TensorStore's threads do when a checkpoint write completes after orbax closed the
  # save's event loop (a full disk): an unraisable "Event loop is closed", which Python
  # prints with its traceback; here from a __del__, which Python reports the same way.
  printed = []
  monkeypatch.setattr(sys, "unraisablehook", lambda u: printed.append(u.exc_value))
  process.quiet_closed_loop_callbacks()
  process.quiet_closed_loop_callbacks()  # once only
  loop = asyncio.new_event_loop()
  loop.close()

  class Callback:
    def __init__(self, error=None):
      self.error = error

    def __del__(self):
      if self.error:
        raise self.error
      loop.call_soon_threadsafe(print)

  Callback()
  Callback(ValueError("another error"))
  assert [str(e) for e in printed] == ["another error"]  # others still printed
