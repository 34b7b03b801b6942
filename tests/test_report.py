"""report.py on fabricated runs: the numbers in results.md against a hand computation."""

import json
import math
import os

import pytest

import report
from reporting import loading, paired, tables
from training import run_directory


def fake_run(workdir, setting, seed, finals, *, dataset="tfds:cifar10", model="nin",
             num_classes=10, num_epochs=3, finished=True):
  """A run directory as train.py writes it; `finals` are the last row's values, earlier
  epochs get worse numbers so that the curves have a shape."""
  path = os.path.join(workdir, setting, f"seed{seed}")
  os.makedirs(path)
  rows = []
  last = num_epochs if finished else num_epochs - 1
  for epoch in range(1, last + 1):
    worse = 0.1 * (last - epoch)
    rows.append({"epoch": epoch, "step": 10 * epoch, "train_error": finals["train_error"] + worse,
                 "train_loss": finals["train_loss"] + worse,
                 "test_error": finals["test_error"] + worse,
                 "test_loss": finals["test_loss"] + worse, "test_examples": 100,
                 "learning_rate": 0.1, "images_per_sec": 100.0, "wall_time": float(epoch)})
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  config = {"dataset": dataset, "model": model, "rectifier": setting, "seed": seed,
            "num_epochs": num_epochs}
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(path, "dataset.json"), "w") as f:
    json.dump({"num_classes": num_classes}, f)
  if finished:
    with open(os.path.join(path, "summary.json"), "w") as f:
      json.dump({**rows[-1], "dataset": dataset, "model": model, "rectifier": setting,
                 "seed": seed}, f)


def table_row(markdown, name, section=0):
  """The cells of the first row starting with `| name |` after the section-th '## '."""
  text = markdown.split("\n## ")[section]
  for line in text.splitlines():
    if line.startswith(f"| {name} |"):
      return [c.strip() for c in line.strip("|").split("|")]
  raise AssertionError(f"no row {name!r} in section {section}:\n{text}")


# Test errors: ReLU 30, 32, 34 %; RReLU 28, 31, 31 %. Training errors: ReLU 5, 6, 10 %;
# RReLU 7, 9, 8 %.
RELU = [(0.05, 0.30), (0.06, 0.32), (0.10, 0.34)]
RRELU = [(0.07, 0.28), (0.09, 0.31), (0.08, 0.31)]


@pytest.fixture
def cifar_sweep(tmp_path):
  for setting, values in (("relu", RELU), ("rrelu", RRELU)):
    for seed, (train_error, test_error) in enumerate(values):
      fake_run(tmp_path, setting, seed, {"train_error": train_error, "test_error": test_error,
                                         "train_loss": 0.5 + seed, "test_loss": 1.0 + seed})
  return tmp_path


def test_means_sds_and_paired_interval_match_a_hand_computation(cifar_sweep):
  markdown = tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep))
  # ReLU test: mean 32.00, sd sqrt(((-2)^2 + 0 + 2^2) / 2) = 2.00. Train: mean 7.00,
  # sd sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.6458. Paper Table 3: 0.32 and 12.45.
  assert table_row(markdown, "ReLU") == ["ReLU", "7.00 ± 2.65", "0.32", "32.00 ± 2.00", "12.45",
                                         "3"]
  # RReLU test: mean 30.00, sd sqrt((4 + 1 + 1) / 2) = sqrt(3) = 1.7321.
  rrelu = table_row(markdown, "RReLU (y = x / 5.5 at test)")
  assert rrelu == ["RReLU (y = x / 5.5 at test)", "8.00 ± 1.00", "0.55", "30.00 ± 1.73", "11.19",
                   "3"]
  # Paired test differences: -2, -1, -3 pp; mean -2, sd 1; t(0.975, 2) = 4.302653;
  # half-width 4.302653 * 1 / sqrt(3) = 2.4841 -> [-4.48, +0.48].
  # Training: +2, +3, -2 pp; mean 1, sd sqrt((1 + 4 + 9) / 2) = sqrt(7);
  # half-width 4.302653 * 2.6458 / sqrt(3) = 6.5725 -> [-5.57, +7.57].
  # Paper: 11.19 - 12.45 = -1.26.
  diff = table_row(markdown, "RReLU (y = x / 5.5 at test)", section=1)
  assert diff == ["RReLU (y = x / 5.5 at test)", "+1.00 [-5.57, +7.57]", "-2.00 [-4.48, +0.48]",
                  "-1.26", "3"]
  assert "Table 3: CIFAR-10" in markdown and "†" not in markdown


def test_paired_difference_uses_only_common_seeds_and_student_t():
  d = paired.paired_difference({0: 1.0, 1: 3.0, 2: 2.0, 7: 100.0}, {0: 0.0, 1: 1.0, 2: 1.0})
  assert d.n == 3 and d.mean == pytest.approx(4 / 3)
  sd = math.sqrt(((1 - 4 / 3) ** 2 + (2 - 4 / 3) ** 2 + (1 - 4 / 3) ** 2) / 2)
  assert d.half_width == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-6)
  one = paired.paired_difference({0: 1.0}, {0: 0.5})
  assert one.n == 1 and one.mean == 0.5 and math.isnan(one.half_width)


def test_unfinished_runs_are_listed_not_counted(cifar_sweep):
  fake_run(cifar_sweep, "prelu", 0, {"train_error": 0.0, "test_error": 0.0, "train_loss": 0.0,
                                     "test_loss": 0.0}, finished=False)
  markdown = tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep))
  assert "| PReLU |" not in markdown
  assert "prelu/seed0 (epoch 2 of 3; stopped, or still running)" in markdown
  assert "**Not counted: 1 stopped or still running**" in markdown


def test_failed_and_stopped_runs_are_told_apart(cifar_sweep):
  for seed in (0, 1):
    fake_run(cifar_sweep, "prelu", seed, {"train_error": 0.0, "test_error": 0.0,
                                          "train_loss": 0.0, "test_loss": 0.0}, finished=False)
  run_directory.record_failure(os.path.join(cifar_sweep, "prelu", "seed0"),
                               "FloatingPointError: Non-finite training loss at step 25")
  markdown = tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep))
  assert ("prelu/seed0 (**failed** at epoch 2 of 3: FloatingPointError: Non-finite training "
          "loss at step 25)") in markdown
  assert "prelu/seed1 (epoch 2 of 3; stopped, or still running)" in markdown
  assert "**Not counted: 1 failed, 1 stopped or still running**" in markdown


def test_a_long_failure_message_is_shown_whole_or_cut_between_sentences():
  # The NDSB study's diverged run: 387 characters, shown whole, its advice included.
  ndsb = ("FloatingPointError: Non-finite training loss at step 300 (epoch 1.54); stopped. The "
          "last good checkpoint is at step 195; rerunning this workdir resumes there and "
          "diverges again. To go on from it with a lower config.learning_rate (or more "
          "config.warmup_epochs), start a new run from it: the same command with "
          "--workdir=NEW_WORKDIR --config.init_from=../ndsb-runs/prelu/seed1:195 and the "
          "changed values (README, Training).")
  assert loading.error_summary(ndsb + "\nTraceback ...") == ndsb
  assert loading.error_summary("One. Two. " + "x" * 700) == "One. Two. [...]"
  assert loading.error_summary("y" * 700) == "y" * 600 + " [...]"
  assert loading.error_summary("") == ""


@pytest.mark.slow
def test_the_command_line_names_the_failed_and_stopped_runs_too(cifar_sweep):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.helpers import REPO  # pylint: disable=g-import-not-at-top
  test_failed_and_stopped_runs_are_told_apart(cifar_sweep)
  out = subprocess.run([sys.executable, "report.py", f"--workdir={cifar_sweep}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert ("Not counted (2):\n  prelu/seed0 (failed at epoch 2 of 3: FloatingPointError: "
          "Non-finite training loss at step 25)\n  prelu/seed1 (epoch 2 of 3; stopped, or "
          "still running)") in out.stdout


def shorter_prelu(workdir):
  """A finished PReLU run of 2 epochs beside the 3-epoch runs of `cifar_sweep`."""
  fake_run(workdir, "prelu", 0, {"train_error": 0.0, "test_error": 0.0, "train_loss": 0.0,
                                 "test_loss": 0.0}, num_epochs=2)


def test_finished_runs_of_different_lengths_are_refused_without_a_sweep_record(cifar_sweep):
  shorter_prelu(cifar_sweep)
  with pytest.raises(ValueError, match=r"ended at different epochs \(epoch 2: prelu/seed0; "
                                       r"epoch 3: relu/seed0, .*--config.num_epochs=3"):
    tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep))


def test_a_sweeps_runs_of_another_length_are_listed_not_counted(cifar_sweep):
  shorter_prelu(cifar_sweep)
  run_directory.write_json(os.path.join(cifar_sweep, run_directory.SWEEP),
                           {"config": {"num_epochs": 3}})
  paths = report.write_report(str(cifar_sweep))
  markdown = open(paths["results.md"]).read()
  assert "| PReLU |" not in markdown  # in no table, no difference column
  assert "prelu/seed0 (finished at epoch 2; the sweep's runs train 3 epochs" in markdown
  assert "**Not counted: 1 finished at another length than the sweep's 3 epochs**" in markdown


def test_a_refused_report_renames_the_earlier_one_stale(cifar_sweep):
  paths = report.write_report(str(cifar_sweep))
  shorter_prelu(cifar_sweep)
  with pytest.raises(report.ReportRefused, match="renamed results.md to stale-results.md, "
                                                 "curves.png to stale-curves.png"):
    report.write_report(str(cifar_sweep))
  assert not os.path.exists(paths["results.md"]) and not os.path.exists(paths["curves.png"])
  assert os.path.exists(os.path.join(cifar_sweep, "stale-results.md"))


def test_a_folder_without_runs_is_refused_and_nothing_is_renamed(cifar_sweep,
                                                                 tmp_path_factory):
  # The slip: the study's folder instead of its runs/ (results/cifar10-full, not .../runs).
  study = tmp_path_factory.mktemp("study")
  os.rename(cifar_sweep, study / "runs")
  report.write_report(str(study / "runs"), str(study))
  before = sorted(os.listdir(study))
  with pytest.raises(report.NoRuns, match=f"No runs in {study} .*did you mean {study}/runs"):
    report.write_report(str(study))
  assert sorted(os.listdir(study)) == before and "results.md" in before


@pytest.mark.parametrize("dataset,model,classes,title,dagger", [
    ("tfds:cifar100", "nin", 100, "Table 4: CIFAR-100", False),
    ("folder:/data/ndsb", "ndsb", 121, "Table 5: NDSB", False),
    ("folder:/data/cifar10-mini", "nin", 10, "Table 3: CIFAR-10", True),
])
def test_the_paper_table_follows_the_dataset(tmp_path, dataset, model, classes, title, dagger):
  for setting in ("relu", "leaky_relu_5.5"):
    for seed in (0, 1):
      fake_run(tmp_path, setting, seed, {"train_error": 0.1, "test_error": 0.2 + 0.01 * seed,
                                         "train_loss": 0.8, "test_loss": 0.7 + 0.01 * seed},
               dataset=dataset, model=model, num_classes=classes)
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert title in markdown
  assert ("†" in markdown) == dagger
  if model == "ndsb":  # log-losses, the paper's Table 5 beside them, the error after them.
    assert table_row(markdown, "Leaky ReLU, a=5.5") == [
        "Leaky ReLU, a=5.5", "0.8000 ± 0.0000", "0.7831", "0.7050 ± 0.0071", "0.7391",
        "20.50 ± 0.71", "2"]


def test_write_report_writes_the_three_artefacts(cifar_sweep, tmp_path_factory):
  out = tmp_path_factory.mktemp("out")
  paths = report.write_report(str(cifar_sweep), str(out))
  for name in ("results.md", "curves.png", "rectifiers.png"):
    assert os.path.getsize(paths[name]) > 0 and paths[name].startswith(str(out))


def test_no_finished_runs_is_a_clear_error(tmp_path):
  fake_run(tmp_path, "relu", 0, {"train_error": 0.1, "test_error": 0.2, "train_loss": 0.1,
                                 "test_loss": 0.2}, finished=False)
  with pytest.raises(ValueError, match="No finished runs"):
    tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))


def test_test_mode_training_error_the_gap_and_the_leaky_pairs_are_reported(tmp_path):
  # (train_eval_error, test_error) per seed: gaps RReLU 0.50, 0.52; a=5.5 0.55, 0.56.
  values = {"relu": [(0.00, 0.62), (0.01, 0.63)], "leaky_relu_5.5": [(0.00, 0.55), (0.00, 0.56)],
            "rrelu": [(0.02, 0.52), (0.03, 0.55)]}
  for setting, seeds in values.items():
    for seed, (train_eval, test) in enumerate(seeds):
      test_loss = 1.5 + 0.1 * seed * (setting == "rrelu")
      fake_run(tmp_path, setting, seed, {"train_error": 0.1, "test_error": test,
                                         "train_loss": 0.3, "test_loss": test_loss})
      path = os.path.join(tmp_path, setting, f"seed{seed}", "metrics.jsonl")
      rows = [json.loads(l) for l in open(path)]
      for r in rows:
        r.update(train_eval_error=train_eval, train_eval_loss=0.1, train_eval_examples=500)
      with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  cells = table_row(markdown, "RReLU (y = x / 5.5 at test)")
  assert cells[3] == "2.50 ± 0.71"   # train error, test mode
  assert cells[6] == "51.00 ± 1.41"  # gap: (0.50, 0.52)
  pair = table_row(markdown, "RReLU (y = x / 5.5 at test) − Leaky ReLU, a=5.5", section=2)
  # Test error: d = (-0.03, -0.01), mean -2.00 points, t(0.975, 1) * 1.414 / sqrt 2 = 12.71.
  assert pair[3].startswith("-2.00 [-14.71, +10.71]")
  # Gap: d = (0.50 - 0.55, 0.52 - 0.56) = (-0.05, -0.04): mean -4.50 points.
  assert pair[4].startswith("-4.50 [")
  # Test log-loss: d = (0.0, 0.1), mean 0.05, half-width 12.706 * 0.0707 / sqrt 2 = 0.6353.
  assert pair[5] == "+0.0500 [-0.5853, +0.6853]"


def test_the_first_line_names_each_settings_seeds_when_they_differ(tmp_path):
  for setting, seeds in (("relu", (0, 1, 2)), ("elu", (0, 1))):
    for seed in seeds:
      fake_run(tmp_path, setting, seed, {"train_error": 0.1, "test_error": 0.2,
                                         "train_loss": 0.3, "test_loss": 0.4})
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert "5 finished runs: 2 settings × seeds ReLU [0, 1, 2]; ELU [0, 1]; " in markdown


def test_an_ndsb_report_gives_the_log_loss_gap_the_error_and_the_gap_over_epochs(tmp_path):
  # (train_eval_loss, test_loss) per seed: log-loss gaps ReLU 0.30, 0.34; RReLU 0.10, 0.14.
  values = {"relu": [(0.50, 0.80), (0.52, 0.86)], "rrelu": [(0.62, 0.72), (0.60, 0.74)]}
  for setting, seeds in values.items():
    for seed, (train_eval_loss, test_loss) in enumerate(seeds):
      fake_run(tmp_path, setting, seed, {"train_error": 0.3, "test_error": 0.25,
                                         "train_loss": 0.9, "test_loss": test_loss},
               dataset="folder:../shared/data/ndsb", model="ndsb", num_classes=121)
      path = os.path.join(tmp_path, setting, f"seed{seed}", "metrics.jsonl")
      rows = [json.loads(l) for l in open(path)]
      for r in rows:
        r.update(train_eval_error=0.2, train_eval_loss=train_eval_loss, train_eval_examples=9)
      with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
  paths = report.write_report(str(tmp_path))
  markdown = open(paths["results.md"]).read()
  assert "Table 5: NDSB" in markdown
  relu = table_row(markdown, "ReLU")
  # train (training mode), paper, train (test mode), val, paper, gap, val error, seeds
  assert relu[6] == "0.3200 ± 0.0283" and relu[7] == "25.00 ± 0.00"
  diff = table_row(markdown, "RReLU (y = x / 5.5 at test)", section=1)
  # The gap's paired difference: (0.10 - 0.30, 0.14 - 0.34) = (-0.20, -0.20).
  assert diff[4] == "-0.2000 [-0.2000, -0.2000]"
  assert os.path.getsize(paths["gap.png"]) > 0


# --- Reports for any sweep: a baseline, every pair, few seeds, the paper's data only ------


def _sweep(root, settings_values, **kwargs):
  for setting, values in settings_values.items():
    for seed, (train_error, test_error) in enumerate(values):
      fake_run(root, setting, seed, {"train_error": train_error, "test_error": test_error,
                                     "train_loss": 0.5, "test_loss": 1.0 + test_error}, **kwargs)


def test_baseline_flag_makes_the_differences_relative_to_that_setting(cifar_sweep):
  markdown = tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep),
                                     baseline="rrelu")
  assert "## Difference to RReLU (y = x / 5.5 at test)" in markdown
  # ReLU minus RReLU: +2, +1, +3 pp, the negation of the ReLU-baseline differences.
  relu = table_row(markdown, "ReLU", section=1)
  assert relu[2] == "+2.00 [-0.48, +4.48]" and relu[3] == "+1.26"  # paper: 12.45 - 11.19


def test_a_baseline_the_runs_do_not_have_is_refused_naming_the_settings(cifar_sweep):
  with pytest.raises(ValueError, match=r"--baseline=prelu is not a setting.*relu, rrelu"):
    tables.results_markdown(loading.read_runs(str(cifar_sweep)), str(cifar_sweep),
                            baseline="prelu")


def test_without_relu_or_a_baseline_every_pair_is_compared(tmp_path):
  _sweep(tmp_path, {"elu": [(0.1, 0.30), (0.1, 0.31), (0.1, 0.32)],
                    "gelu": [(0.1, 0.29), (0.1, 0.29), (0.1, 0.30)],
                    "silu": [(0.1, 0.33), (0.1, 0.33), (0.1, 0.33)]})
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert "## Every pair of settings" in markdown and "Difference to" not in markdown
  # GELU minus ELU: -1, -2, -2 pp; mean -1.67.
  assert table_row(markdown, "GELU − ELU", section=1)[2].startswith("-1.67 [")
  for pair in ("SiLU − ELU", "SiLU − GELU"):
    table_row(markdown, pair, section=1)


@pytest.mark.parametrize("seeds,warned", [(2, True), (3, False)])
def test_fewer_than_three_seeds_are_said_to_resolve_nothing(tmp_path, seeds, warned):
  _sweep(tmp_path, {"relu": RELU[:seeds], "rrelu": RRELU[:seeds]})
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert ("cannot resolve anything" in markdown) == warned
  if warned:
    assert "With 2 seeds per setting" in markdown


def test_a_setting_short_of_three_seeds_is_named_alone_in_the_warning(tmp_path):
  # As in the NDSB study: one PReLU seed failed, every other setting has three.
  _sweep(tmp_path, {"relu": RELU, "prelu": RRELU[:2], "rrelu": RRELU})
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert ("**Fewer than 3 seeds for PReLU (2 finished seeds): the intervals that involve it "
          "cannot resolve anything**") in markdown
  assert "per setting the intervals below" not in markdown


def test_digits_get_no_paper_columns(tmp_path):
  _sweep(tmp_path, {"relu": RELU, "rrelu": RRELU}, dataset="digits", model="nin")
  markdown = tables.results_markdown(loading.read_runs(str(tmp_path)), str(tmp_path))
  assert "Table 3" not in markdown and "paper" not in table_row(markdown, "Activation")
  assert "did not use this data set" in markdown
  assert table_row(markdown, "ReLU") == ["ReLU", "7.00 ± 2.65", "32.00 ± 2.00", "3"]


@pytest.mark.slow
def test_the_baseline_flag_reaches_the_command_line(cifar_sweep, tmp_path):
  import subprocess, sys
  out = tmp_path / "out"
  proc = subprocess.run([sys.executable, "report.py", f"--workdir={cifar_sweep}",
                         f"--out={out}", "--baseline=rrelu"], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0, proc.stderr
  assert "## Difference to RReLU" in (out / "results.md").read_text()


def _with_activations(root, dead):
  """Adds a test-split activation record of two layers to every row of every run."""
  for metrics in root.glob("*/seed*/metrics.jsonl"):
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    for row in rows:
      row["activations"] = {"test": {
          layer: {"dead": dead, "negative": 0.4 + 0.01 * row["epoch"], "negative_output": 0.1}
          for layer in ("conv1", "conv2")}}
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("dead", [0.0, 0.25])
def test_activations_figure_says_no_dead_units_in_words_and_plots_what_varies(
    cifar_sweep, monkeypatch, tmp_path, dead):
  from reporting import plots
  from training import figures
  _with_activations(cifar_sweep, dead)
  drawn = []
  monkeypatch.setattr(figures, "save", lambda fig, path, **kw: drawn.append(fig))
  runs = [r for r in loading.read_runs(str(cifar_sweep)) if r.finished]
  assert plots.plot_activations(runs, str(tmp_path / "a.png"))
  titles = {ax.get_title() for ax in drawn[0].axes}
  assert ("No dead units" in drawn[0].get_suptitle()) == (dead == 0.0)
  assert ("dead units (%), final, per layer" in titles) == (dead > 0.0)
  # The negative-input panels (per layer at the end; over epochs) draw one line per setting.
  titles = {ax.get_title(): ax for ax in drawn[0].axes}
  per_layer = titles["negative inputs (%), final, per layer"]
  over_time = titles["negative inputs (%), mean over layers"]
  assert len(per_layer.lines) == len(over_time.lines) == 2
  # ReLU's final negative share is 0.43 (epoch 3) in both layers: 43 % on the plot.
  assert list(over_time.lines[0].get_ydata()) == pytest.approx([41.0, 42.0, 43.0])
