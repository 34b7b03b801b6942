"""A full disk as one message: found in any error, named with the directory and the space.

A write that fails for lack of space (ENOSPC, or EDQUOT: a quota) can surface anywhere: in
a JSON record, an event file, a figure, or deep inside orbax and TensorStore, which wrap it
in their own exceptions or only repeat its text. `full_disk_error` finds it in an error's
chain; `exit_if_full` is what the entry points (train.py, sweep.py, evaluate.py, through
training/exit_codes.py) do with any error: a full disk becomes `message`, one line, instead
of a traceback, and `mentions_full_disk` lets their log filter (training/process.py) drop
the libraries' own reports of the failed writes (the tracebacks of the checkpoint
library's threads after a failed save are dropped there too). Nothing is lost by stopping
there: records are replaced atomically and an unfinished checkpoint has no digest, so the
rerun resumes from the last complete one; a command that only reads the run (evaluate.py)
says what it did not write instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys

from absl import logging

from training import run_directory

FULL = (errno.ENOSPC, errno.EDQUOT)
# What wrappers that keep only the text (TensorStore, orbax's threads) still say.
_TEXTS = tuple(os.strerror(code) for code in FULL)


def full_disk_error(error: BaseException) -> BaseException | None:
  """The error in `error`'s chain (causes, contexts, an exception group's members) that
  says a disk or quota is full, or None."""
  pending, seen = [error], set()
  while pending:
    e = pending.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in FULL or mentions_full_disk(str(e)):
      return e
    pending += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
  return None


def mentions_full_disk(text: str) -> bool:
  return any(t in text for t in _TEXTS)


def _size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def _human(size: float) -> str:
  for unit in ("bytes", "KB", "MB", "GB"):
    if size < 1024 or unit == "GB":
      return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
    size /= 1024
  return ""


def checkpoint_size(workdir: str) -> int | None:
  """Bytes of the run's newest checkpoint: what its next save needs, at least."""
  directory = os.path.join(workdir, run_directory.CHECKPOINTS)
  steps = [n for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  return _size(os.path.join(directory, max(steps, key=int))) if steps else None


def message(error: BaseException, directory: str, unwritten: str | None = None) -> str:
  """One paragraph: what failed where, the free space now, and what to do. For a training
  (`unwritten` None): the size of a checkpoint of the run in `directory` (if it has one),
  and that a rerun resumes. For a command that only reads the run and writes beside it
  (evaluate.py): that `unwritten` (e.g. "The evaluation") was not written and the run's
  record is untouched."""
  file = getattr(error, "filename", None)
  quota = (isinstance(error, OSError) and error.errno == errno.EDQUOT) or _TEXTS[1] in str(error)
  existing = os.path.abspath(directory)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  free = shutil.disk_usage(existing).free
  where = (f"{'Over the disk quota' if quota else 'No space left on the disk'} of "
           f"{directory}{f' (writing {file})' if file else ''}: {_human(free)} free there now")
  if unwritten is not None:
    return (f"{where}. {unwritten} was not written, and the run's record is untouched. Free "
            "space there (or raise the quota) and rerun the same command.")
  size = checkpoint_size(directory)
  return (f"{where}{f'; a checkpoint of this run takes {_human(size)}' if size else ''}. "
          "Free space there (or raise the quota) and rerun the same command: it resumes from "
          "the last complete checkpoint, and nothing recorded is lost.")


def exit_if_full(error: BaseException, directory: str, unwritten: str | None = None) -> None:
  """For an entry point's `except`: if `error` is a full disk, logs `message` (`unwritten`
  as there) and ends the process with status 1 at once; otherwise returns. At once: the
  checkpoint library's threads and exit handlers would otherwise still report the failed
  writes at shutdown, after the message. Every record is already whole on disk, and the
  kernel releases the run's lock."""
  if (full := full_disk_error(error)) is None:
    return
  logging.error("%s", message(full, directory, unwritten))
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access
