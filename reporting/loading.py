"""A sweep's runs as a report reads them, and which of them one comparison counts.

Runs are compared only at one length (a sweep's num_epochs, or one common final epoch)
and one recipe (only the rectifier and the seed vary); the others are named with why.
"""

from __future__ import annotations

import dataclasses
import os

from reporting import paper_tables
from training import provenance, records, run_directory
from training.run_directory import SweepRun


def read_runs(workdir: str) -> list[SweepRun]:
  """Every `workdir/<setting>/seed<k>` with metrics (run_directory.read_sweep), sorted by
  setting (the paper's order, then the modern activations) and seed."""
  runs = run_directory.read_sweep(workdir)
  runs.sort(key=lambda r: (paper_tables.setting_order(r.setting), r.seed))
  return runs


def with_evaluation(runs: list[SweepRun], name: str) -> list[SweepRun]:
  """The finished runs with their final test numbers replaced by evaluation `name`
  (evaluate.py's `RUN/evaluations/NAME.json`); every finished run must have it, of its
  final model."""
  out, missing = [], []
  for r in runs:
    if not r.finished:
      continue
    file = os.path.join(r.path, run_directory.EVALUATIONS, f"{name}.json")
    if not os.path.exists(file):
      missing.append(f"{r.setting}/seed{r.seed}")
      continue
    evaluation = run_directory.read_json(file)
    if evaluation[records.STEP] != r.final[records.STEP]:
      raise ValueError(f"Evaluation {name!r} of {r.path} is of step "
                       f"{evaluation[records.STEP]}, not the run's final step {r.final[records.STEP]}: evaluate the final model.")
    final = {**r.final, **records.split_columns(records.TEST, evaluation),
             "evaluation": evaluation}
    out.append(dataclasses.replace(r, rows=[final]))
  if missing:
    raise ValueError(f"No evaluation {name!r} for {', '.join(missing)}: run python evaluate.py "
                     f"--workdir=<the sweep> --name={name} (with the same --dataset and "
                     "--split) first.")
  return out


def code_versions_line(runs: list[SweepRun]) -> str | None:
  """One line naming the code versions that trained `runs`, and which runs each trained,
  when there is more than one; None when one version (or none recorded) trained them all."""
  versions: dict[str, list[str]] = {}
  for r in runs:
    for entry in r.code_versions:
      versions.setdefault(provenance.describe(entry), []).append(
          f"{r.setting}/seed{r.seed} from step {entry[provenance.FROM_STEP]}")
  if len(versions) <= 1:
    return None
  return (f"These runs were trained by {len(versions)} code versions: "
          + "; ".join(f"{v} ({', '.join(who)})" for v, who in versions.items()) + ".")


def check_one_length(runs: list[SweepRun]) -> None:
  """Refuses to compare finished runs that ended at different epochs."""
  by_epoch: dict[int, list[str]] = {}
  for r in runs:
    by_epoch.setdefault(r.final[records.EPOCH], []).append(f"{r.setting}/seed{r.seed}")
  if len(by_epoch) > 1:
    longest = max(by_epoch)
    raise ValueError(
        "The finished runs ended at different epochs ("
        + "; ".join(f"epoch {e}: {', '.join(names)}" for e, names in sorted(by_epoch.items()))
        + "): their numbers are not one comparison. Train the shorter ones on (rerun them with "
        f"--config.num_epochs={longest}), or report each length from its own directory.")


def check_one_recipe(runs: list[SweepRun]) -> None:
  """Refuses to compare runs whose configs differ in anything but the rectifier and seed."""
  if differing := run_directory.differing_settings(runs):
    raise ValueError(f"The runs differ in {sorted(differing)}, not only in the rectifier and "
                     "seed: they are not one comparison. Report each recipe from its own "
                     "directory.")


def experiment(run: SweepRun) -> tuple[str, str, list[str], int | None]:
  """(dataset spec, model, class names, number of classes) of a run, from its config and
  dataset records (its summary for runs that predate the config record)."""
  summary = run.summary or {}
  return (run.config.get(records.DATASET, summary.get(records.DATASET, "?")),
          run.config.get(records.MODEL, summary.get(records.MODEL, "?")),
          list(run.dataset.get(records.CLASS_NAMES, [])), run.dataset.get(records.NUM_CLASSES))


def paper_table(run: SweepRun) -> tuple[str | None, bool]:
  """paper_tables.paper_table_for the experiment `run` belongs to."""
  dataset, model, class_names, num_classes = experiment(run)
  return paper_tables.paper_table_for(dataset, model, class_names, num_classes)


def partition(runs: list[SweepRun], num_epochs: int | None
              ) -> tuple[list[SweepRun], list[SweepRun], list[SweepRun]]:
  """(counted: finished at the sweep's length; unfinished: failed, stopped or running;
  finished at another length)."""
  unfinished = [r for r in runs if not r.finished]
  other_length = [r for r in runs if r.finished and num_epochs is not None
                  and r.final[records.EPOCH] != num_epochs]
  counted = [r for r in runs if r.finished and not any(r is o for o in other_length)]
  return counted, unfinished, other_length


def left_out(runs: list[SweepRun], num_epochs: int | None) -> list[str]:
  """One line per run the report does not count, saying why (`status`)."""
  _, unfinished, other_length = partition(runs, num_epochs)
  return [status(r, num_epochs).replace("**", "") for r in unfinished + other_length]


def error_summary(message: str, limit: int = 600) -> str:
  """The first line of a failure's message; past `limit` characters, its whole sentences
  that fit, then " [...]" (a cut never ends mid-sentence: the last one says how to go on)."""
  line = (message.splitlines() or [""])[0]
  if len(line) <= limit:
    return line
  end = line.rfind(". ", 0, limit)
  return (line[:end + 1] if end > 0 else line[:limit]) + " [...]"


def status(r: SweepRun, num_epochs: int | None) -> str:
  """Why run `r` is not counted, for the report: failed, another length, or stopped."""
  name = f"{r.setting}/seed{r.seed}"
  reached = f"epoch {r.final[records.EPOCH]}" if r.rows else "no evaluation"
  if r.finished:
    fix = ("rerun the sweep to train it on" if r.final[records.EPOCH] < (num_epochs or 0)
           else "report it from its own directory")
    return f"{name} (finished at {reached}; the sweep's runs train {num_epochs} epochs: {fix})"
  if r.failed:
    error = error_summary(str(r.failure.get(records.FAILURE_ERROR, ""))) if r.failure else ""
    return f"{name} (**failed** at {reached} of {r.num_epochs}: {error})"
  return f"{name} ({reached} of {r.num_epochs}; stopped, or still running)"
