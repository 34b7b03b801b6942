r"""TensorBoard event files for a run, written without TensorFlow.

    tensorboard --logdir runs/          # every run below, e.g. relu/seed0/tensorboard
    python -m training.tensorboard results/cifar10-mini/runs/*/seed*   # for old runs

A run's TensorBoard view lives in `WORKDIR/tensorboard/` and is derived from its record,
never the other way round: metrics.jsonl stays the record (training/run_directory.py).
Each evaluation row becomes scalars at the row's `step`:

  error/train, loss/train             training mode, running averages over the epoch
  error/train_eval, loss/train_eval   test mode on the fixed training subset (when present)
  error/test, loss/test               test mode on the test split
  learning_rate, images_per_sec, epoch

and each step row (steps.jsonl, every `log_every_steps`: records.StepRow) becomes

  train_step/loss, train_step/learning_rate, train_step/images_per_sec

and the config is a text summary ("config", JSON in a code block) at step 0. A row's
activation statistics (rectifiers/statistics.py) become, per rectified layer L:

  dead/test/L, negative/test/L, negative_output/test/L   (and .../train_eval/L)
  prelu_slope/mean/L, prelu_slope/min/L, prelu_slope/max/L
  rrelu_training_slope/L
  preactivations/L   a histogram, at the evaluations that recorded one

**Resuming.** A resumed run drops the metrics rows after its checkpoint (run_directory,
rule 3), and its TensorBoard view must drop them too. Every `EventWriter` therefore starts a
new event file that begins with a SessionLog.START at step 0 (tensorboardX's
`purge_step=0`) and replays every row and step row the run keeps (`rows=`, `step_rows=`),
then appends new ones as they come. The two loaders TensorBoard has both end with exactly the kept and new points:
  * the Python loader (`--load_fast=false`, `event_accumulator`) drops every point at a
    step >= 0 from earlier files when it reads the START event: all of them;
  * the Rust loader (the default, `tensorboard-data-server`) ignores SessionLog events, but
    drops a series' points at steps >= s when a new point at step s arrives: the replay
    writes each series' first step again, so every older point of it goes.
`purge_step` at the resumed step alone (tensorboardX's recipe) would satisfy only the
Python loader: under the Rust one, points past the resumed step stay until the rerun writes
a row at or below them, and forever if it stops first or evaluates at other epochs
(`eval_every_epochs` may change on a rerun).
Older event files are deleted, except the newest: a running Python loader sits on it and
cannot move past a deleted file to the new one. With no rows to keep (a restart without a
checkpoint) all are deleted, since nothing would preempt their points in the Rust loader.
So the directory holds at most two files, and a crash between deleting and replaying is
repaired by the next start. (A resume that keeps rows but no step row, e.g. of a run
recorded before step rows existed, leaves the Rust loader the killed session's step points
until new ones at or below their steps arrive.)

Event wall times are the run's clock (`wall_time` of each row, seconds of training across
resumes, training/progress.py) offset to end at the present, so TensorBoard's "relative"
axis shows training time, not time spent stopped between sessions.

tensorboardX writes the event files: it needs only protobuf and numpy. `clu.metric_writers`
and `tf.summary` need TensorFlow, which this project does not install for training.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from training import records, run_directory

DIRECTORY = "tensorboard"
EVENT_FILE_PATTERN = "events.out.tfevents.*"

# metrics.jsonl column -> TensorBoard tag. Columns a row lacks are skipped.
SCALAR_TAGS: dict[str, str] = {
    records.TRAIN_ERROR: "error/train", records.TEST_ERROR: "error/test",
    records.TRAIN_EVAL_ERROR: "error/train_eval", records.TRAIN_LOSS: "loss/train",
    records.TEST_LOSS: "loss/test", records.TRAIN_EVAL_LOSS: "loss/train_eval",
    records.LEARNING_RATE: "learning_rate", records.IMAGES_PER_SEC: "images_per_sec",
    records.EPOCH: "epoch",
}
CONFIG_TAG = "config"
# steps.jsonl column -> TensorBoard tag.
STEP_TAGS: dict[str, str] = {
    records.TRAIN_LOSS: "train_step/loss", records.LEARNING_RATE: "train_step/learning_rate",
    records.IMAGES_PER_SEC: "train_step/images_per_sec",
}


def config_markdown(config_record: Mapping[str, Any]) -> str:
  """The config as TensorBoard's text plugin shows it: JSON in a Markdown code block."""
  return "```json\n" + json.dumps(dict(config_record), indent=2, sort_keys=True) + "\n```"


def activation_scalars(activations: Mapping[str, Any]) -> dict[str, float]:
  """{tag: value} of a row's activation statistics (module doc), histograms aside."""
  out = {}
  for split in (records.TEST, records.TRAIN_EVAL):
    for layer, stats in activations.get(split, {}).items():
      for key, value in stats.items():
        out[f"{key}/{split}/{layer}"] = float(value)
  for layer, stats in activations.get(records.PRELU_SLOPES, {}).items():
    for key, value in stats.items():
      out[f"prelu_slope/{key}/{layer}"] = float(value)
  for layer, stats in activations.get(records.RRELU_TRAINING_SLOPE, {}).items():
    out[f"rrelu_training_slope/{layer}"] = float(stats[records.REALISED])
  return out


def _next_session(paths: list[str]) -> int:
  numbers = [int(p.rsplit(".", 1)[-1]) for p in paths if p.rsplit(".", 1)[-1].isdigit()]
  return max(numbers, default=0) + 1


class EventWriter:
  """Writes one run's TensorBoard events into `WORKDIR/tensorboard/` (see the module doc).

      with EventWriter(workdir, enabled=run.writer, rows=kept_rows) as events:
        events.write_config(config_record)
        ...
        events.write_step(step_row)          # after each step row
        events.write_row(row)                # after each metrics row

  training/run_directory.RunDirectory does this for a training run: `resume_from` opens
  the writer with the rows it keeps, `append_step` and `append_row` write each new one.

  Args:
    workdir: the run directory.
    enabled: False for processes that do not write the run (nothing is created or deleted).
    rows: the rows the run keeps (on a resume: those up to the checkpoint it resumes
      from); the new event file replays them first. Call `write_config`
      in every session too: the new file's START event hides the old config.
    step_rows: the step rows the run keeps, replayed likewise.
  """

  def __init__(self, workdir: str, enabled: bool = True,
               rows: Iterable[Mapping[str, Any]] = (),
               step_rows: Iterable[Mapping[str, Any]] = ()):
    self.directory = os.path.join(workdir, DIRECTORY)
    self.enabled = enabled
    self._writer = None
    if not enabled:
      return
    import tensorboardX  # pylint: disable=g-import-not-at-top  (only the writing process)
    rows, step_rows = list(rows), list(step_rows)
    os.makedirs(self.directory, exist_ok=True)
    old = sorted(glob.glob(os.path.join(self.directory, EVENT_FILE_PATTERN)))
    for path in old[:-1] if rows else old:
      os.remove(path)
    # The run clock of the last kept row is "now": replayed rows get their relative times.
    self._time_origin = time.time() - max(
        (float(r.get(records.WALL_TIME, 0.0)) for r in rows[-1:] + step_rows[-1:]), default=0.0)
    # tensorboardX names files by the second and the host; a session number after them
    # keeps two sessions started within one second apart and in the order loaders read.
    self._writer = tensorboardX.SummaryWriter(
        self.directory, purge_step=0, flush_secs=30,
        filename_suffix=f".{_next_session(old):06d}")
    for row in rows:
      self._write_scalars(row)
    for step_row in step_rows:
      self._write_step_scalars(step_row)
    self._writer.flush()

  def _wall_time(self, row: Mapping[str, Any]) -> float:
    if records.WALL_TIME in row:
      return self._time_origin + float(row[records.WALL_TIME])
    return time.time()

  def _write_scalars(self, row: Mapping[str, Any]) -> None:
    step, wall_time = int(row[records.STEP]), self._wall_time(row)
    for column, tag in SCALAR_TAGS.items():
      value = row.get(column)
      if value is not None:
        self._writer.add_scalar(tag, float(value), step, walltime=wall_time)
    for tag, value in activation_scalars(row.get(records.ACTIVATIONS, {})).items():
      self._writer.add_scalar(tag, value, step, walltime=wall_time)
    for layer, h in row.get(records.ACTIVATIONS, {}).get(records.HISTOGRAMS, {}).items():
      edges = np.asarray(h[records.HISTOGRAM_EDGES])
      counts = np.asarray(h[records.HISTOGRAM_COUNTS], np.float64)
      centres = (edges[:-1] + edges[1:]) / 2  # the sums are the bins' (the values are gone)
      self._writer.add_histogram_raw(
          f"preactivations/{layer}", min=float(edges[0]), max=float(edges[-1]),
          num=float(counts.sum()), sum=float((centres * counts).sum()),
          sum_squares=float((centres ** 2 * counts).sum()),
          bucket_limits=[float(e) for e in edges[1:]], bucket_counts=[float(c) for c in counts],
          global_step=step, walltime=wall_time)

  def _write_step_scalars(self, row: Mapping[str, Any]) -> None:
    step, wall_time = int(row[records.STEP]), self._wall_time(row)
    for column, tag in STEP_TAGS.items():
      self._writer.add_scalar(tag, float(row[column]), step, walltime=wall_time)

  def write_step(self, row: Mapping[str, Any]) -> None:
    """One step row's scalars at its step, left to the writer thread (flushed within
    `flush_secs`, or at the next row): the training loop does not wait for them."""
    if self._writer is not None:
      self._write_step_scalars(row)

  def write_config(self, config_record: Mapping[str, Any]) -> None:
    """The run's config (records.config_record) as text at step 0."""
    if self._writer is not None:
      self._writer.add_text(CONFIG_TAG, config_markdown(config_record), 0)
      self._writer.flush()

  def write_row(self, row: Mapping[str, Any]) -> None:
    """One metrics row's scalars at its step. tensorboardX's writer thread puts them on
    disk within `flush_secs` (its `flush` does not wait for the thread), and `close` writes
    all: a killed session's last rows may be lost here, and the next session replays them."""
    if self._writer is not None:
      self._write_scalars(row)
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> EventWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_run(path: str) -> str:
  """(Re)writes `path/tensorboard/` from a finished or partial run directory's config and
  metrics rows, e.g. for runs recorded before event files existed; returns the directory."""
  record = run_directory.read_run(path)
  if not record.config and not record.rows:
    raise FileNotFoundError(f"{path} holds no {run_directory.CONFIG} or "
                            f"{run_directory.METRICS}: not a run directory.")
  with EventWriter(path, rows=record.rows, step_rows=run_directory.read_steps(path)) as events:
    if record.config:
      events.write_config(record.config)
  return events.directory


# --- Reading (for tests and notebooks; TensorBoard itself is not needed) ---------------------


def _masked_crc32c(data: bytes) -> int:
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _crc32c_table() -> list[int]:
  table = []
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def read_records(path: str) -> list[bytes]:
  """The records of one TFRecord file (an event file), checking both CRC32C checksums.

  Format: uint64 length, uint32 masked CRC of the length, the data, uint32 masked CRC of
  the data (little-endian; TensorFlow's record_writer). A record cut off at the end of the
  file (its writer was killed mid-write) ends the list, as in TensorBoard's readers."""
  records = []
  with open(path, "rb") as f:
    while header := f.read(12):
      if len(header) < 12:
        break  # a record cut off at the end (a killed writer): TensorBoard stops there too.
      (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
      if _masked_crc32c(header[:8]) != length_crc:
        raise ValueError(f"{path}: record length checksum mismatch.")
      data, crc = f.read(length), f.read(4)
      if len(data) < length or len(crc) < 4:
        break
      if _masked_crc32c(data) != struct.unpack("<I", crc)[0]:
        raise ValueError(f"{path}: record data checksum mismatch.")
      records.append(data)
  return records


def read_events(workdir: str) -> list[Any]:
  """Every event (tensorboardX's `Event` proto) in `WORKDIR/tensorboard/`, files in name
  order as TensorBoard reads them."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  for path in sorted(glob.glob(os.path.join(workdir, DIRECTORY, EVENT_FILE_PATTERN))):
    for data in read_records(path):
      events.append(event_pb2.Event.FromString(data))
  return events


def read_scalars(workdir: str, *, session_start: bool = True,
                 preempt: bool = True) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} of the scalars in the run's event files, as TensorBoard
  shows them: a SessionLog.START at step N drops earlier points at steps >= N (the Python
  loader; `session_start`), and a point at step s drops the series' earlier points at
  steps >= s (both loaders; `preempt`). With both False: every point written, in order."""
  out: dict[str, list[tuple[int, float]]] = {}
  for event in read_events(workdir):
    if session_start and event.session_log.status == event.session_log.START:
      out = {tag: [p for p in points if p[0] < event.step] for tag, points in out.items()}
    for value in event.summary.value:
      if value.HasField("simple_value"):
        points = out.setdefault(value.tag, [])
        if preempt:
          points[:] = [p for p in points if p[0] < event.step]
        points.append((int(event.step), float(value.simple_value)))
  return {tag: points for tag, points in out.items() if points}


def shows_rows(workdir: str, rows: Iterable[Mapping[str, Any]]) -> bool:
  """Whether the run's event files show exactly `rows` (each row's epoch at its step, as
  TensorBoard reads them); False when they are missing or damaged."""
  try:
    points = read_scalars(workdir).get(SCALAR_TAGS[records.EPOCH], [])
  except Exception:  # pylint: disable=broad-except
    # Damaged files raise OSError, ValueError (a checksum) or protobuf's DecodeError.
    return False
  return [step for step, _ in points] == [int(row[records.STEP]) for row in rows]


def main(argv: list[str]) -> None:
  if not argv:
    raise SystemExit("usage: python -m training.tensorboard RUN_DIRECTORY [...]")
  for path in argv:
    print(write_run(path))


if __name__ == "__main__":
  main(sys.argv[1:])
