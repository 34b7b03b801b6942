"""training/process.py: what the scripts set up in their process, in milliseconds."""

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
