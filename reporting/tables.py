"""results.md: the paper's table layout with seed statistics, from a sweep's runs.

Numbers are the final epoch's (what the paper reports): training error/loss are the
running averages of the last epoch in training mode (dropout and random slopes on, as
cxxnet reported them), test numbers are deterministic mode. The best test error over
epochs is listed separately; it is chosen on the test set, so it is optimistic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

from reporting import loading, paired, paper_tables
from training import provenance, records
from training.run_directory import SweepRun


GAP = "gap"  # the results table's generalisation-gap column (records.generalisation_gap)
LOSS_GAP = "loss_gap"  # the same in log-loss (records.log_loss_gap), for log-loss tables
# With fewer pairs than this, a 95% t interval is too wide to resolve any difference
# (t(0.975, 1) = 12.7: two seeds give ±9 standard deviations of the differences).
MIN_SEEDS = 3


def _fmt(value: float | None, metric: str, signed: bool = False) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  if metric == "error":
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"
  return f"{value:+.4f}" if signed else f"{value:.4f}"


def _fmt_mean_sd(m: paired.MeanSD, metric: str) -> str:
  if math.isnan(m.sd):
    return _fmt(m.mean, metric)
  return f"{_fmt(m.mean, metric)} ± {_fmt(m.sd, metric)}"


def _fmt_diff(d: paired.PairedDiff, metric: str) -> str:
  if d.n == 0:
    return "—"
  if math.isnan(d.half_width):
    return f"{_fmt(d.mean, metric, signed=True)} (n=1)"
  return (f"{_fmt(d.mean, metric, signed=True)} [{_fmt(d.low, metric, signed=True)}, "
          f"{_fmt(d.high, metric, signed=True)}]")


def _values(runs: list[SweepRun], key: str) -> dict[str, dict[int, float]]:
  """{setting: {seed: value}}: the final row's `key`; records.BEST_TEST_ERROR is the
  minimum test error over epochs and GAP the final row's generalisation gap (records)."""
  out: dict[str, dict[int, float]] = {}
  for r in runs:
    if key == records.BEST_TEST_ERROR:
      value = records.best_test_error(r.rows)
    elif key == GAP:
      value = records.generalisation_gap(r.final)
    elif key == LOSS_GAP:
      value = records.log_loss_gap(r.final)
    else:
      value = float(r.final[key])
    out.setdefault(r.setting, {})[r.seed] = value
  return out


@dataclasses.dataclass(frozen=True)
class Column:
  """A column of the results table: a metrics key, its label and its unit ("error": %)."""
  key: str
  label: str
  metric: str
  paper_index: int | None = None  # which of the paper's (train, test) numbers it matches.


def _columns(metric: str, has_train_eval: bool) -> list[Column]:
  if metric == "error":
    columns = [Column(records.TRAIN_ERROR, "train error, training mode (%)", "error", 0)]
    if has_train_eval:
      columns.append(Column(records.TRAIN_EVAL_ERROR, "train error, test mode (%)", "error"))
    columns.append(Column(records.TEST_ERROR, "test error (%)", "error", 1))
    if has_train_eval:
      columns.append(Column(GAP, "gap: test − train test mode (points)", "error"))
    return columns
  columns = [Column(records.TRAIN_LOSS, "train log-loss, training mode", "log-loss", 0)]
  if has_train_eval:
    columns.append(Column(records.TRAIN_EVAL_LOSS, "train log-loss, test mode", "log-loss"))
  columns.append(Column(records.TEST_LOSS, "val log-loss", "log-loss", 1))
  if has_train_eval:
    columns.append(Column(LOSS_GAP, "gap: val − train test mode (log-loss)", "log-loss"))
  return columns + [Column(records.TEST_ERROR, "val error (%)", "error")]


@dataclasses.dataclass(frozen=True)
class _Study:
  """What every section of the report reads: the finished runs and what they compare."""
  finished: list[SweepRun]
  unfinished: list[SweepRun]
  other_length: list[SweepRun]  # finished, at another epoch than the sweep's num_epochs
  num_epochs: int | None         # the sweep's (sweep.json); None for runs placed by hand
  workdir: str
  evaluation: str | None
  dataset: str
  model: str
  paper: dict[str, Any] | None   # the PAPER_TABLES entry compared with; None: not the paper's data
  same_experiment: bool          # the paper ran this experiment (else: a reference)
  baseline: str | None           # what the differences are to; None: every pair
  has_train_eval: bool
  columns: list[Column]
  values: dict[str, dict[str, dict[int, float]]]  # {column key: {setting: {seed: value}}}
  best_vals: dict[str, dict[int, float]]
  loss_vals: dict[str, dict[int, float]]
  settings: list[str]

  metric: str                    # "error" (rates, in %) or "log-loss" (the NDSB table)

  @property
  def paper_label(self) -> str:
    """The heading of the paper's columns; for another experiment they are a reference."""
    return "paper" if self.same_experiment else "paper CIFAR-10 †"

  def paper_value(self, setting: str, index: int) -> float | None:
    """The paper's (train, test)[index] number for `setting`; None where it has none."""
    return self.paper["values"].get(setting, (None, None))[index] if self.paper else None


def _study(runs: list[SweepRun], workdir: str, evaluation: str | None,
           num_epochs: int | None, baseline: str | None) -> _Study:
  finished, unfinished, other_length = loading.partition(runs, num_epochs)
  if evaluation and finished:
    finished = loading.with_evaluation(finished, evaluation)
  if not finished:
    raise ValueError("No finished runs to report on"
                     + (f" in {workdir}" if workdir else "")
                     + (f" at the sweep's {num_epochs} epochs ("
                        + ", ".join(loading.status(r, num_epochs) for r in other_length) + ")"
                        if other_length else "") + ".")
  loading.check_one_length(finished)
  loading.check_one_recipe(finished)
  dataset, model, _, _ = loading.experiment(finished[0])
  table_key, same_experiment = loading.paper_table(finished[0])
  paper = paper_tables.PAPER_TABLES[table_key] if table_key else None
  has_train_eval = all(records.TRAIN_EVAL_ERROR in r.final for r in finished)
  columns = _columns(paper_tables.metric_of(table_key), has_train_eval)
  values = {c.key: _values(finished, c.key) for c in columns}
  settings = sorted(values[columns[0].key], key=paper_tables.setting_order)
  return _Study(
      finished=finished, unfinished=unfinished, other_length=other_length,
      num_epochs=num_epochs, workdir=workdir, evaluation=evaluation,
      dataset=dataset, model=model, paper=paper, same_experiment=same_experiment,
      metric=paper_tables.metric_of(table_key),
      baseline=paper_tables.baseline_of(settings, baseline),
      has_train_eval=has_train_eval, columns=columns, values=values,
      best_vals=_values(finished, records.BEST_TEST_ERROR),
      loss_vals=_values(finished, records.TEST_LOSS), settings=settings)


def _introduction(study: _Study) -> list[str]:
  """The title, what the numbers are, the seeds' resolution, the evaluation, the code
  version and the paper."""
  finished, settings, paper = study.finished, study.settings, study.paper
  epochs = sorted({r.final[records.EPOCH] for r in finished})
  seeds = sorted({r.seed for r in finished})
  train_examples = sorted({r.dataset.get(records.TRAIN_EXAMPLES) for r in finished} - {None})
  lines = [f"# Rectifier comparison: {study.model} on {study.dataset}"
           + (f", {train_examples[0]:,} training images" if len(train_examples) == 1 else ""),
           ""]
  seeds_of = {s: sorted(r.seed for r in finished if r.setting == s) for s in settings}
  same_seeds = all(v == seeds for v in seeds_of.values())
  lines += [f"{len(finished)} finished runs: {len(settings)} settings × "
            + (f"seeds {seeds}" if same_seeds else "seeds " + "; ".join(
                f"{paper_tables.display_name(s)} {v}" for s, v in seeds_of.items()))
            + "; "
            f"numbers at the final epoch ({', '.join(map(str, epochs))}), mean ± standard "
            "deviation over seeds (ddof=1). Training mode: running averages over the last "
            "epoch with dropout and random slopes on, as cxxnet reported them (the paper's "
            "tables). Test mode: deterministic, as at test time"
            + (" (on a fixed subset of the training images, `train_eval_examples`)"
               if study.has_train_eval else "") + ".", ""]
  few = {s: len(v) for s, v in seeds_of.items() if len(v) < MIN_SEEDS}
  why = ("a 95% interval needs at least 2 pairs and is ±12.7 standard deviations of the "
         "differences with 2")
  if few and len(few) == len(seeds_of):
    fewest = min(few.values())
    lines += [f"**With {fewest} seed{'s' * (fewest != 1)} per setting the intervals below "
              f"cannot resolve anything**: {why}. Read the differences as anecdotes; run at "
              f"least {MIN_SEEDS} seeds (`sweep.py --seeds={MIN_SEEDS}`) to compare settings.",
              ""]
  elif few:
    # Some settings lost runs (failed or unfinished): only their intervals are anecdotes.
    named = ", ".join(f"{paper_tables.display_name(s)} ({n} finished seed{'s' * (n != 1)})"
                      for s, n in few.items())
    lines += [f"**Fewer than {MIN_SEEDS} seeds for {named}: the intervals that involve "
              f"{'it' if len(few) == 1 else 'them'} cannot resolve anything**: {why}. Read "
              "those differences as anecdotes.", ""]
  if not_counted := _not_counted_line(study):
    lines += [not_counted, ""]
  if study.evaluation:
    e = finished[0].final["evaluation"]
    lines += [f"**Test numbers from evaluation `{study.evaluation}`**: each run's final model "
              f"evaluated by evaluate.py on {e[records.DATASET]} "
              f"({e[records.SPLIT]} split, {e[records.EXAMPLES]:,} images), with the "
              "run's own preprocessing; the training columns are the runs' records.", ""]
    lines += _overlap_lines(finished)
  if versions := loading.code_versions_line(finished):
    lines += [versions, ""]
  elif finished[0].code_versions:
    lines += [f"Code: every run trained by one version, "
              f"{provenance.describe(finished[0].code_versions[0])}.", ""]
  if paper is None:
    lines += ["The paper did not use this data set: no published numbers are shown.", ""]
  elif study.same_experiment:
    lines += [f"Paper: {paper['title']}.", ""]
  else:
    lines += [f"† The paper did not run this experiment. The columns \"{study.paper_label}\" "
              f"are {paper['title']} (50,000 training images, the full-width network), shown "
              "as the reference this study is compared against, not as expected values.", ""]
  return lines


def _results_table(study: _Study) -> list[str]:
  """Each setting's mean ± sd per column, beside the paper's numbers."""
  columns, values = study.columns, study.values
  with_paper = [c.paper_index is not None and study.paper is not None for c in columns]
  header = ["Activation"]
  for c, paper_column in zip(columns, with_paper):
    header += [c.label] + ([study.paper_label] if paper_column else [])
  lines = ["| " + " | ".join(header + ["seeds"]) + " |",
           "|---|" + "---:|" * (len(header) - 1) + "---:|"]
  for s in study.settings:
    cells = [paper_tables.display_name(s)]
    for c, paper_column in zip(columns, with_paper):
      cells.append(_fmt_mean_sd(paired.mean_sd(list(values[c.key][s].values())), c.metric))
      if paper_column:
        cells.append(_fmt(study.paper_value(s, c.paper_index), c.metric))
    lines.append("| " + " | ".join(cells + [str(len(values[columns[0].key][s]))]) + " |")
  return lines + [""]


def _short(label: str) -> str:
  return label.split(" (")[0]


def _differences_to_baseline(study: _Study) -> list[str]:
  """Each setting minus the baseline (ReLU unless --baseline says), paired over seeds,
  beside the paper's difference; every pair when there is no baseline."""
  columns, values, metric, base = study.columns, study.values, study.metric, study.baseline
  unit = " (percentage points)" if metric == "error" else ""
  if base is None:
    pairs = [(a, b) for i, b in enumerate(study.settings) for a in study.settings[i + 1:]]
    if not pairs:
      return []
    lines = [f"## Every pair of settings{unit}, paired over seeds", "",
             "No ReLU runs and no --baseline: each setting minus each earlier one. Seed k "
             "of one minus seed k of the other (same initialisation stream and data order), "
             "mean and 95% interval mean ± t(0.975, n−1)·sd/√n. An interval that excludes 0 "
             "is a difference the seeds resolve; negative is lower.", ""]
    return lines + _pairs_table(pairs, columns, values)
  base_name = paper_tables.display_name(base)
  lines = [f"## Difference to {base_name}{unit}, paired over seeds", "",
           f"Seed k of a setting minus seed k of {base_name} (same initialisation stream and "
           "data order), mean and 95% interval mean ± t(0.975, n−1)·sd/√n. An interval that "
           "excludes 0 is a difference the seeds resolve; negative is lower.", ""]
  test_column = next(c for c in columns if c.paper_index == 1)
  with_paper = study.paper is not None
  lines += ["| " + " | ".join(["Activation"] + [f"Δ {_short(c.label)} [95% CI]" for c in columns]
                             + ([f"Δ {_short(test_column.label)}, {study.paper_label}"]
                                if with_paper else [])
                             + ["pairs"]) + " |",
            "|---|" + "---:|" * (len(columns) + 1 + with_paper)]
  base_ref = study.paper_value(base, 1)
  for s in study.settings:
    if s == base:
      continue
    diffs = [paired.paired_difference(values[c.key][s], values[c.key][base]) for c in columns]
    ref = study.paper_value(s, 1)
    paper_diff = ref - base_ref if ref is not None and base_ref is not None else None
    lines.append("| " + " | ".join(
        [paper_tables.display_name(s)] + [_fmt_diff(d, c.metric) for d, c in zip(diffs, columns)]
        + ([_fmt(paper_diff, metric, signed=True)] if with_paper else [])
        + [str(diffs[-1].n)]) + " |")
  return lines + [""]


def _pairs_table(pairs: list[tuple[str, str]], columns: list[Column],
                 values: dict[str, dict[str, dict[int, float]]]) -> list[str]:
  """One line per pair (a, b): a − b paired over seeds in each column."""
  lines = ["| Pair | " + " | ".join(f"Δ {_short(c.label)} [95% CI]" for c in columns)
           + " | pairs |", "|---|" + "---:|" * (len(columns) + 1)]
  for a, b in pairs:
    diffs = [paired.paired_difference(values[c.key][a], values[c.key][b]) for c in columns]
    lines.append("| " + " | ".join(
        [f"{paper_tables.display_name(a)} − {paper_tables.display_name(b)}"]
        + [_fmt_diff(d, c.metric) for d, c in zip(diffs, columns)] + [str(diffs[-1].n)])
        + " |")
  return lines + [""]


def _leaky_pairs(study: _Study) -> list[str]:
  """The leaky rectifiers against each other (paper_tables.LEAKY_PAIRS), paired over seeds."""
  pairs = [(a, b) for a, b in paper_tables.LEAKY_PAIRS
           if a in study.settings and b in study.settings]
  if not pairs or study.baseline is None:  # without a baseline every pair is listed already
    return []
  # Overfitting shows in the test log-loss (confident mistakes) before the error rate.
  pair_columns = study.columns + ([Column(records.TEST_LOSS, "test log-loss", "log-loss")]
                                  if study.metric == "error" else [])
  pair_values = {**study.values, records.TEST_LOSS: study.loss_vals}
  lines = ["## Between the leaky rectifiers, paired over seeds", "",
           "The paper's claims about RReLU and PReLU (§4, observations 2 and 3) compare "
           "them with each other and with the fixed slope of Leaky ReLU a=5.5, RReLU's "
           "test-time slope; the same paired intervals as above.", ""]
  return lines + _pairs_table(pairs, pair_columns, pair_values)


def _runs_table(study: _Study) -> list[str]:
  """One line per finished run, then the unfinished ones, named."""
  has_train_eval, workdir = study.has_train_eval, study.workdir
  extra = " train error, test mode (%) |" if has_train_eval else ""
  lines = ["## Runs", "", "| Activation | seed | epochs | train error (%) |" + extra
           + " test error (%) | test log-loss | images/s | run |",
           "|---|---:|---:|---:|" + "---:|" * has_train_eval + "---:|---:|---:|---|"]
  for r in study.finished:
    f = r.final
    rel = os.path.relpath(r.path, workdir) if workdir else r.path
    extra = f" {100 * f[records.TRAIN_EVAL_ERROR]:.2f} |" if has_train_eval else ""
    lines.append(f"| {paper_tables.display_name(r.setting)} | {r.seed} | {f[records.EPOCH]} "
                 f"| {100 * f[records.TRAIN_ERROR]:.2f} |{extra} "
                 f"{100 * f[records.TEST_ERROR]:.2f} | {f[records.TEST_LOSS]:.4f} "
                 f"| {f.get(records.IMAGES_PER_SEC, math.nan):.0f} | {rel} |")
  lines.append("")
  if others := study.other_length + study.unfinished:
    lines += ["Not counted above: "
              + "; ".join(loading.status(r, study.num_epochs) for r in others) + ".", ""]
  return lines


def _not_counted_line(study: _Study) -> str | None:
  """One line near the top saying how many runs are left out, and why (None: none)."""
  counts = {"failed": sum(r.failed for r in study.unfinished),
            f"finished at another length than the sweep's {study.num_epochs} epochs":
                len(study.other_length),
            "stopped or still running": sum(not r.failed for r in study.unfinished)}
  parts = [f"{n} {why}" for why, n in counts.items() if n]
  if not parts:
    return None
  return f"**Not counted: {', '.join(parts)}** (listed under Runs)."


def _recipe(study: _Study) -> list[str]:
  config = study.finished[0].config
  if not config:
    return []
  return ["## Recipe (shared by every run; rectifier and seed vary)", "", "```json",
          json.dumps({k: v for k, v in config.items() if k not in ("rectifier", "seed")},
                     indent=1, sort_keys=True), "```", ""]


def _overlap_lines(finished: list[SweepRun]) -> list[str]:
  """What an evaluation's `train_overlap` says about its images: how many each run trained
  on (evaluate.py refuses them without --allow_overlap), or that older runs cannot tell."""
  overlaps = {f"{r.setting}/seed{r.seed}": r.final["evaluation"].get(records.TRAIN_OVERLAP)
              for r in finished}
  lines = []
  if trained_on := {k: n for k, n in overlaps.items() if n}:
    lines += ["**Some of these images are images the runs trained on** (evaluated with "
              "`--allow_overlap`): " + ", ".join(f"{k} {n:,}" for k, n in trained_on.items())
              + ". Their test numbers are not test errors on unseen images.", ""]
  if unknown := [k for k, n in overlaps.items() if n is None]:
    lines += [f"Whether the images overlap the training images of {', '.join(unknown)} "
              "cannot be checked: those runs predate the fingerprints of their training "
              "images (`train_fingerprints.npy`).", ""]
  return lines


def results_markdown(runs: list[SweepRun], workdir: str = "", evaluation: str | None = None,
                     num_epochs: int | None = None, baseline: str | None = None) -> str:
  """The report as Markdown; `runs` may include unfinished runs (listed, not counted).
  With `evaluation`, the test columns are that evaluation's (`loading.with_evaluation`).
  With `num_epochs` (a sweep's), finished runs of another length are listed, not counted;
  without it, finished runs of different lengths are refused. Differences are to
  `baseline` (default ReLU when the runs have it; without one, every pair).

  Raises:
    ValueError: nothing to report, runs that are not one comparison, or a baseline the
      runs do not have (the message says which and what to do).
  """
  study = _study(runs, workdir, evaluation, num_epochs, baseline)
  lines = (_introduction(study) + _results_table(study) + _differences_to_baseline(study)
           + _leaky_pairs(study))
  if not evaluation:  # one evaluation per run: no best over epochs.
    lines += _other_numbers(study)
  lines += _activation_table(study.finished, study.settings)
  lines += _runs_table(study) + _recipe(study)
  return "\n".join(lines)


def _other_numbers(study: _Study) -> list[str]:
  """The best test error over epochs and the final test log-loss, each against the baseline."""
  base = study.baseline
  against = f" vs {paper_tables.display_name(base)}" if base else ""
  lines = ["## Other numbers", "",
           "Best test error over all evaluated epochs (selected on the test set, hence "
           "optimistic) and the final test log-loss (Kaggle's clipped multi-class log-loss).", "",
           f"| Activation | best test error (%) | Δ best{against} [95% CI] | test log-loss "
           f"| Δ log-loss{against} [95% CI] |", "|---|---:|---:|---:|---:|"]
  for s in study.settings:
    best, loss = study.best_vals[s], study.loss_vals[s]
    dbest = dloss = ""
    if base is not None and s != base:
      dbest = _fmt_diff(paired.paired_difference(best, study.best_vals[base]), "error")
      dloss = _fmt_diff(paired.paired_difference(loss, study.loss_vals[base]), "log-loss")
    lines.append(f"| {paper_tables.display_name(s)} "
                 f"| {_fmt_mean_sd(paired.mean_sd(list(best.values())), 'error')} | {dbest} "
                 f"| {_fmt_mean_sd(paired.mean_sd(list(loss.values())), 'log-loss')} "
                 f"| {dloss} |")
  return lines + [""]


def _activation_table(runs: list[SweepRun], settings: list[str]) -> list[str]:
  """Per setting, the final test-split statistics averaged over layers and seeds: what
  the rectifiers do inside the network (rectifiers/statistics.py); [] without them."""
  stats = {s: [r.final[records.ACTIVATIONS][records.TEST] for r in runs
               if r.setting == s and records.TEST in r.final.get(records.ACTIVATIONS, {})]
           for s in settings}
  if not any(stats.values()):
    return []
  lines = ["## Inside the network (final evaluation, test split)", "",
           "Per rectified layer, then averaged over layers: dead units (channels with no "
           "positive input on any test image), negative inputs, and the mean |output| on the "
           "negative side relative to the positive side; mean ± sd over seeds. "
           "activations.png shows the dead units per layer over training.", "",
           "| Activation | dead units (%) | negative inputs (%) | negative / positive output "
           "| layers with dead units |", "|---|---:|---:|---:|---:|"]
  for s in settings:
    if not stats[s]:
      continue
    per_run = {k: [np.mean([layer[k] for layer in run.values()]) for run in stats[s]]
               for k in records.LAYER_STATISTICS}
    layers_dead = [sum(layer[records.DEAD] > 0 for layer in run.values()) for run in stats[s]]
    lines.append(f"| {paper_tables.display_name(s)} "
                 f"| {_fmt_mean_sd(paired.mean_sd(per_run[records.DEAD]), 'error')} "
                 f"| {_fmt_mean_sd(paired.mean_sd(per_run[records.NEGATIVE]), 'error')} "
                 f"| {_fmt_mean_sd(paired.mean_sd(per_run[records.NEGATIVE_OUTPUT]), 'log-loss')} "
                 f"| {np.mean(layers_dead):.1f} of {len(stats[s][0])} |")
  return lines + [""]
