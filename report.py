r"""The paper's tables and figures from a sweep's runs, with seed statistics the paper did not give.

    python report.py --workdir=runs/cifar10

Reads every `WORKDIR/<setting>/seed<k>` written by `sweep.py` (or by `train.py`) and writes
into WORKDIR (or --out):

  results.md      the paper's table layout (training and test error; train and validation
                  log-loss for NDSB, with the error and the log-loss gap beside them),
                  mean ± standard deviation over seeds, the paper's numbers beside them, and
                  each setting minus ReLU with a paired 95% interval;
  curves.png      the paper's Figures 2-4: ReLU against each other setting, train and test
                  curves per epoch (mean over seeds, band ± one standard deviation);
  gap.png         the generalisation gap (test minus test-mode training error, or log-loss
                  for NDSB) over epochs, per setting (when the runs measured it);
  rectifiers.png  the paper's Figure 1: the rectifiers, RReLU with its range of slopes.

Runs are compared only at one length: a sweep's runs at the num_epochs of its record
(sweep.json), others only when every finished run ended at the same epoch (num_epochs may
change between reruns, so runs of one directory can differ in it). The runs left out are
named with why: failed (failure.json says with what), finished at another length, or
stopped (or still running). When the report is refused, an earlier one in the same place
is renamed stale-*, so that none looks current.

Numbers are the final epoch's (what the paper reports): training error/loss are the running
averages of the last epoch in training mode (dropout and random slopes on, as cxxnet
reported them), test numbers are deterministic mode. The best test error over epochs is
listed separately; it is chosen on the test set, so it is optimistic.

The paired interval: seed k of a setting and seed k of ReLU form a pair (same initialisation
stream, same data order); d_k = setting_k - ReLU_k; the interval is
mean(d) ± t_{0.975, n-1} · sd(d) / √n with n the number of pairs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from training import figures, provenance, records, run_directory

# --- The paper's numbers -------------------------------------------------------------------

# Tables 3 and 4: (training error, test error); Table 5: (train log-loss, validation log-loss).
PAPER_TABLES: dict[str, dict[str, Any]] = {
    "cifar10": {
        "title": "Table 3: CIFAR-10, Network in Network",
        "metric": "error",
        "values": {"relu": (0.00318, 0.1245), "leaky_relu_100": (0.0031, 0.1266),
                   "leaky_relu_5.5": (0.00362, 0.1120), "prelu": (0.00178, 0.1179),
                   "rrelu": (0.00550, 0.1119)}},
    "cifar100": {
        "title": "Table 4: CIFAR-100, Network in Network",
        "metric": "error",
        "values": {"relu": (0.1356, 0.429), "leaky_relu_100": (0.11552, 0.4205),
                   "leaky_relu_5.5": (0.08536, 0.4042), "prelu": (0.0633, 0.4163),
                   "rrelu": (0.1141, 0.4025)}},
    "cifar100_inception": {
        "title": "§3.1: CIFAR-100, Inception-BN (RReLU only: 75.68% accuracy)",
        "metric": "error",
        "values": {"rrelu": (None, 1 - 0.7568)}},
    "ndsb": {
        "title": "Table 5: NDSB, multi-class log-loss",
        "metric": "log-loss",
        "values": {"relu": (0.8092, 0.7727), "leaky_relu_100": (0.7846, 0.7601),
                   "leaky_relu_5.5": (0.7831, 0.7391), "prelu": (0.7187, 0.7454),
                   "rrelu": (0.8090, 0.7292)}},
}

DISPLAY_NAMES = {"relu": "ReLU", "leaky_relu_100": "Leaky ReLU, a=100",
                 "leaky_relu_5.5": "Leaky ReLU, a=5.5", "prelu": "PReLU",
                 "rrelu": "RReLU (y = x / 5.5 at test)", "elu": "ELU", "gelu": "GELU",
                 "silu": "SiLU"}
BASELINE = "relu"
# Pairs the paper's observations 2-3 are about (RReLU's randomness against a fixed or a
# learned slope), reported when a sweep has both settings.
LEAKY_PAIRS = (("rrelu", "leaky_relu_5.5"), ("rrelu", "prelu"), ("prelu", "leaky_relu_5.5"))
GAP = "gap"  # the results table's generalisation-gap column (records.generalisation_gap)
LOSS_GAP = "loss_gap"  # the same in log-loss (records.log_loss_gap), for log-loss tables


def display_name(setting: str) -> str:
  return DISPLAY_NAMES.get(setting, setting)


def paper_table_for(dataset: str, model: str, num_classes: int | None) -> tuple[str, bool]:
  """The paper table a sweep compares with: (key of PAPER_TABLES, whether it is the same
  experiment). Datasets the paper did not use are compared with CIFAR-10 as a reference."""
  if model == "ndsb" or num_classes == 121:
    return "ndsb", True
  if dataset == "tfds:cifar100":
    return ("cifar100_inception" if model == "inception_bn" else "cifar100"), True
  if dataset == "tfds:cifar10":
    return "cifar10", model == "nin"
  return "cifar10", False


# --- Reading runs --------------------------------------------------------------------------

RunRecord = run_directory.SweepRun


def read_runs(workdir: str) -> list[RunRecord]:
  """Every `workdir/<setting>/seed<k>` with metrics (run_directory.read_sweep), sorted by
  setting (the paper's order, then the modern activations) and seed."""
  runs = run_directory.read_sweep(workdir)
  runs.sort(key=lambda r: (_setting_order(r.setting), r.seed))
  return runs


def _setting_order(setting: str) -> tuple[int, str]:
  order = list(DISPLAY_NAMES)
  return (order.index(setting) if setting in order else len(order), setting)


def with_evaluation(runs: list[RunRecord], name: str) -> list[RunRecord]:
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
    if evaluation["step"] != r.final[records.STEP]:
      raise ValueError(f"Evaluation {name!r} of {r.path} is of step {evaluation['step']}, not "
                       f"the run's final step {r.final[records.STEP]}: evaluate the final model.")
    final = {**r.final, **records.split_columns(records.TEST, evaluation),
             "evaluation": evaluation}
    out.append(dataclasses.replace(r, rows=[final]))
  if missing:
    raise ValueError(f"No evaluation {name!r} for {', '.join(missing)}: run python evaluate.py "
                     f"--workdir=<the sweep> --name={name} (with the same --dataset and "
                     "--split) first.")
  return out


def code_versions_line(runs: list[RunRecord]) -> str | None:
  """One line naming the code versions that trained `runs`, and which runs each trained,
  when there is more than one; None when one version (or none recorded) trained them all."""
  versions: dict[str, list[str]] = {}
  for r in runs:
    for entry in r.code_versions:
      versions.setdefault(provenance.describe(entry), []).append(
          f"{r.setting}/seed{r.seed} from step {entry['from_step']}")
  if len(versions) <= 1:
    return None
  return (f"These runs were trained by {len(versions)} code versions: "
          + "; ".join(f"{v} ({', '.join(who)})" for v, who in versions.items()) + ".")


def check_one_length(runs: list[RunRecord]) -> None:
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


def check_one_recipe(runs: list[RunRecord]) -> None:
  """Refuses to compare runs whose configs differ in anything but the rectifier and seed."""
  if differing := run_directory.differing_settings(runs):
    raise ValueError(f"The runs differ in {sorted(differing)}, not only in the rectifier and "
                     "seed: they are not one comparison. Report each recipe from its own "
                     "directory.")


# --- Statistics ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MeanSD:
  mean: float
  sd: float  # sample standard deviation (ddof=1); nan for one value.
  n: int


def mean_sd(values: Sequence[float]) -> MeanSD:
  x = np.asarray(values, np.float64)
  return MeanSD(float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan, len(x))


@dataclasses.dataclass(frozen=True)
class PairedDiff:
  mean: float       # mean over seeds of (setting - baseline).
  half_width: float  # t_{0.975, n-1} · sd / √n; nan with fewer than 2 pairs.
  n: int

  @property
  def low(self) -> float:
    return self.mean - self.half_width

  @property
  def high(self) -> float:
    return self.mean + self.half_width


def paired_difference(values: dict[int, float], baseline: dict[int, float],
                      confidence: float = 0.95) -> PairedDiff:
  """Mean of value[seed] - baseline[seed] over the seeds both have, with a t interval."""
  seeds = sorted(set(values) & set(baseline))
  if not seeds:
    return PairedDiff(math.nan, math.nan, 0)
  d = np.asarray([values[s] - baseline[s] for s in seeds], np.float64)
  n = len(d)
  if n < 2:
    return PairedDiff(float(d.mean()), math.nan, n)
  t = stats.t.ppf(0.5 + confidence / 2, n - 1)
  return PairedDiff(float(d.mean()), float(t * d.std(ddof=1) / math.sqrt(n)), n)


# --- results.md ----------------------------------------------------------------------------


def _fmt(value: float | None, metric: str, signed: bool = False) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  if metric == "error":
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"
  return f"{value:+.4f}" if signed else f"{value:.4f}"


def _fmt_mean_sd(m: MeanSD, metric: str) -> str:
  if math.isnan(m.sd):
    return _fmt(m.mean, metric)
  return f"{_fmt(m.mean, metric)} ± {_fmt(m.sd, metric)}"


def _fmt_diff(d: PairedDiff, metric: str) -> str:
  if d.n == 0:
    return "—"
  if math.isnan(d.half_width):
    return f"{_fmt(d.mean, metric, signed=True)} (n=1)"
  return (f"{_fmt(d.mean, metric, signed=True)} [{_fmt(d.low, metric, signed=True)}, "
          f"{_fmt(d.high, metric, signed=True)}]")


def _values(runs: list[RunRecord], key: str) -> dict[str, dict[int, float]]:
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
  finished: list[RunRecord]
  unfinished: list[RunRecord]
  other_length: list[RunRecord]  # finished, at another epoch than the sweep's num_epochs
  num_epochs: int | None         # the sweep's (sweep.json); None for runs placed by hand
  workdir: str
  evaluation: str | None
  dataset: str
  model: str
  paper: dict[str, Any]          # PAPER_TABLES' entry the runs are compared with
  same_experiment: bool          # the paper ran this experiment (else: a reference)
  has_train_eval: bool
  columns: list[Column]
  values: dict[str, dict[str, dict[int, float]]]  # {column key: {setting: {seed: value}}}
  best_vals: dict[str, dict[int, float]]
  loss_vals: dict[str, dict[int, float]]
  settings: list[str]

  @property
  def metric(self) -> str:
    return self.paper["metric"]  # error tables report error rates; the NDSB table log-losses.

  @property
  def paper_label(self) -> str:
    """The heading of the paper's columns; for another dataset they are a reference."""
    return "paper" if self.same_experiment else "paper CIFAR-10 †"


def partition(runs: list[RunRecord], num_epochs: int | None
              ) -> tuple[list[RunRecord], list[RunRecord], list[RunRecord]]:
  """(counted: finished at the sweep's length; unfinished: failed, stopped or running;
  finished at another length)."""
  unfinished = [r for r in runs if not r.finished]
  other_length = [r for r in runs if r.finished and num_epochs is not None
                  and r.final[records.EPOCH] != num_epochs]
  counted = [r for r in runs if r.finished and not any(r is o for o in other_length)]
  return counted, unfinished, other_length


def left_out(runs: list[RunRecord], num_epochs: int | None) -> list[str]:
  """One line per run the report does not count, saying why (`_status`)."""
  _, unfinished, other_length = partition(runs, num_epochs)
  return [_status(r, num_epochs).replace("**", "") for r in unfinished + other_length]


def _study(runs: list[RunRecord], workdir: str, evaluation: str | None,
           num_epochs: int | None) -> _Study:
  finished, unfinished, other_length = partition(runs, num_epochs)
  if evaluation and finished:
    finished = with_evaluation(finished, evaluation)
  if not finished:
    raise ValueError("No finished runs to report on"
                     + (f" in {workdir}" if workdir else "")
                     + (f" at the sweep's {num_epochs} epochs ("
                        + ", ".join(_status(r, num_epochs) for r in other_length) + ")"
                        if other_length else "") + ".")
  check_one_length(finished)
  check_one_recipe(finished)
  first = finished[0]
  dataset = first.config.get("dataset", (first.summary or {}).get("dataset", "?"))
  model = first.config.get("model", (first.summary or {}).get("model", "?"))
  table_key, same_experiment = paper_table_for(dataset, model, first.dataset.get("num_classes"))
  paper = PAPER_TABLES[table_key]
  has_train_eval = all(records.TRAIN_EVAL_ERROR in r.final for r in finished)
  columns = _columns(paper["metric"], has_train_eval)
  values = {c.key: _values(finished, c.key) for c in columns}
  return _Study(
      finished=finished, unfinished=unfinished, other_length=other_length,
      num_epochs=num_epochs, workdir=workdir, evaluation=evaluation,
      dataset=dataset, model=model, paper=paper, same_experiment=same_experiment,
      has_train_eval=has_train_eval, columns=columns, values=values,
      best_vals=_values(finished, records.BEST_TEST_ERROR),
      loss_vals=_values(finished, records.TEST_LOSS),
      settings=sorted(values[columns[0].key], key=_setting_order))


def _introduction(study: _Study) -> list[str]:
  """The title, what the numbers are, the evaluation, the code version and the paper."""
  finished, settings, paper = study.finished, study.settings, study.paper
  epochs = sorted({r.final[records.EPOCH] for r in finished})
  seeds = sorted({r.seed for r in finished})
  train_examples = sorted({r.dataset.get("train_examples") for r in finished} - {None})
  lines = [f"# Rectifier comparison: {study.model} on {study.dataset}"
           + (f", {train_examples[0]:,} training images" if len(train_examples) == 1 else ""),
           ""]
  seeds_of = {s: sorted(r.seed for r in finished if r.setting == s) for s in settings}
  same_seeds = all(v == seeds for v in seeds_of.values())
  lines += [f"{len(finished)} finished runs: {len(settings)} settings × "
            + (f"seeds {seeds}" if same_seeds else "seeds " + "; ".join(
                f"{display_name(s)} {v}" for s, v in seeds_of.items()))
            + "; "
            f"numbers at the final epoch ({', '.join(map(str, epochs))}), mean ± standard "
            "deviation over seeds (ddof=1). Training mode: running averages over the last "
            "epoch with dropout and random slopes on, as cxxnet reported them (the paper's "
            "tables). Test mode: deterministic, as at test time"
            + (" (on a fixed subset of the training images, `train_eval_examples`)"
               if study.has_train_eval else "") + ".", ""]
  if not_counted := _not_counted_line(study):
    lines += [not_counted, ""]
  if study.evaluation:
    e = finished[0].final["evaluation"]
    lines += [f"**Test numbers from evaluation `{study.evaluation}`**: each run's final model "
              f"evaluated by evaluate.py on {e['dataset']} ({e['split']} split, "
              f"{e['examples']:,} images), with the run's own preprocessing; the training "
              "columns are the runs' records.", ""]
  if versions := code_versions_line(finished):
    lines += [versions, ""]
  elif finished[0].code_versions:
    lines += [f"Code: every run trained by one version, "
              f"{provenance.describe(finished[0].code_versions[0])}.", ""]
  if study.same_experiment:
    lines += [f"Paper: {paper['title']}.", ""]
  else:
    lines += [f"† The paper did not run this experiment. The columns \"{study.paper_label}\" "
              f"are {paper['title']} (50,000 training images, the full-width network), shown "
              "as the reference this study is compared against, not as expected values.", ""]
  return lines


def _results_table(study: _Study) -> list[str]:
  """Each setting's mean ± sd per column, beside the paper's numbers."""
  columns, values, paper = study.columns, study.values, study.paper
  header = ["Activation"]
  for c in columns:
    header += [c.label] + ([study.paper_label] if c.paper_index is not None else [])
  lines = ["| " + " | ".join(header + ["seeds"]) + " |",
           "|---|" + "---:|" * (len(header) - 1) + "---:|"]
  for s in study.settings:
    cells = [display_name(s)]
    for c in columns:
      cells.append(_fmt_mean_sd(mean_sd(list(values[c.key][s].values())), c.metric))
      if c.paper_index is not None:
        cells.append(_fmt(paper["values"].get(s, (None, None))[c.paper_index], c.metric))
    lines.append("| " + " | ".join(cells + [str(len(values[columns[0].key][s]))]) + " |")
  return lines + [""]


def _differences_to_baseline(study: _Study) -> list[str]:
  """Each setting minus ReLU, paired over seeds, beside the paper's difference."""
  columns, values, paper, metric = study.columns, study.values, study.paper, study.metric
  if BASELINE not in study.settings:
    return ["No ReLU runs: no differences to ReLU.", ""]
  unit = " (percentage points)" if metric == "error" else ""
  lines = [f"## Difference to ReLU{unit}, paired over seeds", "",
           "Seed k of a setting minus seed k of ReLU (same initialisation stream and data "
           "order), mean and 95% interval mean ± t(0.975, n−1)·sd/√n. An interval that "
           "excludes 0 is a difference the seeds resolve; negative is lower.", ""]
  test_column = next(c for c in columns if c.paper_index == 1)
  lines += ["| " + " | ".join(["Activation"] + [f"Δ {c.label.split(' (')[0]} [95% CI]"
                                                for c in columns]
                             + [f"Δ {test_column.label.split(' (')[0]}, {study.paper_label}",
                                "pairs"]) + " |",
            "|---|" + "---:|" * (len(columns) + 2)]
  base_ref = paper["values"].get(BASELINE, (None, None))
  for s in study.settings:
    if s == BASELINE:
      continue
    diffs = [paired_difference(values[c.key][s], values[c.key][BASELINE]) for c in columns]
    ref = paper["values"].get(s, (None, None))
    paper_diff = (ref[1] - base_ref[1] if ref[1] is not None and base_ref[1] is not None
                  else None)
    lines.append("| " + " | ".join(
        [display_name(s)] + [_fmt_diff(d, c.metric) for d, c in zip(diffs, columns)]
        + [_fmt(paper_diff, metric, signed=True), str(diffs[-1].n)]) + " |")
  return lines + [""]


def _leaky_pairs(study: _Study) -> list[str]:
  """The leaky rectifiers against each other (LEAKY_PAIRS), paired over seeds."""
  pairs = [(a, b) for a, b in LEAKY_PAIRS if a in study.settings and b in study.settings]
  if not pairs:
    return []
  # Overfitting shows in the test log-loss (confident mistakes) before the error rate.
  pair_columns = study.columns + ([Column(records.TEST_LOSS, "test log-loss", "log-loss")]
                                  if study.metric == "error" else [])
  pair_values = {**study.values, records.TEST_LOSS: study.loss_vals}
  lines = ["## Between the leaky rectifiers, paired over seeds", "",
           "The paper's claims about RReLU and PReLU (§4, observations 2 and 3) compare "
           "them with each other and with the fixed slope of Leaky ReLU a=5.5, RReLU's "
           "test-time slope; the same paired intervals as above.", "",
           "| Pair | " + " | ".join(f"Δ {c.label.split(' (')[0]} [95% CI]"
                                  for c in pair_columns)
           + " | pairs |", "|---|" + "---:|" * (len(pair_columns) + 1)]
  for a, b in pairs:
    diffs = [paired_difference(pair_values[c.key][a], pair_values[c.key][b])
             for c in pair_columns]
    lines.append("| " + " | ".join(
        [f"{display_name(a)} − {display_name(b)}"]
        + [_fmt_diff(d, c.metric) for d, c in zip(diffs, pair_columns)] + [str(diffs[-1].n)])
        + " |")
  return lines + [""]


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
    lines.append(f"| {display_name(r.setting)} | {r.seed} | {f[records.EPOCH]} "
                 f"| {100 * f[records.TRAIN_ERROR]:.2f} |{extra} "
                 f"{100 * f[records.TEST_ERROR]:.2f} | {f[records.TEST_LOSS]:.4f} "
                 f"| {f.get(records.IMAGES_PER_SEC, math.nan):.0f} | {rel} |")
  lines.append("")
  if others := study.other_length + study.unfinished:
    lines += ["Not counted above: "
              + "; ".join(_status(r, study.num_epochs) for r in others) + ".", ""]
  return lines


def _status(r: RunRecord, num_epochs: int | None) -> str:
  """Why run `r` is not counted, for the report: failed, another length, or stopped."""
  name = f"{r.setting}/seed{r.seed}"
  reached = f"epoch {r.final[records.EPOCH]}" if r.rows else "no evaluation"
  if r.finished:
    fix = ("rerun the sweep to train it on" if r.final[records.EPOCH] < (num_epochs or 0)
           else "report it from its own directory")
    return f"{name} (finished at {reached}; the sweep's runs train {num_epochs} epochs: {fix})"
  if r.failed:
    error = str(r.failure.get("error", "")).splitlines()[0][:200] if r.failure else ""
    return f"{name} (**failed** at {reached} of {r.num_epochs}: {error})"
  return f"{name} ({reached} of {r.num_epochs}; stopped, or still running)"


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


def results_markdown(runs: list[RunRecord], workdir: str = "", evaluation: str | None = None,
                     num_epochs: int | None = None) -> str:
  """The report as Markdown; `runs` may include unfinished runs (listed, not counted).
  With `evaluation`, the test columns are that evaluation's (`with_evaluation`). With
  `num_epochs` (a sweep's), finished runs of another length are listed, not counted;
  without it, finished runs of different lengths are refused.

  Raises:
    ValueError: nothing to report, or runs that are not one comparison (the message says
      which and what to do).
  """
  study = _study(runs, workdir, evaluation, num_epochs)
  lines = (_introduction(study) + _results_table(study) + _differences_to_baseline(study)
           + _leaky_pairs(study))
  if not evaluation:  # one evaluation per run: no best over epochs.
    lines += _other_numbers(study.settings, study.best_vals, study.loss_vals)
  lines += _activation_table(study.finished, study.settings)
  lines += _runs_table(study) + _recipe(study)
  return "\n".join(lines)


def _other_numbers(settings: list[str], best_vals: dict[str, dict[int, float]],
                   loss_vals: dict[str, dict[int, float]]) -> list[str]:
  lines = ["## Other numbers", "",
           "Best test error over all evaluated epochs (selected on the test set, hence "
           "optimistic) and the final test log-loss (Kaggle's clipped multi-class log-loss).", "",
           "| Activation | best test error (%) | Δ best vs ReLU [95% CI] | test log-loss "
           "| Δ log-loss vs ReLU [95% CI] |", "|---|---:|---:|---:|---:|"]
  for s in settings:
    dbest = dloss = ""
    if BASELINE in best_vals and s != BASELINE:
      dbest = _fmt_diff(paired_difference(best_vals[s], best_vals[BASELINE]), "error")
      dloss = _fmt_diff(paired_difference(loss_vals[s], loss_vals[BASELINE]), "log-loss")
    lines.append(f"| {display_name(s)} | {_fmt_mean_sd(mean_sd(list(best_vals[s].values())), 'error')} "
                 f"| {dbest} | {_fmt_mean_sd(mean_sd(list(loss_vals[s].values())), 'log-loss')} "
                 f"| {dloss} |")
  return lines + [""]


def _activation_table(runs: list[RunRecord], settings: list[str]) -> list[str]:
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
               for k in ("dead", "negative", "negative_output")}
    layers_dead = [sum(layer["dead"] > 0 for layer in run.values()) for run in stats[s]]
    lines.append(f"| {display_name(s)} | {_fmt_mean_sd(mean_sd(per_run['dead']), 'error')} "
                 f"| {_fmt_mean_sd(mean_sd(per_run['negative']), 'error')} "
                 f"| {_fmt_mean_sd(mean_sd(per_run['negative_output']), 'log-loss')} "
                 f"| {np.mean(layers_dead):.1f} of {len(stats[s][0])} |")
  return lines + [""]


# --- Figures -------------------------------------------------------------------------------


def plot_activations(runs: list[RunRecord], path: str, title: str = "") -> bool:
  """Dead units per rectified layer over training (test split), one panel per layer,
  each setting's mean over seeds with a ± sd band, ReLU in black. False (and nothing
  written) when the runs recorded no activation statistics."""
  runs = [r for r in runs
          if all(records.TEST in row.get(records.ACTIVATIONS, {}) for row in r.rows)]
  if not runs:
    return False
  layers = list(runs[0].rows[-1][records.ACTIVATIONS][records.TEST])
  by_setting: dict[str, list[RunRecord]] = {}
  for r in runs:
    by_setting.setdefault(r.setting, []).append(r)
  cols = min(3, len(layers))
  rows = math.ceil(len(layers) / cols)
  fig = figures.figure(figsize=(4.0 * cols, 2.8 * rows))
  axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
  colors = iter(["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown",
                 "tab:pink", "tab:olive"])
  for setting in sorted(by_setting, key=_setting_order):
    color = "black" if setting == BASELINE else next(colors, "tab:gray")
    group = by_setting[setting]
    common = sorted(set.intersection(*[{row[records.EPOCH] for row in r.rows} for r in group]))
    for i, layer in enumerate(layers):
      table = np.asarray([[100 * next(row[records.ACTIVATIONS][records.TEST][layer]["dead"]
                                      for row in r.rows if row[records.EPOCH] == e)
                           for e in common] for r in group])
      mean = table.mean(axis=0)
      sd = table.std(axis=0, ddof=1) if len(group) > 1 else np.zeros_like(mean)
      ax = axes[i // cols, i % cols]
      ax.plot(common, mean, color=color, linewidth=1.5 if setting == BASELINE else 1.0,
              label=f"{display_name(setting)} (n={len(group)})")
      ax.fill_between(common, mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
      ax.set_title(layer, fontsize=9)
      ax.grid(alpha=0.3)
  for i in range(len(layers), rows * cols):
    axes[i // cols, i % cols].axis("off")
  for ax in axes[-1]:
    ax.set_xlabel("epoch")
  for ax in axes[:, 0]:
    ax.set_ylabel("dead units (%)")
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(title or "Dead units per layer (test split; mean ± sd over seeds)", fontsize=10)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def plot_prelu_slopes(runs: list[RunRecord], path: str) -> bool:
  """PReLU's learned slopes per layer: their mean over training (mean over seeds, band
  from the layer's smallest to largest slope) and the final slopes' spread. False (and
  nothing written) without PReLU runs that recorded them."""
  runs = [r for r in runs
          if all(records.PRELU_SLOPES in row.get(records.ACTIVATIONS, {}) for row in r.rows)]
  if not runs:
    return False
  layers = list(runs[0].rows[-1][records.ACTIVATIONS][records.PRELU_SLOPES])
  common = sorted(set.intersection(*[{row[records.EPOCH] for row in r.rows} for r in runs]))
  fig = figures.figure(figsize=(11, 4))
  left, right = fig.subplots(1, 2)
  import matplotlib  # pylint: disable=g-import-not-at-top  (slow; figures.figure loaded it)
  cmap = matplotlib.colormaps["viridis"]
  for i, layer in enumerate(layers):
    color = cmap(i / max(1, len(layers) - 1))
    get = lambda key: np.asarray([[next(row[records.ACTIVATIONS][records.PRELU_SLOPES][layer][key]
                                        for row in r.rows if row[records.EPOCH] == e)
                                   for e in common] for r in runs]).mean(axis=0)
    left.plot(common, get("mean"), color=color, label=layer)
    left.fill_between(common, get("min"), get("max"), color=color, alpha=0.08, linewidth=0)
  left.axhline(0.25, color="gray", linestyle=":", linewidth=1)
  left.set(xlabel="epoch", ylabel="slope", title=f"PReLU slopes per layer (mean; band: min–max; "
           f"n={len(runs)})")
  left.grid(alpha=0.3)
  left.legend(fontsize=7, ncol=2)
  finals = [np.concatenate([np.asarray(r.summary["prelu_slope_vectors"][layer]) for r in runs
                            if r.summary and "prelu_slope_vectors" in r.summary] or [np.zeros(0)])
            for layer in layers]
  if all(len(f) for f in finals):
    right.boxplot(finals, showfliers=True)
    right.set_xticks(range(1, len(layers) + 1), layers, rotation=45, fontsize=8)
    right.axhline(0.25, color="gray", linestyle=":", linewidth=1)
    right.set(ylabel="slope", title="final slopes, every channel of every seed")
    right.grid(alpha=0.3)
  else:
    right.axis("off")
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def _curve(runs: list[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Epochs, mean and sd over runs of `key` (epochs every run has)."""
  common = sorted(set.intersection(*[{row[records.EPOCH] for row in r.rows} for r in runs]))
  table = np.asarray([[next(row[key] for row in r.rows if row[records.EPOCH] == e) for e in common]
                      for r in runs], np.float64)
  sd = table.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(common))
  return np.asarray(common), table.mean(axis=0), sd


def plot_curves(runs: list[RunRecord], path: str, title: str = "",
                metric: str = "error") -> None:
  """The paper's Figures 2-4: one column per non-ReLU setting, train (top) and test (bottom)
  curves of ReLU and that setting, mean over seeds with a ± one standard deviation band."""
  by_setting: dict[str, list[RunRecord]] = {}
  for r in runs:
    by_setting.setdefault(r.setting, []).append(r)
  others = [s for s in sorted(by_setting, key=_setting_order) if s != BASELINE]
  if BASELINE not in by_setting or not others:
    others = [s for s in sorted(by_setting, key=_setting_order)]  # no pairing: plot each alone.
  train_key, test_key = ((records.TRAIN_ERROR, records.TEST_ERROR) if metric == "error"
                         else (records.TRAIN_LOSS, records.TEST_LOSS))
  ylabel = "error rate" if metric == "error" else "log-loss"
  fig = figures.figure(figsize=(max(3.6 * len(others), 7.0), 6.2))
  axes = fig.subplots(2, len(others), squeeze=False, sharex=True, sharey="row")
  for col, s in enumerate(others):
    for row, (key, split) in enumerate(((train_key, "train"), (test_key, "test"))):
      ax = axes[row, col]
      pair = [BASELINE, s] if BASELINE in by_setting and s != BASELINE else [s]
      for setting, color in zip(pair, ("tab:gray", "tab:red")):
        epochs, mean, sd = _curve(by_setting[setting], key)
        n = len(by_setting[setting])
        ax.plot(epochs, mean, color=color, label=f"{display_name(setting)} (n={n})")
        ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
        eval_key = key.replace("train_", "train_eval_")
        if split == "train" and all(eval_key in r.rows[-1] for r in by_setting[setting]):
          epochs, mean, _ = _curve(by_setting[setting], eval_key)
          ax.plot(epochs, mean, color=color, linestyle="--", linewidth=1,
                  label=f"{display_name(setting)}, test mode")
      ax.grid(alpha=0.3)
      if row == 0:
        ax.set_title(f"ReLU vs {display_name(s)}" if len(pair) == 2 else display_name(s),
                     fontsize=10)
        ax.legend(fontsize=7)
      if row == 1:
        ax.set_xlabel("epoch")
      if col == 0:
        ax.set_ylabel(f"{split} {ylabel}" + (" (training mode)" if split == "train" else ""))
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)


def plot_gap(runs: list[RunRecord], path: str, metric: str = "error") -> bool:
  """The generalisation gap over epochs (test minus test-mode training error, or
  log-loss), one line per setting, mean over seeds with a ± one standard deviation band;
  False (nothing written) when the runs did not measure test-mode training numbers."""
  gap_of = records.generalisation_gap if metric == "error" else records.log_loss_gap
  if not runs or not all(records.TRAIN_EVAL_LOSS in r.rows[-1] for r in runs):
    return False
  by_setting: dict[str, list[RunRecord]] = {}
  for r in runs:
    by_setting.setdefault(r.setting, []).append(r)
  fig = figures.figure(figsize=(7.5, 4.2))
  ax = fig.subplots()
  for s in sorted(by_setting, key=_setting_order):
    group = by_setting[s]
    common = sorted(set.intersection(*[{row[records.EPOCH] for row in r.rows} for r in group]))
    table = np.asarray([[gap_of(next(row for row in r.rows if row[records.EPOCH] == e))
                         for e in common] for r in group], np.float64)
    scale = 100.0 if metric == "error" else 1.0
    mean = scale * table.mean(axis=0)
    sd = scale * (table.std(axis=0, ddof=1) if len(group) > 1 else np.zeros(len(common)))
    line, = ax.plot(common, mean, label=f"{display_name(s)} (n={len(group)})")
    ax.fill_between(common, mean - sd, mean + sd, color=line.get_color(), alpha=0.15,
                    linewidth=0)
  ax.axhline(0.0, color="k", linewidth=0.8)
  ax.set(xlabel="epoch", ylabel=("test − train error, test mode (points)" if metric == "error"
                                 else "test − train log-loss, test mode"),
         title="Generalisation gap over training (mean ± sd over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def plot_rectifiers(path: str) -> None:
  """The paper's Figure 1 on [-4, 4]: ReLU; Leaky ReLU a=100 and a=5.5; PReLU at its
  initial slope 0.25 (learned per channel); RReLU's training range of slopes 1/u..1/l =
  1/8..1/3 (a ~ U(3, 8)) and its test-time line x / 5.5; and, in a fifth panel, the
  smooth activations after 2015 that the studies compare them with (ELU, GELU, SiLU)."""
  from rectifiers import functional as F
  import jax.numpy as jnp
  x = np.linspace(-4, 4, 401)
  xj = jnp.asarray(x, jnp.float32)
  fig = figures.figure(figsize=(16, 3.4))
  axes = fig.subplots(1, 5, sharey=True)
  panels = [
      ("ReLU", [(np.asarray(F.relu(xj)), "y = max(0, x)", "-")]),
      ("Leaky ReLU (a fixed)", [(np.asarray(F.leaky_relu(xj, 100.0)), "a = 100", "-"),
                                (np.asarray(F.leaky_relu(xj, 5.5)), "a = 5.5", "--")]),
      ("PReLU (a learned)", [(np.asarray(F.prelu(xj, jnp.float32(0.25))),
                              "slope 0.25 (initial)", "-")]),
  ]
  for ax, (title, curves) in zip(axes, panels):
    for y, label, style in curves:
      ax.plot(x, y, style, label=label)
    ax.set_title(title, fontsize=10)
  ax = axes[3]
  neg = x < 0
  ax.fill_between(x[neg], x[neg] / 3.0, x[neg] / 8.0, color="tab:red", alpha=0.25,
                  label="training: a ~ U(3, 8)")
  ax.plot(x, np.asarray(F.rrelu(xj, None, 3.0, 8.0, deterministic=True)), color="tab:red",
          label="test: y = x / 5.5")
  ax.set_title("RReLU (a random in training)", fontsize=10)
  ax = axes[4]
  import jax  # pylint: disable=g-import-not-at-top
  for smooth, label, style in ((jax.nn.elu(xj), "ELU", "-"),
                               (jax.nn.gelu(xj, approximate=False), "GELU", "--"),
                               (jax.nn.silu(xj), "SiLU", ":")):
    ax.plot(x, np.asarray(smooth), style, label=label)
  ax.set_title("After the paper (smooth)", fontsize=10)
  for ax in axes:
    ax.axhline(0, color="k", linewidth=0.5)
    ax.axvline(0, color="k", linewidth=0.5)
    ax.set_xlabel("x")
    ax.set_xlim(-4, 4)
    ax.set_ylim(-1.5, 4)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
  axes[0].set_ylabel("y")
  fig.tight_layout()
  figures.save(fig, path, dpi=110)


def write_report(workdir: str, out: str | None = None,
                 evaluation: str | None = None) -> dict[str, str]:
  """Writes results.md, curves.png, rectifiers.png and (when the runs recorded them)
  gap.png, activations.png and prelu_slopes.png for the runs in `workdir` into `out` (default
  `workdir`); returns their paths. With `evaluation`, writes only results-NAME.md, the
  tables with that evaluation's test numbers.

  A refused report (ValueError, or RunDirectoryError for a damaged record) renames the
  earlier one in `out` to stale-* first, so that it cannot pass for a report of these runs.
  A directory that holds no runs at all is refused with NoRuns, and nothing in it or in
  `out` is touched: it is a slip of the path, not a change of the runs.
  """
  out = out or workdir
  runs = read_runs(workdir)
  if not runs:
    raise NoRuns(no_runs_message(workdir))
  try:
    num_epochs = run_directory.sweep_num_epochs(workdir)
    markdown = results_markdown(runs, workdir, evaluation, num_epochs)
  except (ValueError, run_directory.RunDirectoryError) as e:
    if renamed := _set_aside(out, evaluation):
      raise ReportRefused(f"{e}\nThe earlier report no longer describes these runs: renamed "
                          f"{', '.join(renamed)} in {out}.") from None
    raise
  os.makedirs(out, exist_ok=True)
  if evaluation:
    path = os.path.join(out, f"results-{evaluation}.md")
    with open(path, "w") as f:
      f.write(markdown)
    return {"results": path}
  paths = {name: os.path.join(out, name) for name in ("results.md", "curves.png",
                                                      "rectifiers.png")}
  with open(paths["results.md"], "w") as f:
    f.write(markdown)
  finished = [r for r in runs if r.finished and num_epochs in (None, r.final[records.EPOCH])]
  for name, plot in (("activations.png", plot_activations),
                     ("prelu_slopes.png", plot_prelu_slopes)):
    if plot(finished, os.path.join(out, name)):
      paths[name] = os.path.join(out, name)
  first = finished[0]
  table_key, _ = paper_table_for(first.config.get("dataset", ""), first.config.get("model", ""),
                                 first.dataset.get("num_classes"))
  metric = PAPER_TABLES[table_key]["metric"]
  plot_curves(finished, paths["curves.png"],
              title=f"{first.config.get('model', '')} on {first.config.get('dataset', '')}: "
                    "ReLU against each rectifier (mean ± sd over seeds)",
              metric=metric)
  if plot_gap(finished, os.path.join(out, "gap.png"), metric):
    paths["gap.png"] = os.path.join(out, "gap.png")
  plot_rectifiers(paths["rectifiers.png"])
  return paths


class ReportRefused(ValueError):
  """The runs cannot be reported on, and an earlier report was renamed stale-*."""


class NoRuns(ValueError):
  """The directory holds no run (WORKDIR/<setting>/seed<k> with records) at all."""


def no_runs_message(workdir: str) -> str:
  """'No runs in WORKDIR', naming the folders below it that do hold runs."""
  below = [os.path.join(workdir, d) for d in sorted(os.listdir(workdir))
           if os.path.isdir(os.path.join(workdir, d)) and read_runs(os.path.join(workdir, d))]
  hint = (f"; did you mean {' or '.join(below)}?" if below
          else "; a sweep's directory holds <setting>/seed<k> run directories.")
  return f"No runs in {workdir} (nothing was written or renamed){hint}"


STALE_PREFIX = "stale-"
# What a report writes from the runs (rectifiers.png depends on no run).
_REPORT_FILES = ("results.md", "curves.png", "activations.png", "prelu_slopes.png", "gap.png")


def _set_aside(out: str, evaluation: str | None) -> list[str]:
  """Renames the report files in `out` (those of `evaluation`, or the main ones) to
  stale-NAME, replacing older stale ones; returns the new names."""
  names = [f"results-{evaluation}.md"] if evaluation else list(_REPORT_FILES)
  renamed = []
  for name in names:
    if os.path.exists(path := os.path.join(out, name)):
      os.replace(path, os.path.join(out, STALE_PREFIX + name))
      renamed.append(f"{name} to {STALE_PREFIX}{name}")
  return renamed


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS
  try:
    paths = write_report(FLAGS.workdir, FLAGS.out, FLAGS.evaluation)
    runs = read_runs(FLAGS.workdir)
    if versions := code_versions_line([r for r in runs if r.finished]):
      print(versions)
    if lines := left_out(runs, run_directory.sweep_num_epochs(FLAGS.workdir)):
      print(f"Not counted ({len(lines)}):\n" + "\n".join(f"  {line}" for line in lines))
  except (FileNotFoundError, ValueError, run_directory.RunDirectoryError) as e:
    raise SystemExit(f"report.py: {e}")
  print("\n".join(paths.values()))


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A sweep's directory (WORKDIR/<setting>/seed<k>).")
  flags.DEFINE_string("out", None, "Where to write the report; default: --workdir.")
  flags.DEFINE_string("evaluation", None, "Build the tables from each run's evaluation of "
                      "this name (evaluate.py --name) instead of its training record; writes "
                      "results-NAME.md.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
