"""sweep.py end to end on a tiny config: every artefact, skipping, resuming, config guards."""

import errno
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap

import ml_collections
import pytest

import sweep
import train
from training import devices, run_directory
from tests.helpers import REPO, tiny_config

SETTINGS = ("relu", "rrelu")
SEEDS = (0, 1)


def tiny_sweep_config() -> ml_collections.ConfigDict:
  """tests/helpers.py's tiny NIN on digits, 2 steps an epoch: seconds per run."""
  return tiny_config("relu", steps_per_epoch=2)


class _Lines(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sweep"))
  log, absl_logger = _Lines(), logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.addHandler(log)
  absl_logger.setLevel(logging.INFO)
  try:
    summaries = sweep.run_sweep(tiny_sweep_config(), workdir, SETTINGS, SEEDS)
  finally:
    absl_logger.removeHandler(log)
    absl_logger.setLevel(level)
  return workdir, summaries, log.lines


def test_sweep_writes_every_run_and_the_report(swept):
  workdir, summaries, lines = swept
  # Each run says where the sweep stands; after each but the last, the ETA of the rest.
  assert [m.group(1) for m in map(re.compile(r"^Sweep (run \d of 4): training ").match, lines)
          if m] == [f"run {k} of 4" for k in (1, 2, 3, 4)]
  assert [m.group(1) for m in map(
      re.compile(r"^Sweep: (\d of 4) runs done; ETA \d+:\d\d:\d\d for the other \d "
                 r"\(\d+:\d\d:\d\d per run, 1 at a time\)\.$").match, lines)
          if m] == ["1 of 4", "2 of 4", "3 of 4"]
  assert sorted(summaries) == [(s, k) for s in SETTINGS for k in SEEDS]
  for (setting, seed), summary in summaries.items():
    assert summary["rectifier"] == setting and summary["seed"] == seed
    assert summary["epoch"] == 2
    run = sweep.run_dir(workdir, setting, seed)
    for name in ("config.json", "dataset.json", "metrics.jsonl", "summary.json"):
      assert os.path.exists(os.path.join(run, name)), (run, name)
  for name in ("results.md", "curves.png", "rectifiers.png", "sweep.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  markdown = open(os.path.join(workdir, "results.md")).read()
  assert "| ReLU |" in markdown and "| RReLU (y = x / 5.5 at test) |" in markdown
  assert "Difference to ReLU" in markdown


def test_seeds_differ_and_settings_share_a_seed_stream(swept):
  workdir, summaries, _ = swept
  # Different seeds give different runs; the sweep did not reuse one run for both.
  assert summaries[("relu", 0)]["train_loss"] != summaries[("relu", 1)]["train_loss"]


def test_rerun_skips_finished_runs(swept, monkeypatch):
  workdir, summaries, _ = swept
  def fail(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(train, "train_and_evaluate", fail)
  again = sweep.run_sweep(tiny_sweep_config(), workdir, SETTINGS, SEEDS, report=False)
  assert again == summaries


def test_unfinished_run_is_resumed_alone(swept, tmp_path, monkeypatch):
  workdir = str(tmp_path / "sweep")
  shutil.copytree(swept[0], workdir)  # the finished sweep's runs, shared rather than retrained
  config = tiny_sweep_config()
  # An interrupted run: killed during epoch 2, so no summary, no epoch-2 checkpoint (step 4)
  # and metrics up to epoch 1.
  run = sweep.run_dir(workdir, "relu", 1)
  os.remove(os.path.join(run, "summary.json"))
  shutil.rmtree(os.path.join(run, "checkpoints", "4"))
  with open(os.path.join(run, "metrics.jsonl")) as f:
    first_row = f.readline()
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    f.write(first_row)
  trained = []
  real = train.train_and_evaluate
  monkeypatch.setattr(train, "train_and_evaluate",
                      lambda c, w: trained.append((c.rectifier, c.seed)) or real(c, w))
  summaries = sweep.run_sweep(config, workdir, SETTINGS, SEEDS, report=False)
  assert trained == [("relu", 1)]
  assert summaries[("relu", 1)]["epoch"] == 2


def test_a_different_recipe_in_the_same_workdir_is_refused(swept):
  workdir, _, _ = swept
  config = tiny_sweep_config()
  config.learning_rate = 0.5
  before = {p: os.path.getmtime(p) for p in glob.glob(f"{workdir}/**/*.json*", recursive=True)}
  with pytest.raises(run_directory.ConfigMismatchError,
                     match=r"learning_rate: 0.02 \(recorded\) -> 0.5 \(now\)"):
    sweep.run_sweep(config, workdir, SETTINGS, SEEDS)
  assert {p: os.path.getmtime(p) for p in before} == before  # nothing was written


def test_unknown_setting_fails_before_any_run(tmp_path):
  with pytest.raises(ValueError):
    sweep.run_sweep(tiny_sweep_config(), str(tmp_path), ("relu", "relux"), (0,))
  assert not os.path.exists(os.path.join(tmp_path, "relu"))


@pytest.mark.parametrize("text,seeds", [("3", [0, 1, 2]), ("0,4,7", [0, 4, 7]), ("5,", [5])])
def test_parse_seeds(text, seeds):
  assert sweep.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "x", "1,1", "-1,2"])
def test_parse_seeds_rejects(text):
  with pytest.raises(ValueError):
    sweep.parse_seeds(text)


@pytest.mark.slow
def test_command_line_parallel_subprocesses_and_overrides(tmp_path):
  """The CLI with --parallel=2: config overrides reach every run (through the written run
  config), runs go to subprocesses, and the report is written."""
  workdir = str(tmp_path / "cli")
  cmd = [sys.executable, "sweep.py", "--config=configs/quickstart.py", f"--workdir={workdir}",
         "--seeds=1", "--settings=relu,leaky_relu_5.5", "--parallel=2",
         "--config.model_options.width=0.0625", "--config.batch_size=8",
         "--config.steps_per_epoch=2", "--config.num_epochs=1", "--config.eval_batch_size=120",
         "--config.warmup_epochs=0", "--config.lr_decay_epochs=()"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  for setting in ("relu", "leaky_relu_5.5"):
    run = sweep.run_dir(workdir, setting, 0)
    with open(os.path.join(run, "config.json")) as f:
      config = json.load(f)
    assert config["model_options"]["width"] == 0.0625 and config["num_epochs"] == 1
    assert config["rectifier"] == setting
    assert os.path.exists(os.path.join(run, "train.log"))
  assert os.path.exists(os.path.join(workdir, "results.md"))
  for k in (1, 2):
    assert f"Sweep run {k} of 2: starting " in out.stderr, out.stderr[-3000:]
  assert re.search(r"Sweep: 1 of 2 runs done; ETA \d+:\d\d:\d\d for the other 1 \(.* 2 at "
                   r"a time\)\.", out.stderr), out.stderr[-3000:]


@pytest.mark.parametrize("text,settings", [
    ("relu,rrelu", ["relu", "rrelu"]),
    ("relu, rrelu(lower=5, upper=10),leaky_relu_5.5",
     ["relu", "rrelu(lower=5, upper=10)", "leaky_relu_5.5"]),
    ("rrelu(lower=5, upper=10, sample=slope)", ["rrelu(lower=5, upper=10, sample=slope)"]),
])
def test_parse_settings_splits_only_at_top_level_commas(text, settings):
  assert sweep.parse_settings(text) == settings


@pytest.mark.parametrize("text", ["rrelu(lower=5", "relu)", "relu,relu", ""])
def test_parse_settings_rejects(text):
  with pytest.raises(ValueError, match="--settings"):
    sweep.parse_settings(text)


def test_each_parallel_slot_gets_its_own_gpus():
  gpus = ["0", "1", "2", "3", "4", "5", "6", "7"]
  envs = [sweep.slot_environment(slot, 4, 2, gpus, [0, 1], {"A": "1"}, taskset=True)
          for slot in range(4)]
  assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in envs] == ["0,1", "2,3", "4,5", "6,7"]
  assert all(prefix == [] and env["A"] == "1" for env, prefix in envs)
  assert all("XLA_FLAGS" not in env for env, _ in envs)
  with pytest.raises(ValueError, match="needs 10 GPUs; 8 are visible"):
    sweep.slot_environment(0, 5, 2, gpus, [], {}, taskset=True)


def test_on_cpu_each_slot_is_pinned_to_its_own_cores_with_single_threaded_xla():
  env, prefix = sweep.slot_environment(1, 2, 2, [], [0, 1, 2, 3], {}, taskset=True)
  assert prefix == ["taskset", "-c", "2,3"]
  assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
  # Two devices in one process: the runtime's pool keeps its threads (a collective needs
  # both devices' computations in flight); one device gets one thread.
  assert "intra_op_parallelism_threads" not in env["XLA_FLAGS"]
  env, _ = sweep.slot_environment(1, 2, 1, [], [0, 1], {}, taskset=True)
  assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
  assert "CUDA_VISIBLE_DEVICES" not in env
  # Too few cores (or no taskset): not pinned, still single-threaded.
  env, prefix = sweep.slot_environment(1, 2, 2, [], [0, 1], {}, taskset=True)
  assert prefix == [] and "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]


def test_every_cpu_slot_gets_exactly_its_devices_even_when_the_runs_share_cores():
  # Unpinned, a run would see every core and make a device per core; 3 runs of 1 device
  # on 2 cores made 2 devices each under one-thread flags before the count was forced.
  for cores, taskset in (([0, 1], True), ([0, 1, 2], True), ([0, 1, 2], False)):
    for devices_per_run in (1, 2):
      env, _ = sweep.slot_environment(0, 3, devices_per_run, [], cores, {"XLA_FLAGS": "--a"},
                                      taskset=taskset)
      assert devices.forced_device_count(env["XLA_FLAGS"]) == devices_per_run
      assert env["XLA_FLAGS"].startswith("--a ")
  # A count the caller forced is kept when it agrees, and refused when it does not.
  env, _ = sweep.slot_environment(
      0, 3, 1, [], [0, 1], {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, True)
  assert env["XLA_FLAGS"].count("xla_force_host_platform_device_count") == 1
  with pytest.raises(ValueError, match="forces 4 CPU devices per process, but "
                                       "--devices_per_run=1"):
    sweep.slot_environment(0, 3, 1, [], [0, 1],
                           {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, True)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
  assert sweep.visible_gpus() == ["2", "5"]
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
  assert sweep.visible_gpus() == []


def test_a_training_that_died_without_a_record_is_recorded_as_failed(tmp_path):
  sweep._record_crash(str(tmp_path), 1)  # exit 1: the training recorded its own failure.
  assert run_directory.read_run(str(tmp_path)).failure is None
  sweep._record_crash(str(tmp_path), -9)
  assert run_directory.read_run(str(tmp_path)).failure["error"].startswith("exit status -9")


def test_a_full_disk_stops_an_in_process_sweep_instead_of_failing_every_run(tmp_path,
                                                                            monkeypatch):
  calls = []

  def full(config, workdir):
    calls.append(workdir)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), workdir)

  monkeypatch.setattr(train, "train_and_evaluate", full)
  runs = [sweep.Run(s, 0, str(tmp_path / s)) for s in SETTINGS]
  with pytest.raises(OSError, match="No space left on device"):
    sweep._run_in_process(tiny_sweep_config(), runs)  # pylint: disable=protected-access
  assert calls == [runs[0].workdir]


# sweep.py's command line with Ctrl-C (SIGINT to itself) while it plans its runs, or while
# its first (in-process) training loads the data.
SIGINT_WHILE_STARTING = textwrap.dedent("""
    import os, signal
    from absl import app
    import sweep
    from training import builder, command_line
    def interrupting(f):
      def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return f(*args, **kwargs)
      return interrupted
    if os.environ["WHILE"] == "planning":
      sweep.plan = interrupting(sweep.plan)
    else:
      builder.load_data = interrupting(builder.load_data)
    sweep._define_flags()
    app.run(sweep.main, flags_parser=command_line.parse_flags)
""")


@pytest.mark.parametrize("moment,says", [
    ("planning", "Sweep stopped by SIGINT outside its trainings (while it prepared or "
                 "reported): no training was interrupted"),
    ("loading", "Sweep stopped by SIGINT: 1 training(s) stopped before their first step "
                "(nothing trained, no checkpoint written), 1 not started.")])
def test_ctrl_c_while_a_sweep_starts_exits_130_in_one_line_writing_nothing(tmp_path, moment,
                                                                           says):
  workdir = tmp_path / "sweep"
  out = subprocess.run(
      [sys.executable, "-c", SIGINT_WHILE_STARTING, "--config=configs/quickstart.py",
       f"--workdir={workdir}", "--seeds=1", "--settings=relu,rrelu",
       "--config.model_options.width=0.0625", "--config.batch_size=8",
       "--config.steps_per_epoch=2", "--config.num_epochs=1", "--config.eval_batch_size=120"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, "PYTHONPATH": str(REPO), "WHILE": moment})
  assert out.returncode == 130, out.stderr[-3000:]
  assert says in out.stderr.strip().splitlines()[-1], out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  assert glob.glob(f"{workdir}/**/checkpoints/*", recursive=True) == []
  assert glob.glob(f"{workdir}/**/*.tmp*", recursive=True) == []
  assert not (workdir / "results.md").exists()
