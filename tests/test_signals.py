"""training/signals.py: a stop signal becomes a request, a second one an interruption."""

import os
import signal
import threading

import pytest

from training import signals


def test_a_signal_is_recorded_and_the_handlers_are_restored():
  before = [signal.getsignal(s) for s in signals.STOP_SIGNALS]
  with signals.StopRequest() as stop:
    assert stop.received is None
    assert signals.agreed_stop(stop, step=3, every=10) is None
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.received == signal.SIGTERM
    assert signals.agreed_stop(stop, step=3, every=10) == (signal.SIGTERM, [0])
  assert [signal.getsignal(s) for s in signals.STOP_SIGNALS] == before


def test_a_second_signal_interrupts_at_once():
  with signals.StopRequest():
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="second signal .SIGTERM. without saving"):
      os.kill(os.getpid(), signal.SIGTERM)


def test_outside_the_main_thread_nothing_is_installed():
  before = [signal.getsignal(s) for s in signals.STOP_SIGNALS]
  seen = []

  def run():
    with signals.StopRequest() as stop:
      seen.append([signal.getsignal(s) for s in signals.STOP_SIGNALS])
      seen.append(stop.received)

  thread = threading.Thread(target=run)
  thread.start()
  thread.join()
  assert seen == [before, None]


def test_stopped_carries_its_signal():
  stopped = signals.Stopped("saved at step 7", signal.SIGTERM)
  assert isinstance(stopped, KeyboardInterrupt) and stopped.signum == signal.SIGTERM
