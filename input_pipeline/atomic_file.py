"""Writing a file whole or not at all: the one way the project replaces a file on disk.

`write(path, writer)` gives one guarantee, whatever is written (a JSON record, the metrics,
the mean image, a decoded-image cache, a figure): a reader of `path` sees its old content
or the new one, never a part, and after `write` returns the new content survives a crash
of the machine. The bytes go to a temporary file beside `path` (same directory, so the
rename cannot cross file systems), which is flushed and fsynced, renamed over `path`
(`os.replace`), and the directory is fsynced so that the rename itself is on disk. On any
failure, a KeyboardInterrupt included, the temporary file is removed and `path` keeps its
old content.

Only a SIGKILL (or a power cut) can leave a temporary file behind. Its name says which
process wrote it (`NAME.tmp<pid>@<host>-<random>`), so that the next writer of the
directory can remove those of dead processes (`remove_stale`).

Here rather than in training/ because the input pipeline writes caches too and must not
import training; it uses the standard library only.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
from collections.abc import Callable
from typing import IO

# NAME.tmp<pid>@<host>-<8 random characters> (tempfile.mkstemp's), or older code's
# NAME.tmp<pid> (no host: taken to be this one).
_TEMPORARY = re.compile(r"^.+\.tmp(?P<pid>\d+)(?:@(?P<host>[^/]+)-[a-z0-9_]{8})?$")


def write(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], object]) -> None:
  """Replaces `path` with what `writer(file)` writes into a binary file object, atomically
  and durably (the module's guarantee). `path`'s directory must exist. An OSError while
  writing names `path` (not the temporary file)."""
  path = os.fspath(path)
  directory, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix=f"{name}.tmp{os.getpid()}@{socket.gethostname()}-")
  try:
    with os.fdopen(fd, "wb") as f:
      writer(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    try:
      os.unlink(tmp)
    except FileNotFoundError:  # the rename had happened
      pass
    if isinstance(e, OSError) and e.filename in (None, tmp):
      e.filename = path  # what failed to be written is `path`, not our temporary name
    raise
  _fsync_directory(directory)


def write_text(path: str | os.PathLike[str], text: str) -> None:
  """`write` of `text`, UTF-8 encoded."""
  write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_directory(directory: str) -> None:
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  except OSError as e:
    if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot: nothing to do
      raise
  finally:
    os.close(fd)


def is_stale(name: str, host: str, alive: Callable[[int], bool]) -> bool:
  """Whether file `name` is a temporary file of `write` whose process, on `host` (this
  machine), is gone: `alive(pid)` says whether a process runs. A temporary file of another
  host's process is never stale here (it may be in use: its pid means nothing here)."""
  match = _TEMPORARY.match(name)
  if match is None or match["host"] not in (None, host):
    return False
  return not alive(int(match["pid"]))


def process_alive(pid: int) -> bool:
  """Whether process `pid` runs on this machine (ours, or another user's)."""
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale(directory: str | os.PathLike[str]) -> list[str]:
  """Removes the temporary files that killed writers left in `directory` (not below it);
  returns their names. A missing directory has none."""
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return []
  host, removed = socket.gethostname(), []
  for name in sorted(names):
    if is_stale(name, host, process_alive):
      try:
        os.unlink(os.path.join(directory, name))
        removed.append(name)
      except FileNotFoundError:  # another process removed it first
        pass
  return removed
