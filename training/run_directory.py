"""The run directory: the files one training run writes, and the rules that make them a record.

    WORKDIR/config.json     the run's config (written before training starts)
    WORKDIR/dataset.json    the data it trains and evaluates on
    WORKDIR/mean_image.npy  the training split's mean image, the run's preprocessing constant
    WORKDIR/train_fingerprints.npy  a fingerprint of each training example, as the run
                            decoded it (input_pipeline/fingerprints.py): what evaluate.py
                            checks an evaluation split against
    WORKDIR/provenance.json the code versions that trained it, from which step (provenance.py)
    WORKDIR/parent.json     for a run started from another's checkpoint (config.init_from):
                            that run (its path relative to this one: `read_parent`),
                            the step and the changed config keys
    WORKDIR/metrics.jsonl   one row per evaluation, steps strictly increasing
    WORKDIR/steps.jsonl     one row per `log_every_steps` training steps (loss, learning
                            rate, images/s; records.StepRow), steps strictly increasing
    WORKDIR/summary.json    the final metrics; present only once the run has finished
    WORKDIR/failure.json    why its last training failed (an error, not a stop signal or a
                            kill); removed when a training of it starts again
    WORKDIR/curves.png      its learning curves
    WORKDIR/model/          the final model, exported (training/export.py)
    WORKDIR/evaluations/    evaluate.py's results on other test sets, one JSON file each
    WORKDIR/tensorboard/    the metrics as TensorBoard events (training/tensorboard.py)
    WORKDIR/profile/        `jax.profiler` traces of `config.profile_steps` steps
                            (training/profiler.py; `tensorboard --logdir WORKDIR/profile`)
    WORKDIR/checkpoints/    orbax checkpoints (training/checkpoints.py)
    WORKDIR/checkpoints.unusable/  checkpoints that could not be restored, moved aside
    WORKDIR/train.log       the output of a sweep's `--parallel` subprocess (`open_log`)
    WORKDIR/.lock           held, with the operating system's file lock, by the one writer
                            (evaluate.py takes it shared: never while a writer holds it);
                            it names the writer while it writes
    WORKDIR/.lock.reader.*  one per process that holds the lock shared, naming it, while
                            it reads

The rules (train.py, sweep.py and report.py read and write runs only through this module):

1. **One writer.** A process writes a run only while it holds `.lock` (`fcntl.flock`); a
   second one stops at once, naming the process and host that hold it: the writer, or the
   readers (an evaluation) that hold it shared. Each holder leaves its line only while it
   holds the lock, so the one named is never a process that has ended. The kernel releases
   the lock when its holder dies, so a crashed run never blocks the next.
2. **One config.** `config.json` is the config the run was started with. A rerun may change
   only keys that cannot change what was computed (`NEUTRAL_KEYS`: evaluation, logging and
   checkpoint cadence, where data and caches live, a `num_epochs` not below the epoch
   reached); any other difference stops it before anything is written, listing each key.
   Keys missing from an older record stand for their defaults. Every checkpoint keeps a
   copy of the config record, so a `config.json` edited by hand is refused the same way.
3. **Records match checkpoints.** A resumed run first drops the metrics rows and the step
   rows after the checkpoint it resumes from (all rows when there is none), so rows are
   never doubled, never out of order, and every row was produced by the training that
   continues. The TensorBoard events (when the writer has them: `RunDirectory(events=...)`)
   are rewritten from the kept rows at the same moment.
4. **Finished** means `summary.json` exists and the last row reached the recorded
   `num_epochs`; the summary is written last (after the curves, the export and the closed
   event files) and removed when a run trains further.
5. **One code version at a time, all of them recorded.** A resume under another commit or
   other library versions goes on, and `provenance.json` lists each (from_step, version)
   the kept training ran under.
6. **Atomic writes.** Every file but the appended metrics is replaced whole
   (input_pipeline/atomic_file.py: a temporary file, fsync, rename, the directory fsynced;
   the temporary file removed on any failure, and those of killed writers by the next
   training); a torn last metrics line (a crash mid-append) is ignored on reading and
   dropped on resume. Any other record that is not what this code writes (invalid JSON, a
   row that is not a row) stops every reader with a DamagedRecordError naming the file and
   what to do.
7. **Valid JSON only.** A NaN or an infinity is never written (JSON has none; Python's
   bare `NaN` is not JSON): writing one is refused, naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np

from input_pipeline import atomic_file, fingerprints
from training import provenance, records

CONFIG, DATASET, METRICS, SUMMARY = "config.json", "dataset.json", "metrics.jsonl", "summary.json"
STEPS = "steps.jsonl"
MEAN_IMAGE, PROVENANCE, EVALUATIONS = "mean_image.npy", "provenance.json", "evaluations"
FAILURE, PARENT = "failure.json", "parent.json"
TRAIN_FINGERPRINTS = "train_fingerprints.npy"
CURVES, CHECKPOINTS, UNUSABLE, LOCK = ("curves.png", "checkpoints", "checkpoints.unusable",
                                      ".lock")
LOG = "train.log"
PROFILE = "profile"

# Config keys a rerun may change: they decide when things are evaluated, logged and saved,
# and where inputs and caches are read from, not what is computed. `num_epochs` may change
# while it is not below the epoch the run has reached (the schedule is in absolute epochs).
NEUTRAL_KEYS = frozenset({"eval_every_epochs", "log_every_steps", "checkpoint_every_epochs",
                          "keep_checkpoints", "eval_batch_size", "worker_count", "cache_dir",
                          "data_dir", "num_epochs", "cpu_devices", "activation_statistics",
                          "activation_histogram_every_epochs", "max_image_pixels",
                          "profile_steps"})


class RunDirectoryError(RuntimeError):
  """The run directory cannot be used as asked; the message says why and what to do."""


class RunInUseError(RunDirectoryError):
  """Another process holds the run directory's lock."""


class ConfigMismatchError(RunDirectoryError):
  """A rerun's config differs from the recorded one in a key that changes results."""


class DamagedRecordError(RunDirectoryError, ValueError):
  """A record file is not what this code writes (invalid JSON, not an object, not a row).
  A ValueError too, as the json module's errors it replaces were."""


class NonFiniteValueError(RunDirectoryError):
  """A record to be written holds a NaN or an infinity (rule 7)."""


# --- Files ---------------------------------------------------------------------------------


def non_finite_keys(obj: Any, prefix: str = "") -> list[str]:
  """The dotted keys (list items by index) of the NaNs and infinities inside `obj`."""
  if isinstance(obj, Mapping):
    return [k for key, value in obj.items() for k in non_finite_keys(value, f"{prefix}{key}.")]
  if isinstance(obj, (list, tuple)):
    return [k for i, value in enumerate(obj) for k in non_finite_keys(value, f"{prefix}{i}.")]
  if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
    return [prefix.rstrip(".")]
  return []


def json_text(obj: Any, path: str, indent: int | None = None) -> str:
  """`obj` as JSON for `path`; NonFiniteValueError naming the keys of any NaN or infinity."""
  try:
    return json.dumps(obj, indent=indent, allow_nan=False)
  except ValueError:
    keys = non_finite_keys(obj)
    raise NonFiniteValueError(
        f"Refusing to write {path}: {', '.join(keys[:10]) or 'a value'} "
        f"{'is' if len(keys) == 1 else 'are'} not finite (NaN or infinite), which JSON cannot "
        "hold.") from None


def write_json(path: str, obj: Any) -> None:
  """Replaces `path` with `obj` as JSON, atomically: readers see the old file or the new one.
  Keys keep their order (a network's layers are listed in the order it runs them). A NaN
  or an infinity is refused (NonFiniteValueError) and leaves the old file."""
  atomic_file.write_text(path, json_text(obj, path, indent=2) + "\n")


def json_values(obj: Any) -> Any:
  """`obj` as JSON gives it back (tuples become lists), the form every record is compared in."""
  return json.loads(json.dumps(obj))


# What to do about a damaged record, by file name (any other: restore it from a copy).
_REPAIR = {
    CONFIG: "start the run again in a new workdir (a sweep's sweep.json holds its base "
            "config)",
    DATASET: "if the run has not finished, remove it and rerun the training, which writes "
             "it again",
    SUMMARY: "remove it and rerun the training, which writes it again from the final "
             "checkpoint",
    PROVENANCE: "remove it (the record of the code versions that trained the run is then "
                "lost)",
    METRICS: "start the run again in a new workdir",
    STEPS: "remove it (the per-step curves recorded so far are then lost; training goes on)",
}


def damaged(path: str, what: str) -> DamagedRecordError:
  """The error for a record file that is not what this code writes, saying what to do."""
  repair = _REPAIR.get(os.path.basename(path))
  return DamagedRecordError(f"{path} is damaged: {what}. It was cut off or edited by hand. "
                           f"Restore it from a copy{f', or {repair}' if repair else ''}.")


def read_json(path: str) -> dict[str, Any]:
  """The JSON object in `path`; DamagedRecordError naming the file if it holds none."""
  try:
    with open(path, "rb") as f:
      obj = json.loads(f.read())
  except json.JSONDecodeError as e:
    raise damaged(path, f"not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
  except UnicodeDecodeError:
    raise damaged(path, "not text") from None
  if not isinstance(obj, dict):
    raise damaged(path, f"it holds a JSON {type(obj).__name__}, not an object")
  return obj


def read_rows(path: str) -> list[records.Row]:
  """The rows of a metrics.jsonl; a torn last line (a crash mid-write) is left out."""
  return cast(list[records.Row], _read_jsonl_rows(path))


def _read_jsonl_rows(path: str) -> list[dict[str, Any]]:
  """The rows of a metrics.jsonl or steps.jsonl; a torn last line (a crash mid-write) is
  left out."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    shown = repr(line[:80].decode("utf-8", "replace"))
    try:
      row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
      if i < len(lines) - 2:  # not the last line: the file is damaged, not torn.
        raise damaged(path, f"line {i + 1} is not JSON: {shown}") from None
      continue
    if not (isinstance(row, dict) and isinstance(row.get(records.STEP), int)
            and isinstance(row.get(records.EPOCH), (int, float))):
      what = "step row" if path.endswith(STEPS) else "metrics row"
      raise damaged(path, f"line {i + 1} is not a {what} (an object with an integer step and "
                    f"a numeric epoch): {shown}")
    rows.append(row)
  return rows


# --- The config rule -------------------------------------------------------------------------


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"model_options.width": 0.25, ...}: nested groups as dotted keys."""
  out = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def config_differences(recorded: Mapping[str, Any], config: Mapping[str, Any],
                       defaults: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """(key, recorded value, new value) for every key whose values differ, keys missing on
  either side standing for their default; `defaults` is flattened like the configs."""
  old, new, default = flatten(recorded), flatten(config), flatten(defaults)
  missing = object()
  diffs = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, default.get(key, missing)), new.get(key, default.get(key, missing))
    if _normalise(a) != _normalise(b):
      diffs.append((key, None if a is missing else a, None if b is missing else b))
  return diffs


def _normalise(value: Any) -> Any:
  # JSON has no tuples; an int equals its float (epochs 13 and 13.0).
  if isinstance(value, (list, tuple)):
    return [_normalise(v) for v in value]
  if isinstance(value, float) and value.is_integer():
    return int(value)
  return value


def check_resumable(recorded: Mapping[str, Any], config: Mapping[str, Any],
                    defaults: Mapping[str, Any], reached_epoch: float, where: str) -> None:
  """Raises ConfigMismatchError unless `config` may continue the run recorded with
  `recorded` that has reached `reached_epoch` (module rule 2)."""
  lines = []
  for key, old, new in config_differences(recorded, config, defaults):
    if key == "num_epochs" and new is not None and new >= reached_epoch:
      continue
    if key in NEUTRAL_KEYS and key != "num_epochs":
      continue
    why = (f" (the run has reached epoch {reached_epoch:g})" if key == "num_epochs" else "")
    lines.append(f"  {key}: {old!r} (recorded) -> {new!r} (now){why}")
  if lines:
    raise ConfigMismatchError(
        f"{where} holds a run started with another config; continuing it would mix two "
        "configs in one record. Differences:\n" + "\n".join(lines) + "\nNothing was "
        f"written. Use a new workdir for this config, or rerun with the values in "
        f"{os.path.join(where, CONFIG)}.")


def check_unedited(recorded: Mapping[str, Any], checkpointed: tuple[int, Mapping[str, Any]],
                   defaults: Mapping[str, Any], where: str) -> None:
  """Raises ConfigMismatchError when config.json (`recorded`) differs in a key outside
  NEUTRAL_KEYS from the copy of it that the checkpoint at `checkpointed[0]` kept: the
  record was changed by hand, and the checkpoints were trained under the copy's values."""
  step, kept = checkpointed
  lines = [f"  {key}: {old!r} (the checkpoint's copy) -> {new!r} ({CONFIG})"
           for key, old, new in config_differences(kept, recorded, defaults)
           if key not in NEUTRAL_KEYS]
  if lines:
    raise ConfigMismatchError(
        f"{os.path.join(where, CONFIG)} was changed after the checkpoint at step {step} was "
        "saved: it no longer matches the copy of the config kept with the checkpoint, under "
        "which the run trained. Differences:\n" + "\n".join(lines) + "\nNothing was written. "
        f"Put the checkpoint's values back into {CONFIG}; to train on with the new values, "
        f"start a new run from this checkpoint: --workdir=NEW --config.init_from={where}:{step}.")


# --- Reading a run ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunRecord:
  """What a run directory holds, read without taking its lock (for reports and notebooks)."""

  path: str
  config: dict[str, Any]
  dataset: dict[str, Any]
  rows: list[records.Row]
  summary: records.Summary | None
  # (from_step, code version) pairs, oldest first (training/provenance.py); [] for runs
  # written before the code recorded it.
  code_versions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  # failure.json: {"error": ..., "time": ...} when its last training failed.
  failure: dict[str, Any] | None = None

  @property
  def finished(self) -> bool:
    return is_finished_record(self.config, self.rows, self.summary)

  @property
  def failed(self) -> bool:
    """Its last training raised an error (not finished, and failure.json says why)."""
    return self.failure is not None and not self.finished

  @property
  def final(self) -> records.Row:
    return self.rows[-1]


def is_finished_record(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                       summary: Mapping[str, Any] | None) -> bool:
  """Module rule 4: a summary, and a last row at the recorded num_epochs or beyond."""
  num_epochs = config.get("num_epochs")
  return (summary is not None and bool(rows) and num_epochs is not None
          and rows[-1][records.EPOCH] >= num_epochs
          and summary.get(records.STEP) == rows[-1][records.STEP])


def read_run(path: str) -> RunRecord:
  """The run in `path`; missing files read as empty."""
  def optional(name):
    file = os.path.join(path, name)
    return read_json(file) if os.path.exists(file) else None
  return RunRecord(path=path, config=optional(CONFIG) or {}, dataset=optional(DATASET) or {},
                   rows=read_rows(os.path.join(path, METRICS)),
                   summary=cast(records.Summary | None, optional(SUMMARY)),
                   code_versions=read_code_versions(path), failure=optional(FAILURE))


def read_steps(path: str) -> list[records.StepRow]:
  """Run `path`'s step rows (steps.jsonl), oldest first; [] for a run without them (one
  trained before they were recorded, or whose first row is yet to come)."""
  return cast(list[records.StepRow], _read_jsonl_rows(os.path.join(path, STEPS)))


def record_failure(path: str, error: str) -> None:
  """Writes run `path`'s failure.json: its last training failed with `error`."""
  write_json(os.path.join(path, FAILURE), {
      records.FAILURE_ERROR: error, records.FAILURE_TIME: datetime.datetime.now().isoformat(timespec="seconds")})


def read_parent(path: str) -> dict[str, Any] | None:
  """Run `path`'s parent.json (None without one), its workdir made a path to the parent
  from here: it is recorded relative to the run (older records hold it absolute)."""
  file = os.path.join(path, PARENT)
  if not os.path.exists(file):
    return None
  parent = read_json(file)
  parent[records.WORKDIR] = os.path.normpath(os.path.join(path, parent[records.WORKDIR]))
  return parent


def read_code_versions(path: str) -> list[dict[str, Any]]:
  """Run `path`'s (from_step, code version) history ([] when it has no provenance.json)."""
  file = os.path.join(path, PROVENANCE)
  return read_json(file).get(records.CODE_VERSIONS, []) if os.path.exists(file) else []


def read_mean_image(path: str) -> np.ndarray | None:
  """The mean image run `path` recorded (None for runs from before it was recorded)."""
  file = os.path.join(path, MEAN_IMAGE)
  if not os.path.exists(file):
    return None
  try:
    return np.load(file, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise RunDirectoryError(f"{file} is not a readable .npy array ({e}).") from None


def read_train_fingerprints(path: str) -> np.ndarray | None:
  """The sorted fingerprints of the training examples of run `path`
  (input_pipeline/fingerprints.py); None for runs from before they were recorded."""
  try:
    return fingerprints.load(os.path.join(path, TRAIN_FINGERPRINTS))
  except ValueError as e:
    raise RunDirectoryError(f"{e} Rerunning the training writes it again: python train.py "
                            f"--config=configs/rerun.py:{path} --workdir={path}") from None


def open_log(path: str) -> Any:
  """The run's train.log, created with the run directory if need be, open for appending
  (a training's output, e.g. a sweep's subprocess's; append: resumes keep earlier output)."""
  os.makedirs(path, exist_ok=True)
  return open(os.path.join(path, LOG), "a")


# --- The lock ------------------------------------------------------------------------------


# A reader's line while it holds a run's lock shared: `.lock.reader.<pid>@<host>.<random>`
# (one file per holder, since readers hold the lock together and none may rewrite `.lock`).
READER_PREFIX = f"{LOCK}.reader."
_READER = re.compile(rf"^{re.escape(READER_PREFIX)}(?P<pid>\d+)@(?P<host>.+)\.[a-z0-9_]{{8}}$")
_HOLDER = re.compile(r"^pid (?P<pid>\d+) on host (?P<host>\S+) ")  # as holder_line writes


def holder_line() -> str:
  """This process as a lock's message names it: pid, host, start of the hold, command."""
  return (f"pid {os.getpid()} on host {socket.gethostname()} since "
          f"{datetime.datetime.now().isoformat(timespec='seconds')} "
          f"({' '.join(sys.argv)[:200]})")


def readers(directory: str) -> list[str]:
  """The lines of the processes that hold `directory`'s lock shared, as they left them;
  those of this host whose process is gone (SIGKILLed, so no clean-up ran) are left out."""
  try:
    names = sorted(os.listdir(directory))
  except OSError:
    return []
  host, lines = socket.gethostname(), []
  for name in names:
    if not (match := _READER.match(name)):
      continue
    if match["host"] == host and not atomic_file.process_alive(int(match["pid"])):
      continue
    try:
      with open(os.path.join(directory, name)) as f:
        lines.append(f.read().strip())
    except OSError:  # it ended meanwhile
      continue
  return [line for line in lines if line]


class DirectoryLock:
  """An exclusive `fcntl.flock` on `directory/.lock`, with the holder's pid, host and
  command written inside (and cleared on release) for the message a second process gets.
  Creates the directory; fails with a clear message if it cannot be written.

  `shared=True` takes a shared lock instead (readers that write beside the record, like
  evaluate.py): any number of them at once, never while a writer holds it, and no writer
  while one of them does. Each reader leaves its own line, `reader` (who it is, e.g. "an
  evaluation") with its pid, host and command, in a file of its own beside `.lock` while it
  holds the lock, so that a refused writer names the readers rather than the last writer."""

  def __init__(self, directory: str, what: str = "run", shared: bool = False,
               reader: str = "a reader"):
    self.directory, self.what, self.shared, self.reader = directory, what, shared, reader
    self._file: Any = None  # the open lock file while held
    self._line: str | None = None  # a reader's own line file while held

  def __enter__(self) -> DirectoryLock:
    path = os.path.join(self.directory, LOCK)
    try:
      os.makedirs(self.directory, exist_ok=True)
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise RunDirectoryError(f"Cannot write to the {self.what} directory {self.directory}: "
                              f"{e.strerror}. Choose a directory you can write to.") from None
    self._file = os.fdopen(fd, "r+")
    try:
      fcntl.flock(self._file, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
      writer = self._file.read().strip()
      self._file.close()
      self._file = None
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise self._refusal(writer) from None
    if self.shared:  # `.lock` holds the writer's line; a reader leaves its own beside it.
      try:
        self._leave_reader_line()
      except BaseException:
        self.__exit__()
        raise
      return self
    for name in os.listdir(self.directory):  # no reader holds the lock now: lines of the dead
      if _READER.match(name):
        _remove(os.path.join(self.directory, name))
    self._file.seek(0)
    self._file.truncate()
    self._file.write(holder_line() + "\n")
    self._file.flush()
    try:  # Probe: the lock file's directory can be opened but may be read-only elsewhere.
      probe = os.path.join(self.directory, f".write-test{os.getpid()}")
      open(probe, "w").close()
      os.remove(probe)
    except OSError as e:
      self.__exit__()
      raise RunDirectoryError(f"Cannot write to the {self.what} directory {self.directory}: "
                              f"{e.strerror}. Choose a directory you can write to.") from None
    return self

  def _refusal(self, writer: str) -> RunInUseError:
    """The error for a lock that another process holds: the writer's line (`writer`,
    from `.lock`), or the readers' lines when readers hold it."""
    if (match := _HOLDER.match(writer)) and match["host"] == socket.gethostname() \
        and not atomic_file.process_alive(int(match["pid"])):
      writer = ""  # left by a writer that was killed: the holder is another process
    if self.shared:
      return RunInUseError(f"{self.directory} is in use by {writer or 'another process'}, "
                           "which is writing it (or reading it as a writer would); it cannot "
                           "be read for this until that ends. Wait for it to finish or stop "
                           "it.")
    if held_by := readers(self.directory):
      return RunInUseError(f"{self.directory} is being read by {'; and by '.join(held_by)}: "
                           f"a {self.what} cannot be written while it is read. Wait for "
                           f"{'that' if len(held_by) == 1 else 'them'} to finish or stop "
                           f"{'it' if len(held_by) == 1 else 'them'}, or use another "
                           "directory.")
    return RunInUseError(f"{self.directory} is in use by {writer or 'another process'}: one "
                         f"{self.what} writes there at a time. Wait for it to finish or stop "
                         "it, or use another directory.")

  def _leave_reader_line(self) -> None:
    # Only for the messages of refused writers: a directory where it cannot be written
    # (read-only, full) is read all the same.
    try:
      fd, self._line = tempfile.mkstemp(
          dir=self.directory, prefix=f"{READER_PREFIX}{os.getpid()}@{socket.gethostname()}.")
      with os.fdopen(fd, "w") as f:
        f.write(f"{self.reader}, {holder_line()}\n")
    except BaseException as e:  # a KeyboardInterrupt too: no line outlives a failed start
      if self._line is not None:
        _remove(self._line)
      self._line = None
      if not isinstance(e, OSError):
        raise

  def __exit__(self, *exc) -> None:
    if self._file is None:
      return
    try:
      if self._line is not None:
        _remove(self._line)
      elif not self.shared:  # a line left after the writer ends would name it as holder
        self._file.seek(0)
        self._file.truncate()
    except OSError:
      pass  # the lock is released all the same; a stale line names a process that ended
    finally:
      self._line = None
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


# --- Writing a run -------------------------------------------------------------------------


class RunDirectory:
  """The writer of one run directory: hold it with `with RunDirectory(path) as run:`.

  With `writer=False` (the other processes of a multi-process run) nothing is locked or
  written, and the reading methods still work, so every process takes the same decisions.
  `events` makes the writer of the run's derived event files, called as
  `events(path, rows=kept_rows, step_rows=kept_step_rows)` at each `resume_from` (training
  passes `training.tensorboard.EventWriter`; None writes none).
  """

  def __init__(self, path: str, writer: bool = True,
               events: Callable[..., Any] | None = None):
    self.path, self.writer = path, writer
    self._lock = DirectoryLock(path) if writer else None
    self._config: dict[str, Any] = {}
    self._new_events = events
    self._events: Any = None  # the open event writer, from `events`
    self._last_step_row: int | None = None  # the step of steps.jsonl's last row

  def __enter__(self) -> RunDirectory:
    if self._lock is not None:
      self._lock.__enter__()
    return self

  def __exit__(self, exc_type: Any = None, error: BaseException | None = None,
               traceback: Any = None) -> None:
    # An error once the run has started is its failure; a stop signal (KeyboardInterrupt)
    # or a refusal before `start` is not.
    if self.writer and self._config and isinstance(error, Exception):
      try:
        record_failure(self.path, f"{type(error).__name__}: {error}")
      except OSError:  # e.g. a full disk: the error itself is what the caller reports.
        pass
    if self._events is not None:
      self._events.close()
    if self._lock is not None:
      self._lock.__exit__()

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  def read(self) -> RunRecord:
    return read_run(self.path)

  def check_config(self, config: Mapping[str, Any], defaults: Mapping[str, Any],
                   checkpointed: tuple[int, Mapping[str, Any]] | None = None) -> None:
    """Rule 2, before anything is written; `config` and `defaults` as JSON-like dicts.
    `checkpointed` is (step, config record) that the newest checkpoint kept
    (training/checkpoints.recorded_config): config.json must still say the same."""
    record = self.read()
    if not record.config:
      if record.rows or os.path.isdir(self.file(CHECKPOINTS)):
        raise RunDirectoryError(
            f"{self.path} holds metrics or checkpoints but no {CONFIG}: it was not written "
            "by this code, or was damaged. Use a new workdir.")
      return
    if checkpointed is not None:
      check_unedited(record.config, checkpointed, defaults, self.path)
    reached = record.rows[-1][records.EPOCH] if record.rows else 0
    check_resumable(record.config, config, defaults, reached, self.path)

  def start(self, config: Mapping[str, Any], dataset: Mapping[str, Any],
            mean_image: np.ndarray,
            train_fingerprints: Callable[[], np.ndarray] | None = None) -> None:
    """Records the config, the data, the mean image and `train_fingerprints()` (a
    compatible rerun updates the neutral keys). A rerun whose training split has another
    mean image than the recorded one is refused: the data changed under the run. The mean
    image and the fingerprints are written once, by the first training that has them: a
    resumed run trains on the same examples (its mean image says so), so it keeps its own,
    and only a run from before fingerprints were recorded computes them on resuming."""
    self._config = dict(config)
    recorded = read_mean_image(self.path)
    if recorded is not None and not np.array_equal(recorded, mean_image):
      raise RunDirectoryError(
          f"The training split's mean image differs from the one {self.file(MEAN_IMAGE)} "
          f"recorded (largest difference {np.max(np.abs(recorded - mean_image)):.4g}): the "
          "data changed since the run started. Train on the data it started with, or use a "
          "new workdir.")
    if self.writer:
      atomic_file.remove_stale(self.path)  # what writers killed mid-write left
      if os.path.exists(self.file(FAILURE)):
        os.remove(self.file(FAILURE))  # this training may succeed; it records its own.
      write_json(self.file(CONFIG), dict(config))
      write_json(self.file(DATASET), dict(dataset))
      if recorded is None:
        atomic_file.write(self.file(MEAN_IMAGE), lambda f: np.save(
            f, np.asarray(mean_image, np.float32), allow_pickle=False))
      if train_fingerprints is not None and not os.path.exists(self.file(TRAIN_FINGERPRINTS)):
        fingerprints.save(self.file(TRAIN_FINGERPRINTS), train_fingerprints())

  def record_parent(self, parent: Mapping[str, Any]) -> None:
    """The run starts from another run's checkpoint (records.ParentRecord)."""
    if self.writer:
      write_json(self.file(PARENT), dict(parent))

  def record_code_version(self, step: int, version: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rule 5: training goes on from `step` under `version`; returns the history."""
    history = provenance.with_version(list(self.read().code_versions), step, version)
    if self.writer:
      write_json(self.file(PROVENANCE), {records.CODE_VERSIONS: history})
    return history

  def resume_from(self, step: int | None) -> None:
    """Rule 3: training continues from the checkpoint at `step` (None or 0: from the
    start). Keeps the metrics and step rows at steps <= `step`, removes the summary, and
    restarts the TensorBoard events (`events`) from the kept rows."""
    if not self.writer:
      return
    rows = [r for r in self.read().rows if step and r[records.STEP] <= step]
    atomic_file.write_text(self.file(METRICS),
                           "".join(json_text(r, self.file(METRICS)) + "\n" for r in rows))
    step_rows = [r for r in read_steps(self.path) if step and r[records.STEP] <= step]
    text = "".join(json_text(dict(r), self.file(STEPS)) + "\n" for r in step_rows)
    if os.path.exists(self.file(STEPS)):  # rewritten only to drop rows (or a torn line)
      with open(self.file(STEPS), "rb") as f:
        unchanged = f.read() == text.encode()
      if not unchanged:
        atomic_file.write_text(self.file(STEPS), text)
    self._last_step_row = step_rows[-1][records.STEP] if step_rows else None
    if os.path.exists(self.file(SUMMARY)):
      os.remove(self.file(SUMMARY))
    if self._events is not None:
      self._events.close()
    if self._new_events is not None:
      self._events = self._new_events(self.path, rows=rows, step_rows=step_rows)
      self._events.write_config(self._config)

  def append_row(self, row: Mapping[str, Any]) -> None:
    """Adds one evaluation's row; its step must follow the last row's."""
    if not self.writer:
      return
    rows = self.read().rows
    if rows and row[records.STEP] <= rows[-1][records.STEP]:
      raise RunDirectoryError(f"Row at step {row[records.STEP]} after one at step "
                              f"{rows[-1][records.STEP]} in {self.file(METRICS)}.")
    line = json_text(dict(row), self.file(METRICS)) + "\n"
    with open(self.file(METRICS), "a") as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
    if self._events is not None:
      self._events.write_row(row)

  def append_step(self, row: records.StepRow) -> None:
    """Adds one step row (records.step_row); its step must follow the last one's. Written
    to the operating system, not fsynced: the loop does not wait for the disk every
    log_every_steps. A killed process loses nothing; a power failure may lose the last rows
    (a gap in the curve, or rows the next session redraws after its checkpoint)."""
    if not self.writer:
      return
    step = row[records.STEP]
    if self._last_step_row is not None and step <= self._last_step_row:
      raise RunDirectoryError(f"Step row at step {step} after one at step "
                              f"{self._last_step_row} in {self.file(STEPS)}.")
    with open(self.file(STEPS), "a") as f:
      f.write(json_text(dict(row), self.file(STEPS)) + "\n")
    self._last_step_row = step
    if self._events is not None:
      self._events.write_step(row)

  def finish(self, summary: Mapping[str, Any]) -> None:
    """Rule 4: closes the event writer first (its `flush` leaves events queued in memory;
    `close` writes them all), then writes the summary, last."""
    if self._events is not None:
      self._events.close()
      self._events = None
    if self.writer:
      write_json(self.file(SUMMARY), dict(summary))


# --- A sweep's runs --------------------------------------------------------------------------


SWEEP = "sweep.json"  # a sweep's record: its base config and each invocation (sweep.py)


def sweep_num_epochs(workdir: str) -> int | None:
  """The num_epochs the sweep in `workdir` last trained its runs to (sweep.json's base
  config); None without a sweep record (runs placed by hand)."""
  path = os.path.join(workdir, SWEEP)
  return read_json(path).get("config", {}).get("num_epochs") if os.path.exists(path) else None


def sweep_run_path(workdir: str, setting: str, seed: int) -> str:
  """Where sweep.py puts one (setting, seed) run: WORKDIR/<setting>/seed<k>."""
  return os.path.join(workdir, setting, f"seed{seed}")


@dataclasses.dataclass
class SweepRun(RunRecord):
  """A run of a sweep: its record, and the setting and seed its place in the sweep names."""

  setting: str = ""
  seed: int = 0

  @property
  def num_epochs(self) -> int | None:
    return self.config.get("num_epochs")


def read_sweep(workdir: str) -> list[SweepRun]:
  """Every WORKDIR/<setting>/seed<k> with at least one metrics row or a failure, in
  directory order."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"No sweep directory {workdir}.")
  runs = []
  for setting in sorted(os.listdir(workdir)):
    if not os.path.isdir(os.path.join(workdir, setting)):
      continue
    for name in sorted(os.listdir(os.path.join(workdir, setting))):
      if not (name.startswith("seed") and name[4:].isdigit()):
        continue
      record = read_run(os.path.join(workdir, setting, name))
      if record.rows or record.failure:
        runs.append(SweepRun(**dataclasses.asdict(record), setting=setting, seed=int(name[4:])))
  return runs


def differing_settings(records: Iterable[RunRecord]) -> set[str]:
  """The flattened config keys that differ between `records`, apart from rectifier and
  seed: a sweep's runs must agree on everything else to be compared."""
  flat = [flatten(r.config) for r in records]
  keys = set().union(*flat) if flat else set()
  return {k for k in keys if k not in ("rectifier", "seed") and k not in NEUTRAL_KEYS
          and len({json.dumps(_normalise(f.get(k)), sort_keys=True) for f in flat}) > 1}
