r"""Evaluates a trained run, or every finished run of a sweep, on any test set.

    python evaluate.py --workdir=runs/nin/relu/seed0                  # its own test split
    python evaluate.py --workdir=RUN --dataset=folder:PATH [--split=test] [--name=NAME]
    python evaluate.py --workdir=runs/cifar10-full --dataset=tfds:cifar10  # a whole sweep
    python evaluate.py --workdir=RUN --step=1755                      # an unfinished run
    python evaluate.py --workdir=RUN --list_test_files                # its test split's files

The network is evaluated in test mode with **the run's own preprocessing**: the mean image
of the split it trained on (as the run recorded it, never recomputed from the new data),
its input scale and test-time crop. The result, `RUN/evaluations/NAME.json`, holds
`error`, `loss` (the Kaggle log-loss training reports), `examples`, `dataset`, `split`,
`step`, `epoch`, the class names it matched, the code that evaluated and each rectified
layer's statistics (rectifiers/statistics.py). `report.py --evaluation=NAME` builds a
sweep's tables from them.

The weights come from the run's export (`RUN/model/`, training/export.py), which is enough
on its own (a committed study has no checkpoints), or from its checkpoints: the final one,
or `--step=N` (an unfinished run needs it). The export is checked whole and against the
run's records; a damaged one (or one that disagrees with the run) is refused in one line
that gives the command that writes it again, except with `--step=N` where a checkpoint at
N stands in for it, with a warning. The preprocessing comes with the weights, from one
function (`export.preprocessing`): the export's, or the run's for a checkpoint. On its own
test split, with the devices it trained on, a run's evaluation equals its final
`test_error` and `test_loss` exactly.

Datasets: `--dataset` is a spec as in training (`folder:PATH`, `tfds:NAME`, `digits`;
default: the run's own, with its hold-out and subset). `--split` is `test` or `train`
(for TFDS any split, e.g. `train[45000:]`); `--holdout=N` evaluates a folder without test/
on a stratified hold-out of N of its train/ images. A folder needs only the split it is
evaluated on: PATH/<split>/<class>/*.jpg, or, with neither train/ nor test/, PATH/<class>/
*.jpg is that split (input_pipeline/folder.split_folders). Images are decoded as the run's
were (its image_size, and grayscale for one-channel runs). A dataset whose class names or
image shape differ from the run's is refused, naming both.

Images it trained on: a run records a fingerprint of each training example
(`train_fingerprints.npy`, input_pipeline/fingerprints.py). An evaluation split holding
any of them is refused in one line naming the count (exit status 2): an error there is
not a test error. `--allow_overlap` evaluates it anyway and records the count
(`train_overlap`, also in a clean evaluation: 0); a run from before fingerprints were
recorded is evaluated with a warning that this cannot be checked (`train_overlap`: null).
`--list_test_files` prints the files of the run's own test split, relative to its data
folder (a folder's test/, or its stratified `holdout`), and evaluates nothing.

Evaluating never changes the run's record (metrics, summary, checkpoints): it holds the
run's lock shared, so it refuses to start while a training writes there, naming it, and
a training started meanwhile is refused naming this evaluation. `NAME.json` is written
whole or not at all; Ctrl-C from the start, or a full disk, ends the command with one line
(training/exit_codes.py) and nothing partial, and the temporary file of an evaluation
killed mid-write is removed by the next one of the run.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import input_pipeline
import models
from configs import rerun as rerun_config
from configs import validation
from input_pipeline import atomic_file, fingerprints
from training import (builder, checkpoints, evaluation, exit_codes, export, process, provenance,
                      records, run_directory, signals, steps)

SPLITS = ("test", "train")


class EvaluationError(ValueError):
  """The run, the dataset or the arguments cannot be evaluated as asked; the message
  says why and what to do."""


class OverlapError(EvaluationError):
  """The evaluation split holds images the run trained on; `--allow_overlap` (the argument
  that lets it be evaluated, hence exit status 2) evaluates it anyway."""


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A run's network at one step, with the preprocessing it was trained with."""

  run: run_directory.RunRecord
  model: Any
  state: steps.TrainState     # params and batch_stats (no optimiser state)
  preprocessing: export.Preprocessing  # the export's, or the run's (`export.preprocessing`)
  step: int
  epoch: float
  source: str                 # "export" or "checkpoint"

  @property
  def config(self) -> dict[str, Any]:
    return self.run.config


def _config(record: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A run's config record over today's defaults (keys added later take their default)."""
  return rerun_config.from_record(record)


def load_trained(path: str, step: int | None = None) -> TrainedModel:
  """The network of run `path` at its end (from its export, else its last checkpoint) or
  at checkpoint `step`. The export is checked whole and against the run's records
  (training/export.py); a damaged one is refused, but for `step` when a checkpoint there
  can stand in for it (with a warning)."""
  record = run_directory.read_run(path)
  if not record.config:
    raise EvaluationError(f"{path} is not a run directory (it has no "
                          f"{run_directory.CONFIG}); pass a run's workdir or a sweep's.")
  if step is None and not record.finished:
    reached = f"epoch {record.rows[-1][records.EPOCH]}" if record.rows else "no evaluation yet"
    raise EvaluationError(
        f"{path} has not finished ({reached} of {record.config.get('num_epochs')}); pass "
        f"--step=N to evaluate one of its checkpoints ({_steps_text(path)}).")
  if not export.has_export(path) and record.finished:
    logging.warning("%s has no exported model (%s is missing): evaluating its checkpoint "
                    "instead. %s", path, os.path.join(path, export.DIRECTORY, export.METADATA),
                    _rewrite_text(path))
  final = record.summary[records.STEP] if record.summary and record.finished else None
  if export.has_export(path) and step in (None, final, export.recorded_step(path)):
    try:
      exported = export.load(path, record)
    except export.ExportError as e:
      if step is None or step not in checkpoints.steps_on_disk(path):
        raise
      logging.warning("%s Evaluating the checkpoint at step %d instead.", e, step)
    else:
      if step in (None, exported.step):
        state = steps.TrainState(step=jnp.int32(exported.step),
                                 params=exported.variables["params"],
                                 batch_stats=exported.variables.get("batch_stats"),
                                 opt_state=None)
        return TrainedModel(record, exported.model, state, exported.preprocessing,
                            exported.step, exported.metadata[records.EPOCH], "export")
  if step is None:
    step = record.rows[-1][records.STEP]
  if step not in checkpoints.steps_on_disk(path):
    raise EvaluationError(
        f"{path} has no exported model{' at step %d' % step if export.has_export(path) else ''}"
        f" and no checkpoint at step {step} ({_steps_text(path)}): nothing to evaluate.")
  restored = checkpoints.load_checkpoint(path, step)["state"]
  state = steps.TrainState(step=jnp.int32(step), params=restored["params"],
                           batch_stats=restored.get("batch_stats"), opt_state=None)
  model = models.from_config(_config(record.config), record.dataset[records.NUM_CLASSES])
  epoch = next((r[records.EPOCH] for r in record.rows if r[records.STEP] == step), None)
  return TrainedModel(record, model, state,
                      export.preprocessing(_config(record.config), _mean_image(path, record),
                                           record.dataset[records.IMAGE_SHAPE]),
                      step, epoch if epoch is not None else step, "checkpoint")


def _rewrite_text(path: str) -> str:
  return (f"Rerunning its training writes the export again from its final checkpoint: "
          f"python train.py --config=configs/rerun.py:{path} --workdir={path}")


def _steps_text(path: str) -> str:
  saved = checkpoints.steps_on_disk(path)
  return f"checkpoints at steps {saved}" if saved else "it has no checkpoints"


def _mean_image(path: str, record: run_directory.RunRecord) -> np.ndarray:
  """The run's recorded mean image; runs from before it was recorded get it recomputed
  from their own training data (the config they recorded), never from the new data."""
  if (recorded := run_directory.read_mean_image(path)) is not None:
    return recorded
  logging.warning("%s predates recorded mean images: recomputing it from the run's own "
                  "training split (%s).", path, record.config.get(records.DATASET))
  return np.asarray(builder.load_data(_config(record.config)).mean_image, np.float32)


# --- The data ----------------------------------------------------------------------------


def default_name(spec: str, split: str) -> str:
  """'folder:../data/cifar10', 'test' -> 'cifar10-test'; any character other than
  letters, digits, '.', '_' and '-' becomes '_'."""
  kind, _, arg = spec.partition(":")
  base = os.path.basename(os.path.normpath(arg)) if kind == "folder" else (arg or kind)
  return re.sub(r"[^A-Za-z0-9._-]", "_", f"{base}-{split}")


def load_split(trained: TrainedModel, spec: str | None, split: str, holdout: int,
               data_dir: str = "", cache_dir: str = "") -> tuple[str, input_pipeline.Dataset,
                                                                 input_pipeline.Source]:
  """(spec, dataset, the examples to evaluate) for `--dataset`/`--split`/`--holdout`."""
  config = _config(trained.config)
  if data_dir:
    config.data_dir = data_dir
  if cache_dir:
    config.cache_dir = cache_dir
  own = spec is None or spec == config.dataset
  kind = (spec or config.dataset).partition(":")[0]
  if kind != "tfds" and split not in SPLITS:
    raise EvaluationError(f"--split must be one of {SPLITS} for {kind!r} datasets, got "
                          f"{split!r}.")
  if own:
    if holdout:
      raise EvaluationError("--holdout applies to another dataset; the run's own dataset "
                            f"keeps its own split (holdout={config.holdout}).")
    if kind == "tfds" and split not in SPLITS:
      config.test_split = split
      split = "test"
  else:
    config.dataset, config.holdout = spec, holdout
    config.train_examples, config.skip_corrupt = 0, False
    if kind == "tfds":  # read only the asked split (its mean image is not used).
      config.train_split = config.test_split = "test" if split == "test" else split
      split = "test"
    if kind == "folder" and trained.run.dataset.get(records.IMAGE_SHAPE, [0])[-1] == 1:
      config.grayscale = True
  try:
    # Another folder needs only the split evaluated: it may have no train/ (folder.py).
    dataset = builder.load_dataset(config, evaluation_split=None if own else split)
  except validation.ConfigError as e:
    raise EvaluationError(f"--dataset {config.dataset!r}: "
                          f"{str(e).removeprefix('config.dataset: ')}") from None
  check_compatible(trained, config.dataset, dataset)
  source = dataset.test if split == "test" else dataset.train
  if not len(source):
    raise EvaluationError(f"{config.dataset!r} has no {split} examples: pass --split=train, "
                          "or --holdout=N for a folder without test/.")
  return config.dataset, dataset, source


def check_compatible(trained: TrainedModel, spec: str, dataset: input_pipeline.Dataset) -> None:
  """Refuses data the network cannot be scored on: other classes or another image shape."""
  recorded = trained.run.dataset
  names, shape = list(recorded.get(records.CLASS_NAMES, [])), list(
      recorded.get(records.IMAGE_SHAPE, []))
  problems = []
  if list(dataset.class_names) != names:
    problems.append(f"its classes are {_short(dataset.class_names)}, the run's "
                    f"{_short(names)} (the labels would not match: use the same class "
                    "folders or TFDS labels, in the same order)")
  if list(dataset.image_shape) != shape:
    problems.append(f"its images are {'x'.join(map(str, dataset.image_shape))}, the run's "
                    f"{'x'.join(map(str, shape))} (resize them to that shape)")
  if problems:
    raise EvaluationError(f"Cannot evaluate {trained.run.path} on {spec!r}: "
                          + "; ".join(problems) + ".")


def train_overlap(path: str, source: input_pipeline.Source) -> int | None:
  """How many of `source`'s images run `path` trained on (their fingerprints among those it
  recorded); None for a run from before it recorded them."""
  known = run_directory.read_train_fingerprints(path)
  if known is None:
    return None
  return fingerprints.count_in(fingerprints.of_source(source), known)


def check_overlap(path: str, spec: str, split: str, source: input_pipeline.Source,
                  allow_overlap: bool) -> int | None:
  """`train_overlap`; OverlapError when it is not 0, unless `allow_overlap`. A run that
  cannot be checked is evaluated, with a warning."""
  overlap = train_overlap(path, source)
  if overlap is None:
    logging.warning("%s predates recorded training fingerprints (%s): whether the %s images "
                    "of %r are images it trained on cannot be checked.", path,
                    run_directory.TRAIN_FINGERPRINTS, split, spec)
  elif overlap and not allow_overlap:
    raise OverlapError(
        f"{overlap} of the {len(source)} {split} images of {spec!r} are images {path} trained "
        "on: an error on them is not a test error. Pass --allow_overlap to evaluate them "
        "anyway (the count is recorded), or evaluate on images it did not train on (its own "
        f"test split's files: python evaluate.py --workdir={path} --list_test_files).")
  return overlap


def test_files(path: str) -> tuple[list[str], str]:
  """(the files of run `path`'s own test split, relative to its data folder, in the order
  it evaluates them; a line saying what they are). TFDS and digits splits have no files:
  the line says which split it is."""
  record = run_directory.read_run(path)
  if not record.config:
    raise EvaluationError(f"{path} is not a run directory (it has no {run_directory.CONFIG}).")
  config = _config(record.config)
  kind, _, arg = config.dataset.partition(":")
  if kind == "tfds":
    return [], (f"{path} is tested on TFDS split {config.test_split!r} of {config.dataset!r}: "
                "TFDS records, not files; there are none to list.")
  if kind != "folder":
    return [], (f"{path} is tested on {config.dataset!r}'s own held-out split "
                f"({record.dataset.get(records.TEST_EXAMPLES)} examples, input_pipeline/sources.py), "
                "which has no files.")
  root = os.path.expanduser(arg)
  try:
    files = input_pipeline.folder_test_files(
        Path(root), config.holdout, record.dataset.get(records.SKIPPED_FILES, []))
  except ValueError as e:
    raise EvaluationError(f"Cannot list {path}'s test files in {root}: {e}") from None
  recorded = record.dataset.get(records.TEST_EXAMPLES)
  if recorded is not None and len(files) != recorded:
    raise EvaluationError(f"{root} now gives {len(files)} test files, and {path} was tested on "
                          f"{recorded}: the folder changed since the run trained.")
  where = (f"a stratified hold-out of {config.holdout} of train/'s images" if config.holdout
           else "its test/ folder")
  return [os.path.relpath(f, root) for f in files], (
      f"{path} is tested on {len(files)} files of {config.dataset!r}, {where}; relative to {root}:")


def _short(names: Any) -> str:
  names = list(names)
  return str(names) if len(names) <= 12 else f"{names[:10]} ... ({len(names)} classes)"


# --- Evaluating ---------------------------------------------------------------------------


def evaluate(trained: TrainedModel, source: input_pipeline.Source) -> dict[str, Any]:
  """{"error", "loss", "examples", "activations"} of the network on `source`, batched and
  laid out over the devices as its training evaluated (training/evaluation.Evaluator on
  `builder.data_mesh`)."""
  p = trained.preprocessing
  # The preprocessing is the trained model's only (export.preprocessing), not config.json's.
  config = _config({**trained.config, records.AUGMENT: dataclasses.asdict(p.augment),
                    records.INPUT_SCALE: p.input_scale})
  evaluator = evaluation.Evaluator.create(config, trained.model, builder.data_mesh(config),
                                          p.mean_image, p.image_shape)
  return evaluator.metrics(jax.device_put(trained.state, evaluator.replicated), source)


def evaluate_run(path: str, *, spec: str | None = None, split: str = "test",
                 name: str | None = None, step: int | None = None, holdout: int = 0,
                 data_dir: str = "", cache_dir: str = "", allow_overlap: bool = False,
                 stop: signals.RaiseOnSignal | None = None) -> dict[str, Any]:
  """Evaluates run `path` and writes `path/evaluations/NAME.json` (whole or not at all);
  returns its content. Images the run trained on are refused (`check_overlap`) unless
  `allow_overlap`. With `stop` (the command line's), a stop signal that a library
  swallowed still stops it, before it writes."""
  if not os.path.isdir(path):
    raise EvaluationError(f"No run directory {path}.")
  check = stop.check if stop is not None else lambda: None
  with run_directory.DirectoryLock(path, what="run", shared=True, reader="an evaluation"):
    # What evaluations killed mid-write (SIGKILL: no clean-up ran) left behind.
    atomic_file.remove_stale(os.path.join(path, run_directory.EVALUATIONS))
    trained = load_trained(path, step)
    check()
    spec, dataset, source = load_split(trained, spec, split, holdout, data_dir, cache_dir)
    overlap = check_overlap(path, spec, split, source, allow_overlap)
    check()
    name = name or default_name(spec, split)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
      raise EvaluationError(f"--name must use letters, digits, '.', '_' and '-' only, got "
                            f"{name!r}.")
    result = {records.NAME: name, records.DATASET: spec, records.SPLIT: split,
              records.STEP: int(trained.step), records.EPOCH: trained.epoch,
              records.MODEL_SOURCE: trained.source,
              records.CLASS_NAMES: list(dataset.class_names),
              records.IMAGE_SHAPE: list(dataset.image_shape), records.HOLDOUT: holdout,
              records.TRAIN_OVERLAP: overlap, **evaluate(trained, source),
              records.EVALUATED_BY: provenance.code_version(),
              records.EVALUATED: datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds")}
    check()
    directory = os.path.join(path, run_directory.EVALUATIONS)
    os.makedirs(directory, exist_ok=True)
    run_directory.write_json(os.path.join(directory, f"{name}.json"), result)
  return result


def evaluate_sweep(workdir: str, **options: Any) -> dict[str, dict[str, Any]]:
  """Evaluates every finished run of the sweep in `workdir`; {run path: result}."""
  runs = run_directory.read_sweep(workdir)
  finished = [r for r in runs if r.finished]
  if not finished:
    raise EvaluationError(f"{workdir} holds no finished run ({len(runs)} unfinished); "
                          "nothing to evaluate.")
  for r in runs:
    if not r.finished:
      logging.warning("Skipping %s: it has not finished.", r.path)
  return {r.path: evaluate_run(r.path, **options) for r in finished}


def is_run(path: str) -> bool:
  return os.path.exists(os.path.join(path, run_directory.CONFIG))


# --- Command line --------------------------------------------------------------------------


def _devices_it_trained_on(workdir: str) -> int:
  """The device count the run (or the sweep's first finished run) trained on, so that the
  evaluation's sums are taken in the same order (cpu_devices semantics: 0 = one per core)."""
  paths = [workdir] if is_run(workdir) else [r.path for r in run_directory.read_sweep(workdir)
                                             if r.finished][:1]
  for path in paths:
    summary = run_directory.read_run(path).summary
    if summary is not None and summary.get(records.BACKEND, "cpu") == "cpu" and summary.get(
        records.DEVICES):
      return int(summary[records.DEVICES])
  return 1


# The errors an evaluation reports in one line, exit status 1 (training/exit_codes.py).
EXPECTED_ERRORS = (EvaluationError, FileNotFoundError, export.ExportError, validation.ConfigError,
                   input_pipeline.CorruptImagesError, input_pipeline.DatasetNotPreparedError,
                   run_directory.RunDirectoryError, checkpoints.NoUsableCheckpointError)


def _set_up_and_evaluate(workdir: str, cpu_devices: int,
                         options: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """main's work: {run path: result}. A stop signal from the start (while JAX starts, the
  model and the data load or the network is evaluated) ends it at once with one line,
  before anything of that run is written."""
  with signals.RaiseOnSignal() as stop:
    try:
      if not os.path.isdir(workdir):
        raise EvaluationError(f"No directory {workdir}.")
      process.configure(cpu_devices if cpu_devices >= 0 else _devices_it_trained_on(workdir))
      stop.check()
      if is_run(workdir):
        return {workdir: evaluate_run(workdir, stop=stop, **options)}
      if options["step"] is not None:
        raise EvaluationError("--step applies to one run, not to a sweep directory.")
      return evaluate_sweep(workdir, stop=stop, **options)
    except KeyboardInterrupt:
      if (signum := stop.received) is None:
        raise
      kept = "" if is_run(workdir) else " (the runs evaluated before it keep theirs)"
      raise signals.Stopped(
          f"Stopped by {signal.Signals(signum).name} before the evaluation was written: "
          f"nothing partial is on disk{kept}. Rerun the same command to evaluate.",
          signum, saved=False) from None


def _list_test_files(workdir: str) -> None:
  """--list_test_files: the files on stdout, one a line; the line that says what they
  are on stderr (so that stdout is the list alone)."""
  if not is_run(workdir):
    raise EvaluationError(f"{workdir} is not a run directory (it has no "
                          f"{run_directory.CONFIG}); --list_test_files takes one run.")
  files, line = test_files(workdir)
  print(line, file=sys.stderr)
  for file in files:
    print(file)


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS
  if FLAGS.list_test_files:
    exit_codes.run(lambda: _list_test_files(FLAGS.workdir), FLAGS.workdir, EXPECTED_ERRORS)
    return
  options = dict(spec=FLAGS.dataset or None, split=FLAGS.split, name=FLAGS.name,
                 step=FLAGS.step, holdout=FLAGS.holdout, data_dir=FLAGS.data_dir,
                 cache_dir=FLAGS.cache_dir, allow_overlap=FLAGS.allow_overlap)
  results = exit_codes.run(
      lambda: _set_up_and_evaluate(FLAGS.workdir, FLAGS.cpu_devices, options), FLAGS.workdir,
      EXPECTED_ERRORS, unwritten="The evaluation", bad_arguments=(OverlapError,))
  for path, r in results.items():
    overlap = r[records.TRAIN_OVERLAP]
    trained_on = f", {overlap} of them images it trained on" if overlap else ""
    print(f"{path}: {r[records.DATASET]} {r[records.SPLIT]}: error {r[records.ERROR]:.4f}, "
          f"log-loss {r[records.LOSS]:.4f} on {r[records.EXAMPLES]} examples{trained_on} "
          f"(step {r[records.STEP]}, from its {r[records.MODEL_SOURCE]}) -> "
          f"{os.path.join(path, run_directory.EVALUATIONS, r[records.NAME])}.json")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A run directory, or a sweep's (every finished run).")
  flags.DEFINE_string("dataset", "", "A dataset spec (folder:PATH, tfds:NAME, digits); "
                      "default: the run's own.")
  flags.DEFINE_string("split", "test", "test or train (TFDS: any split, e.g. 'train[:5000]').")
  flags.DEFINE_string("name", None, "The evaluation's name (file evaluations/NAME.json); "
                      "default: <dataset>-<split>.")
  flags.DEFINE_integer("step", None, "Evaluate the checkpoint at this step (default: the "
                       "finished run's final model).")
  flags.DEFINE_integer("holdout", 0, "For a folder without test/: evaluate on a stratified "
                       "hold-out of this many train/ images.")
  flags.DEFINE_bool("allow_overlap", False, "Evaluate even images the run trained on (refused "
                    "otherwise); their count is recorded.")
  flags.DEFINE_bool("list_test_files", False, "Print the files of the run's own test split "
                    "(relative to its data folder) and exit, evaluating nothing.")
  flags.DEFINE_string("data_dir", "", "TFDS data directory.")
  flags.DEFINE_string("cache_dir", "", "Decoded-image cache (default ~/.cache/rectifiers).")
  flags.DEFINE_integer("cpu_devices", -1, "CPU devices (-1: as many as the run trained on, "
                       "so its own test split gives its numbers exactly).")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
