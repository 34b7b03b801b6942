"""How a command-line entry point ends: one exit status per kind of ending, each with one line.

    0        it did what it was asked
    1        it failed: an error it expects (a bad config, data or run directory; the
             message says what to do), a full disk (training/disk_space.py), a lost
             process of a multi-process run (training/process.py); or any other error,
             which is a bug and keeps its traceback
    2        an argument it cannot use: a flag it cannot parse (training/command_line.py,
             before `main` runs), or what a command names `bad_arguments` (predict.py's
             folder without images)
    130      stopped by Ctrl-C or SIGTERM (a KeyboardInterrupt; train.py saves first)
    128 + N  a sweep stopped by signal N (`SignalStop`), after its trainings saved

train.py, sweep.py and evaluate.py (and predict.py, with its `bad_arguments`) run their
work through `run`, which maps what ended it to its status (`exit_status`) and its one line
(`end`); the supervisor of a multi-process run passes on its child's status
(training/supervisor.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from absl import logging

from training import disk_space, process

FAILED, BAD_ARGUMENT, STOPPED = 1, 2, 130

T = TypeVar("T")


class SignalStop(Exception):
  """A command stopped by signal `signum` once everything it ran had stopped; it exits
  128 + `signum` (an Exception, not a KeyboardInterrupt: callers that catch every error a
  sweep raises see it too)."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


def exit_status(error: BaseException, expected: tuple[type[BaseException], ...],
                bad_arguments: tuple[type[BaseException], ...] = ()) -> int | None:
  """The status a command that raised `error` exits with, or None for a bug (an error
  neither `expected`, nor `bad_arguments`, nor one of the kinds above: its traceback is
  kept)."""
  if isinstance(error, bad_arguments):
    return BAD_ARGUMENT
  if isinstance(error, SignalStop):
    return 128 + error.signum
  if isinstance(error, KeyboardInterrupt):
    return STOPPED
  if isinstance(error, SystemExit):
    return None  # it has its status already
  if (disk_space.full_disk_error(error) is not None or isinstance(error, expected)
      or process.failed_collective(error)):
    return FAILED
  return None


def end(error: BaseException, directory: str, expected: tuple[type[BaseException], ...],
        unwritten: str | None = None,
        bad_arguments: tuple[type[BaseException], ...] = ()) -> None:
  """Ends the process as `exit_status` says, with the error's one line; returns for a bug
  (the caller re-raises it). A full disk is `disk_space.message` for `directory` (with
  `unwritten` as there), a lost process `process.exit_naming_lost_processes`'s line."""
  status = exit_status(error, expected, bad_arguments)
  if status is None:
    return
  if status == BAD_ARGUMENT:
    logging.error("%s", error)
    sys.exit(status)
  if isinstance(error, (SignalStop, KeyboardInterrupt)):
    logging.warning("%s", error)
    sys.exit(status)
  disk_space.exit_if_full(error, directory, unwritten)  # before the expected: its message
  if isinstance(error, expected):
    logging.error("%s", error)
    sys.exit(FAILED)
  process.exit_naming_lost_processes(error)  # a failed collective, the one kind left


def run(work: Callable[[], T], directory: str, expected: tuple[type[BaseException], ...],
        unwritten: str | None = None,
        bad_arguments: tuple[type[BaseException], ...] = ()) -> T:
  """`work()`'s result; if it raises, the process ends as `end` says (a bug's traceback
  goes on up). `directory` is the run or sweep the command writes, for a full disk's
  message; `unwritten` is what a command that only reads runs did not write (see
  disk_space.message); `bad_arguments` the errors that mean its arguments cannot be used
  (status 2)."""
  try:
    return work()
  except BaseException as e:
    end(e, directory, expected, unwritten, bad_arguments)
    raise
