"""input_pipeline/atomic_file.py and the sites that write through it: a file is replaced
whole or not at all, and no temporary file outlives a failure (or, after a SIGKILL, the
next writer of its directory)."""

import errno
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline import atomic_file
from training import figures
from training import run_directory as rd


class Interrupted(Exception):
  pass


def _half_then(error):
  """A writer that writes half a file, then raises `error` (a serializer that fails)."""
  def writer(f):
    f.write(b'{"half": ')
    raise error
  return writer


@pytest.mark.parametrize("error", [ValueError("cannot serialize"), KeyboardInterrupt(),
                                   OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))])
def test_a_write_that_fails_midway_keeps_the_old_content_and_leaves_no_temporary_file(
    tmp_path, error):
  path = tmp_path / "record.json"
  path.write_text("old")
  with pytest.raises(type(error)):
    atomic_file.write(path, _half_then(error))
  assert path.read_text() == "old"
  assert os.listdir(tmp_path) == ["record.json"]


def test_a_failed_write_names_the_file_it_was_writing_not_its_temporary_name(tmp_path):
  path = tmp_path / "record.json"
  with pytest.raises(OSError) as raised:
    atomic_file.write(path, _half_then(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
  assert raised.value.filename == str(path)


def test_a_write_replaces_the_file_whole(tmp_path):
  path = tmp_path / "x.npy"
  atomic_file.write(path, lambda f: np.save(f, np.arange(3)))
  np.testing.assert_array_equal(np.load(path), np.arange(3))
  atomic_file.write_text(tmp_path / "y.txt", "é\n")
  assert (tmp_path / "y.txt").read_text(encoding="utf-8") == "é\n"
  assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.txt"]


def _full_disk_on_fsync(monkeypatch):
  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, "fsync", full)


def test_a_json_record_that_fails_to_reach_the_disk_leaves_no_temporary_file(tmp_path,
                                                                               monkeypatch):
  path = str(tmp_path / "config.json")
  rd.write_json(path, {"a": 1})
  _full_disk_on_fsync(monkeypatch)
  with pytest.raises(OSError, match="No space left"):
    rd.write_json(path, {"a": 2})
  monkeypatch.undo()
  assert rd.read_json(path) == {"a": 1}
  assert os.listdir(tmp_path) == ["config.json"]


def test_a_figure_whose_rendering_fails_leaves_no_temporary_file(tmp_path):
  fig = figures.figure()
  fig.subplots().plot([0, 1], [1, 0])
  path = str(tmp_path / "curves.png")
  figures.save(fig, path)
  before = open(path, "rb").read()

  def fails(target, **kwargs):  # half a PNG, then an error
    if isinstance(target, str):  # a path, as figures.save once passed it
      with open(target, "wb") as f:
        f.write(b"\x89PNG\r\n")
    else:
      target.write(b"\x89PNG\r\n")
    raise Interrupted("rendering failed")
  fig.savefig = fails
  with pytest.raises(Interrupted):
    figures.save(fig, path)
  assert open(path, "rb").read() == before and figures.is_whole_png(path)
  assert os.listdir(tmp_path) == ["curves.png"]


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_the_temporary_files_of_killed_writers_are_removed_and_no_others(tmp_path):
  host, dead = socket.gethostname(), _dead_pid()
  stale = [f"x.json.tmp{dead}@{host}-abcd_123", f"y.json.tmp{dead}"]  # and older code's
  kept = [f"x.json.tmp{os.getpid()}@{host}-abcd_123",  # a live writer's
          f"x.json.tmp{dead}@another-host.example-abcd_123",  # its pid means nothing here
          "x.json", "notes.tmp"]
  for name in stale + kept:
    (tmp_path / name).write_text("")
  assert atomic_file.remove_stale(tmp_path) == sorted(stale)
  assert sorted(os.listdir(tmp_path)) == sorted(kept)
  assert atomic_file.remove_stale(tmp_path / "missing") == []
