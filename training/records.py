"""What a run records, in one place: the keys of its records and the values derived from them.

    metrics.jsonl   one `Row` per evaluation
    steps.jsonl     one `StepRow` per `log_every_steps` training steps: the curves within epochs
    summary.json    the `Summary`: the last row, `best_test_error` and what trained it
    dataset.json    the `DatasetRecord`: the data the run trained and evaluated on
    config.json     the config record (`config_record`): every key of the config as JSON
    parent.json     the `ParentRecord` of a run started from another's checkpoint
    evaluations/NAME.json  an `EvaluationRecord` (evaluate.py)
    model/model.json       the `ModelRecord` of a run's export (training/export.py)

train.py, evaluate.py and the export write these through this module, and every reader
(run_directory.py, which returns typed rows and summaries, reporting/, figures,
tensorboard, evaluate.py, the export and the notebooks) reads them through its names; only
tests spell the keys out, as an independent check. Config keys are configs/default.py's.
Where a record lives and when it is written is training/run_directory.py's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, NotRequired, TypedDict, cast

import ml_collections

import models

# --- metrics.jsonl ----------------------------------------------------------------------------

EPOCH: Final = "epoch"
STEP: Final = "step"
# Training mode (dropout and RReLU's random slopes on): the epoch's running averages.
TRAIN_ERROR: Final = "train_error"
TRAIN_LOSS: Final = "train_loss"
# The splits evaluated in test mode: a row has `<split>_error`, `<split>_loss` (Kaggle's
# log-loss) and `<split>_examples` for each (`split_columns`).
TEST: Final = "test"
TRAIN_EVAL: Final = "train_eval"
TEST_ERROR: Final = "test_error"
TEST_LOSS: Final = "test_loss"
TEST_EXAMPLES: Final = "test_examples"
TRAIN_EVAL_ERROR: Final = "train_eval_error"
TRAIN_EVAL_LOSS: Final = "train_eval_loss"
TRAIN_EVAL_EXAMPLES: Final = "train_eval_examples"
# rectifiers/statistics.py's, with config.activation_statistics: `{TEST: {layer: ...},
# TRAIN_EVAL: ..., PRELU_SLOPES: ..., RRELU_TRAINING_SLOPE: ..., HISTOGRAMS: ...}`.
ACTIVATIONS: Final = "activations"
PRELU_SLOPES: Final = "prelu_slopes"
RRELU_TRAINING_SLOPE: Final = "rrelu_training_slope"
HISTOGRAMS: Final = "histograms"
# Per rectified layer in ACTIVATIONS[split] (rectifiers/statistics.summarize): the share of
# dead units, of negative inputs, and mean |negative output| / mean positive output.
DEAD: Final = "dead"
NEGATIVE: Final = "negative"
NEGATIVE_OUTPUT: Final = "negative_output"
LAYER_STATISTICS: Final = (DEAD, NEGATIVE, NEGATIVE_OUTPUT)
# Per PReLU layer in ACTIVATIONS[PRELU_SLOPES]: its slopes' mean, min and max; per RReLU
# layer in ACTIVATIONS[RRELU_TRAINING_SLOPE]: the realised and the expected training slope.
SLOPE_MEAN: Final = "mean"
SLOPE_MIN: Final = "min"
SLOPE_MAX: Final = "max"
REALISED: Final = "realised"
EXPECTED: Final = "expected"
# Per layer in ACTIVATIONS[HISTOGRAMS]: rectifiers/statistics.histogram's bin edges and counts.
HISTOGRAM_EDGES: Final = "edges"
HISTOGRAM_COUNTS: Final = "counts"
LEARNING_RATE: Final = "learning_rate"
IMAGES_PER_SEC: Final = "images_per_sec"
WALL_TIME: Final = "wall_time"


class Row(TypedDict):
  """One evaluation's metrics (training/progress.py says how the clock columns count)."""
  epoch: int
  step: int
  train_error: float
  train_loss: float
  test_error: float
  test_loss: float
  test_examples: int
  train_eval_error: NotRequired[float]  # absent when config.train_eval_examples is 0
  train_eval_loss: NotRequired[float]
  train_eval_examples: NotRequired[int]
  activations: NotRequired[dict[str, Any]]  # with config.activation_statistics
  learning_rate: float
  images_per_sec: float
  wall_time: float


# --- steps.jsonl ------------------------------------------------------------------------------


class StepRow(TypedDict):
  """The training curve between evaluations, one row every `log_every_steps` steps, in the
  same columns as a `Row` (training/progress.StepInterval says what each averages over)."""
  step: int
  epoch: float            # step / steps_per_epoch
  train_loss: float       # training mode, mean over the steps since the previous row
  learning_rate: float    # the schedule's value at the row's last step
  images_per_sec: float   # over the steps since the previous row, evaluations excluded
  wall_time: float        # the run's clock (training/progress.py)


def step_row(*, step: int, epoch: float, train_loss: float, learning_rate: float,
             images_per_sec: float, wall_time: float) -> StepRow:
  """A steps.jsonl row."""
  return cast(StepRow, {STEP: step, EPOCH: epoch, TRAIN_LOSS: train_loss,
                        LEARNING_RATE: learning_rate, IMAGES_PER_SEC: images_per_sec,
                        WALL_TIME: wall_time})


# An evaluation's numbers on one split (training/evaluation.metrics_of), before a row
# prefixes them with the split's name.
ERROR: Final = "error"
LOSS: Final = "loss"
EXAMPLES: Final = "examples"


class SplitMetrics(TypedDict):
  error: float
  loss: float     # Kaggle's clipped multi-class log-loss
  examples: int


def split_columns(split: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
  """A split's columns of a row, `{"test_error": ...}`, from its {"error", "loss",
  "examples"}."""
  return {f"{split}_{key}": metrics[key] for key in (ERROR, LOSS, EXAMPLES)}


def row(*, epoch: int, step: int, train_error: float, train_loss: float,
        evaluation: Mapping[str, Any], learning_rate: float, images_per_sec: float,
        wall_time: float) -> Row:
  """A metrics row: the epoch's training-mode averages, an evaluation's test_* and
  train_eval_* columns (and activation record), the learning rate and the clock."""
  return cast(Row, {EPOCH: epoch, STEP: step, TRAIN_ERROR: train_error,
                    TRAIN_LOSS: train_loss, **evaluation, LEARNING_RATE: learning_rate,
                    IMAGES_PER_SEC: images_per_sec, WALL_TIME: wall_time})


# --- summary.json -----------------------------------------------------------------------------

BEST_TEST_ERROR: Final = "best_test_error"
PRELU_SLOPE_VECTORS: Final = "prelu_slope_vectors"
NUM_PARAMS: Final = "num_params"
MODEL: Final = "model"
RECTIFIER: Final = "rectifier"
DATASET: Final = "dataset"    # the dataset spec (also config.json's and an evaluation's key)
SEED: Final = "seed"
DEVICES: Final = "devices"
BACKEND: Final = "backend"
PROCESSES: Final = "processes"


class Summary(Row):
  """The final row and these; written last, when the run has finished."""
  best_test_error: float
  num_params: int
  model: str
  rectifier: str
  dataset: str
  seed: int
  devices: int
  backend: str
  processes: int
  prelu_slope_vectors: NotRequired[dict[str, list[float]]]  # every PReLU slope, by layer


def best_test_error(rows: Sequence[Mapping[str, Any]]) -> float:
  """The lowest test error over the evaluated epochs (selected on the test set: optimistic)."""
  return min(float(row[TEST_ERROR]) for row in rows)


def generalisation_gap(row: Mapping[str, Any]) -> float:
  """Test error minus the test-mode error on training images, in the same row."""
  return float(row[TEST_ERROR]) - float(row[TRAIN_EVAL_ERROR])


def log_loss_gap(row: Mapping[str, Any]) -> float:
  """Test log-loss minus the test-mode log-loss on training images, in the same row: the
  generalisation gap in the NDSB metric."""
  return float(row[TEST_LOSS]) - float(row[TRAIN_EVAL_LOSS])


# --- a checkpoint's JSON beside the arrays (training/checkpoints.py) ------------------------

# Also EPOCH and WALL_TIME (the run's clock when it was saved).
ITERATOR: Final = "iterator"  # the data iterator's state (checkpoints.encode_iterator_state)


# --- parent.json ------------------------------------------------------------------------------


# --- failure.json -----------------------------------------------------------------------------

FAILURE_ERROR: Final = "error"  # the error's message, as the training reported it
FAILURE_TIME: Final = "time"


WORKDIR: Final = "workdir"
CHANGED: Final = "changed"


class ParentRecord(TypedDict):
  """Where a run started with config.init_from began: another run's checkpoint."""
  workdir: str  # the parent run, relative to this run (older records: absolute)
  step: int     # its checkpoint's step: this run's first step
  epoch: float
  changed: dict[str, list[Any]]  # each config key that differs: [the parent's, this run's]


# --- dataset.json -----------------------------------------------------------------------------


SPEC: Final = "spec"
CLASS_NAMES: Final = "class_names"
NUM_CLASSES: Final = "num_classes"
IMAGE_SHAPE: Final = "image_shape"
TRAIN_EXAMPLES: Final = "train_examples"
FULL_TRAIN_EXAMPLES: Final = "full_train_examples"
SUBSET_SEED: Final = "subset_seed"
SKIPPED_FILES: Final = "skipped_files"


class DatasetRecord(TypedDict):
  """The data a run used, as input_pipeline loaded it."""
  spec: str
  class_names: list[str]
  num_classes: int
  image_shape: list[int]
  train_examples: int
  test_examples: int
  full_train_examples: int
  subset_seed: int | None
  train_eval_examples: int
  skipped_files: list[str]  # unreadable images left out (config.skip_corrupt), in the folder


# --- evaluations/NAME.json (evaluate.py) -----------------------------------------------------

NAME: Final = "name"
SPLIT: Final = "split"
MODEL_SOURCE: Final = "model_source"  # "export" or "checkpoint"
HOLDOUT: Final = "holdout"
EVALUATED_BY: Final = "evaluated_by"
EVALUATED: Final = "evaluated"        # when, ISO 8601 UTC
# How many of the evaluated images the run trained on (input_pipeline/fingerprints.py);
# None for a run from before its training fingerprints were recorded.
TRAIN_OVERLAP: Final = "train_overlap"


class EvaluationRecord(SplitMetrics):
  """A trained network scored on one dataset split with the run's own preprocessing."""
  name: str
  dataset: str            # the dataset spec
  split: str
  step: int
  epoch: float
  model_source: str
  class_names: list[str]
  image_shape: list[int]
  holdout: int
  train_overlap: NotRequired[int | None]  # absent in evaluations from before it was counted
  activations: NotRequired[dict[str, Any]]
  evaluated_by: dict[str, Any]  # training/provenance.code_version()
  evaluated: str


# --- model/model.json (training/export.py) ---------------------------------------------------

# The export's own fields; it also holds MODEL, NUM_CLASSES, RECTIFIER, CLASS_NAMES,
# IMAGE_SHAPE, DATASET, SEED, STEP and EPOCH (the same keys as the records above).
EXPORT_FORMAT: Final = "format"
MODEL_OPTIONS: Final = "model_options"   # also config.json's (configs/default.py)
DTYPE: Final = "dtype"
INPUT_SCALE: Final = "input_scale"
AUGMENT: Final = "augment"
CODE_VERSIONS: Final = "code_versions"   # training/provenance.py's (from_step, version) history
VARIABLES_SHA256: Final = "variables_sha256"
FORWARD_SHA256: Final = "forward_sha256"
FIELDS_SHA256: Final = "fields_sha256"


class ModelRecord(TypedDict):
  """model/model.json: what rebuilds and feeds the network, and the export's digests."""
  format: int
  model: str
  num_classes: int
  rectifier: str
  model_options: dict[str, Any]
  dtype: str
  class_names: list[str]
  image_shape: list[int]
  input_scale: float
  augment: dict[str, Any]
  dataset: str
  seed: NotRequired[int]  # format 1 recorded none; an upgrade outside its run has none
  step: int
  epoch: float
  code_versions: list[dict[str, Any]]
  variables_sha256: str
  forward_sha256: str
  fields_sha256: dict[str, str]  # {field: SHA-256 of its canonical JSON}, every other field


# --- config.json ------------------------------------------------------------------------------


def config_record(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as a run records it (config.json): JSON values, and every model option,
  those the config left at their defaults included."""
  record = json.loads(json.dumps(config.to_dict()))
  if config.model in models.MODELS:
    record["model_options"] = json.loads(json.dumps(
        {**models.default_options(config.model), **record["model_options"]}))
  return record
