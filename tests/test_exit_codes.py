"""training/exit_codes.py: one exit status per kind of ending, for every entry point."""

import errno
import os
import signal

import pytest

from training import exit_codes


class Expected(ValueError):
  pass


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a/metrics.jsonl")


@pytest.mark.parametrize("error,status", [
    (Expected("a bad config"), 1),
    (ENOSPC, 1),
    (RuntimeError(f"save failed: {os.strerror(errno.ENOSPC)}"), 1),  # as orbax wraps it
    (KeyboardInterrupt("Stopped by SIGTERM at step 3"), 130),
    (exit_codes.SignalStop(signal.SIGTERM, "Sweep stopped by SIGTERM"), 128 + signal.SIGTERM),
    (ZeroDivisionError("a bug"), None),  # its traceback is kept
    (SystemExit(3), None),
])
def test_each_kind_of_ending_has_its_exit_status(error, status):
  assert exit_codes.exit_status(error, (Expected,)) == status


class NoImages(ValueError):
  pass


def test_arguments_a_command_cannot_use_exit_2():
  assert exit_codes.exit_status(NoImages("no images in DIR"), (ValueError,), (NoImages,)) == 2

  def work():
    raise NoImages("no images in DIR")
  with pytest.raises(SystemExit) as ended:
    exit_codes.run(work, "/runs/a", (ValueError,), bad_arguments=(NoImages,))
  assert ended.value.code == 2


def _ended(error):
  def work():
    raise error
  with pytest.raises(SystemExit) as ended:
    exit_codes.run(work, "/runs/a", (Expected,))
  return ended.value.code


def test_an_expected_error_and_a_stop_end_with_their_status():
  assert _ended(Expected("config.batch_size must be positive")) == 1
  assert _ended(KeyboardInterrupt("Stopped by SIGINT")) == 130
  assert _ended(exit_codes.SignalStop(signal.SIGINT, "Sweep stopped")) == 130


def test_a_bug_keeps_its_traceback_and_a_result_is_returned():
  def bug():
    raise ZeroDivisionError("a bug")
  with pytest.raises(ZeroDivisionError):
    exit_codes.run(bug, "/runs/a", (Expected,))
  assert exit_codes.run(lambda: {"test_error": 0.1}, "/runs/a", (Expected,)) == {
      "test_error": 0.1}
