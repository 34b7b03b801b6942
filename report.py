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

import os

from reporting import loading, paper_tables, plots, tables
from training import records, run_directory


def write_report(workdir: str, out: str | None = None, evaluation: str | None = None,
                 baseline: str | None = None) -> dict[str, str]:
  """Writes results.md, curves.png, rectifiers.png and (when the runs recorded them)
  gap.png, activations.png and prelu_slopes.png for the runs in `workdir` into `out` (default
  `workdir`); returns their paths. With `evaluation`, writes only results-NAME.md, the
  tables with that evaluation's test numbers. Differences and curves are against
  `baseline` (default: ReLU when the runs have it; without one, every pair).

  A refused report (ValueError, or RunDirectoryError for a damaged record) renames the
  earlier one in `out` to stale-* first, so that it cannot pass for a report of these runs.
  A directory that holds no runs at all is refused with NoRuns, and nothing in it or in
  `out` is touched: it is a slip of the path, not a change of the runs.
  """
  out = out or workdir
  runs = loading.read_runs(workdir)
  if not runs:
    raise NoRuns(no_runs_message(workdir))
  try:
    num_epochs = run_directory.sweep_num_epochs(workdir)
    markdown = tables.results_markdown(runs, workdir, evaluation, num_epochs, baseline)
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
  baseline = paper_tables.baseline_of(sorted({r.setting for r in finished}), baseline)
  if plots.plot_activations(finished, os.path.join(out, "activations.png"), baseline=baseline):
    paths["activations.png"] = os.path.join(out, "activations.png")
  if plots.plot_prelu_slopes(finished, os.path.join(out, "prelu_slopes.png")):
    paths["prelu_slopes.png"] = os.path.join(out, "prelu_slopes.png")
  dataset, model, _, _ = loading.experiment(finished[0])
  metric = paper_tables.metric_of(loading.paper_table(finished[0])[0])
  against = (f"{paper_tables.display_name(baseline)} against each rectifier" if baseline
             else "each rectifier")
  plots.plot_curves(finished, paths["curves.png"],
                    title=f"{model} on {dataset}: {against} (mean ± sd over seeds)",
                    metric=metric, baseline=baseline)
  if plots.plot_gap(finished, os.path.join(out, "gap.png"), metric):
    paths["gap.png"] = os.path.join(out, "gap.png")
  plots.plot_rectifiers(paths["rectifiers.png"])
  return paths


class ReportRefused(ValueError):
  """The runs cannot be reported on, and an earlier report was renamed stale-*."""


class NoRuns(ValueError):
  """The directory holds no run (WORKDIR/<setting>/seed<k> with records) at all."""


def no_runs_message(workdir: str) -> str:
  """'No runs in WORKDIR', naming the folders below it that do hold runs."""
  below = [os.path.join(workdir, d) for d in sorted(os.listdir(workdir))
           if os.path.isdir(os.path.join(workdir, d))
           and loading.read_runs(os.path.join(workdir, d))]
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
    paths = write_report(FLAGS.workdir, FLAGS.out, FLAGS.evaluation, FLAGS.baseline)
    runs = loading.read_runs(FLAGS.workdir)
    if versions := loading.code_versions_line([r for r in runs if r.finished]):
      print(versions)
    if lines := loading.left_out(runs, run_directory.sweep_num_epochs(FLAGS.workdir)):
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
  flags.DEFINE_string("baseline", None, "The setting every other is compared with (paired "
                      "differences, curves); default: relu when the runs have it, else every "
                      "pair is compared.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
