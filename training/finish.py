"""How a run finishes: its curves, exported model and closed event files first, the
summary last (`RunDirectory.finish`), so that a run is finished only once everything it
promises is on disk; and what a run with a summary lacks (`incomplete_artefacts`)."""

from __future__ import annotations

import os
from typing import cast

import jax

from rectifiers import statistics
from training import (builder, evaluation, export, figures, records, run_directory,
                      tensorboard)
from training.steps import TrainState


def finish(run: run_directory.RunDirectory, s: builder.Setup,
           state: TrainState) -> records.Summary:
  """Writes the run's curves (atomically) and its exported model, closes its event files,
  then writes the summary, last (`RunDirectory.finish`): a run is finished only once
  everything it promises is on disk. Returns the summary."""
  config, record = s.config, run.read()
  rows = record.rows
  summary = records.Summary(
      **cast(records.Row, rows[-1]), best_test_error=records.best_test_error(rows), num_params=s.num_params,
      model=config.model, rectifier=config.rectifier, dataset=config.dataset, seed=config.seed,
      devices=s.num_devices, backend=jax.default_backend(), processes=jax.process_count())
  if slopes := statistics.prelu_slopes(jax.device_get(state.params)):
    summary[records.PRELU_SLOPE_VECTORS] = evaluation.in_order(
        {k: v.tolist() for k, v in slopes.items()}, s.evaluator.layers)
  if run.writer:
    figures.plot_run_curves(rows, run.file(run_directory.CURVES),
                            f"{config.model} / {config.rectifier} / {config.dataset}")
    export.save(run.path, config=record.config, dataset=record.dataset, params=state.params,
                batch_stats=state.batch_stats, mean_image=s.dataset.mean_image,
                step=int(state.step), epoch=rows[-1][records.EPOCH],
                code_versions=record.code_versions)
  run.finish(summary)
  return summary


def incomplete_artefacts(record: run_directory.RunRecord) -> list[str]:
  """What a run with a summary promises beside it and lacks: whole learning curves, an
  undamaged export of this format that agrees with the run's records, event files that
  show every row. Empty for a complete run; a run stopped between its summary and these
  (only code older than `finish`'s order), or whose export is damaged or older, is
  completed by a rerun (`python train.py --config=configs/rerun.py:RUN --workdir=RUN`)."""
  missing = []
  if not figures.is_whole_png(os.path.join(record.path, run_directory.CURVES)):
    missing.append(run_directory.CURVES)
  try:
    export.check(record.path, record)
  except export.ExportError:
    missing.append(export.DIRECTORY)
  if not tensorboard.shows_rows(record.path, record.rows):
    missing.append(tensorboard.DIRECTORY)
  return missing
