"""train.py end to end on CPU: real and mocked data, resumption, devices, processes, guards."""

import glob
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import ml_collections
import numpy as np
import pytest

import input_pipeline
import train
from configs import validation
from tests.helpers import REPO, file_digests, final_params, holding_env, tiny_config
from training import (builder, checkpoints, devices, evaluation, records, run_directory,
                      tensorboard)


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_run_writes_config_metrics_summary_curves_and_checkpoints(digits_run):
  workdir, summary = digits_run
  for name in ("config.json", "dataset.json", "metrics.jsonl", "summary.json", "curves.png"):
    assert (workdir / name).exists(), name
  rows = read_metrics(workdir)
  assert [r["epoch"] for r in rows] == [1, 2]
  assert [r["step"] for r in rows] == [3, 6]
  for key in ("train_error", "train_loss", "test_error", "test_loss", "learning_rate",
              "images_per_sec", "wall_time"):
    assert np.isfinite(rows[-1][key]), key
  assert rows[-1]["test_examples"] == 360  # every digits test image, exactly once
  # Deterministic-mode error on the training images: the 240 tiny_config asks for.
  assert rows[-1]["train_eval_examples"] == 240
  assert 0 <= rows[-1]["train_eval_error"] <= 1 and np.isfinite(rows[-1]["train_eval_loss"])
  assert summary["test_error"] == rows[-1]["test_error"]
  assert summary["train_eval_error"] == rows[-1]["train_eval_error"]
  record = json.loads((workdir / "dataset.json").read_text())
  assert record["class_names"] == [str(i) for i in range(10)]
  assert (record["train_examples"], record["full_train_examples"], record["subset_seed"],
          record["train_eval_examples"]) == (1437, 1437, None, 240)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "6"]
  # A step row every log_every_steps (2), and the same points in TensorBoard.
  step_rows = run_directory.read_steps(str(workdir))
  assert [r["step"] for r in step_rows] == [2, 4, 6]
  for r in step_rows:
    assert r["epoch"] == r["step"] / 3 and r["learning_rate"] == pytest.approx(0.02)
    assert np.isfinite(r["train_loss"]) and r["images_per_sec"] > 0
  # Each row's loss is the mean over its 2 steps (the one at step 4 spans the epochs), so
  # the rows' mean is the two epochs' mean.
  assert np.mean([r["train_loss"] for r in step_rows]) == pytest.approx(
      np.mean([r["train_loss"] for r in rows]), rel=1e-5)
  scalars = tensorboard.read_scalars(str(workdir))
  assert [s for s, _ in scalars["train_step/loss"]] == [2, 4, 6]


def _process_state() -> dict:
  """What a library call must leave as it found it (training/process.py's set-up)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  return {"environ": dict(os.environ), "backend": matplotlib.get_backend(),
          "pyplot": "matplotlib.pyplot" in sys.modules,
          "log_filters": list(logging.get_absl_handler().filters),
          "signals": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)],
          **{key: getattr(jax.config, key) for key in (
              "jax_num_cpu_devices", "jax_compilation_cache_dir",
              "jax_persistent_cache_min_compile_time_secs",
              "jax_persistent_cache_min_entry_size_bytes",
              "jax_cpu_collectives_implementation")}}


def test_training_in_process_changes_nothing_process_wide(tmp_path):
  # Libraries that training imports lazily and that set environment variables on import.
  import sklearn.datasets, tensorboardX  # noqa: F401,E401 pylint: disable=g-import-not-at-top
  # cpu_devices=2 is the command line's business: in process the run takes JAX's devices.
  before = _process_state()
  summary = train.train_and_evaluate(tiny_config(cpu_devices=2, num_epochs=1), str(tmp_path))
  assert _process_state() == before
  assert summary["devices"] == max(n for n in range(1, jax.device_count() + 1)
                                   if 8 % n == 0 and 120 % n == 0)
  assert (tmp_path / "curves.png").stat().st_size > 0


def test_rerunning_a_finished_run_resumes_and_does_nothing(digits_run, caplog):
  workdir, summary = digits_run
  with caplog.at_level(logging.INFO):
    again = train.train_and_evaluate(tiny_config(), str(workdir))
  assert again["test_loss"] == summary["test_loss"]
  assert len(read_metrics(workdir)) == 2
  assert (f"{workdir}: the run already finished at step 6 (epoch 2); nothing to train. "
          f"Summary: test error {summary['test_error']:.4f}") in caplog.text
  assert "Compiling" not in caplog.text


@pytest.mark.slow
def test_a_short_run_logs_its_compiles_follows_the_schedule_per_step_and_profiles(
    tmp_path, caplog):
  # 3 steps, all in the warm-up (lr = 0.02 x (step + 1) / 3 for the update at step), a step
  # row each, and a trace of step 2 (after the first logged interval, step 1).
  config = tiny_config(num_epochs=1, log_every_steps=1, warmup_epochs=1.0, profile_steps=1)
  evaluation.jitted_steps.cache_clear()  # another test's run may have compiled it already
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, str(tmp_path))
  step_rows = run_directory.read_steps(str(tmp_path))
  assert [r["step"] for r in step_rows] == [1, 2, 3]
  assert [r["learning_rate"] for r in step_rows] == pytest.approx([0.02 / 3, 0.04 / 3, 0.02])
  assert read_metrics(tmp_path)[-1]["learning_rate"] == pytest.approx(0.02)
  assert all(np.isfinite(r["train_loss"]) and r["images_per_sec"] > 0 for r in step_rows)
  for what in ("train step", "evaluation step"):
    compiling = caplog.text.index(f"Compiling the {what} ...")
    assert re.search(rf"Compiled the {what} in [0-9.]+ s\.", caplog.text[compiling:]), what
  assert "Profiling steps 2 to 2 into" in caplog.text
  assert glob.glob(str(tmp_path / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))


@pytest.mark.slow
def test_cifar10_mini_training_lowers_the_loss(cifar10_mini, tmp_path):
  config = tiny_config(dataset=f"folder:{cifar10_mini}", steps_per_epoch=20, num_epochs=3,
                       batch_size=32, learning_rate=0.05, rectifier="relu",
                       cache_dir=str(tmp_path / "cache"), eval_batch_size=500,
                       train_eval_examples=500)
  config.model_options.width = 0.125
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  rows = read_metrics(tmp_path / "run")
  assert rows[-1]["test_examples"] == 1000
  # NIN starts on a plateau at ln(10); 60 steps move it measurably (2.31 -> 2.25 here).
  assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.02
  assert summary["test_loss"] < np.log(10)  # better than uniform guessing on 10 classes


def test_train_examples_and_train_eval_examples_subset_the_training_split(tmp_path):
  config = tiny_config(num_epochs=1, train_examples=300, subset_seed=2,
                       train_eval_examples=100)
  summary = train.train_and_evaluate(config, str(tmp_path))
  record = json.loads((tmp_path / "dataset.json").read_text())
  assert (record["train_examples"], record["full_train_examples"], record["subset_seed"],
          record["train_eval_examples"]) == (300, 1437, 2, 100)
  assert summary["train_eval_examples"] == 100 and summary["test_examples"] == 360
  subset = builder.train_eval_subset(input_pipeline.load("digits").train, 100)
  assert len(subset) == 100
  assert len(builder.train_eval_subset(input_pipeline.load("digits").train, 0)) == 0
  # More than the split holds (the default 2,000 on digits): all of it.
  assert len(builder.train_eval_subset(input_pipeline.load("digits").train, 2000)) == 1437


@pytest.mark.slow
def test_mocked_tfds_cifar10_trains(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = tiny_config(dataset="tfds:cifar10", num_epochs=1, eval_batch_size=16)
  with tfds.testing.mock_data(num_examples=40):
    summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_examples"] == 40
  assert np.isfinite(summary["test_loss"])


def test_resume_after_interruption_is_bit_identical(digits_run, tmp_path, monkeypatch):
  config, uninterrupted = tiny_config(), digits_run[0]

  # Deliver SIGINT in the middle of epoch 2, the last (after 5 batches), through the real
  # handler: the resumed run finishes that epoch from the checkpoint taken at the stop.
  real_iterator = input_pipeline.train_iterator

  def interrupting_iterator(*args, **kwargs):
    it = real_iterator(*args, **kwargs)
    inner_next = it.__next__

    class Wrapped:
      count = 0

      def __next__(self):
        Wrapped.count += 1
        if Wrapped.count == 5:
          os.kill(os.getpid(), signal.SIGINT)
        return inner_next()

      get_state, set_state = it.get_state, it.set_state

    return Wrapped()

  interrupted = tmp_path / "interrupted"
  monkeypatch.setattr(input_pipeline, "train_iterator", interrupting_iterator)
  with pytest.raises(KeyboardInterrupt, match="at step 5"):
    train.train_and_evaluate(config, str(interrupted))
  assert sorted(os.listdir(interrupted / "checkpoints")) == ["3", "5"]
  monkeypatch.setattr(input_pipeline, "train_iterator", real_iterator)
  train.train_and_evaluate(config, str(interrupted))

  for a, b in zip(final_params(uninterrupted), final_params(interrupted), strict=True):
    np.testing.assert_array_equal(a, b)
  assert read_metrics(uninterrupted)[-1]["test_loss"] == read_metrics(interrupted)[-1]["test_loss"]
  assert [r["step"] for r in read_metrics(interrupted)] == [3, 6]
  assert ((uninterrupted / run_directory.TRAIN_FINGERPRINTS).read_bytes()
          == (interrupted / run_directory.TRAIN_FINGERPRINTS).read_bytes())


# A sane first epoch, checkpointed at step 3, then a learning rate x1e6 that diverges.
DIVERGING = dict(num_epochs=4, rectifier="relu", log_every_steps=1, lr_decay_epochs=(1,),
                 lr_decay_factor=1e6)


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
  """(workdir, the error's message) of a run of DIVERGING."""
  workdir = tmp_path_factory.mktemp("diverged")
  with pytest.raises(FloatingPointError) as e:
    train.train_and_evaluate(tiny_config(**DIVERGING), str(workdir))
  return workdir, str(e.value)


def strict_json(text):
  """json.loads that refuses Python's bare NaN and Infinity, which are not JSON."""
  return json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(diverged_run):
  workdir, message = diverged_run
  bad_step = int(re.search(r"Non-finite (?:training loss|evaluation.*|parameters.*) at "
                           r"(?:epoch \d+ \()?step (\d+)", message).group(1))
  saved = sorted(int(s) for s in os.listdir(workdir / "checkpoints"))
  assert saved and saved[0] == 3 and all(s <= bad_step for s in saved), (saved, bad_step)
  assert f"The last good checkpoint is at step {saved[-1]}; " in message
  for leaf in jax.tree.leaves(checkpoints.load_checkpoint(str(workdir))["state"]):
    assert np.all(np.isfinite(leaf))
  # Every number the run recorded is finite: no bare NaN in any JSON file.
  for path in [*workdir.glob("*.json"), *workdir.glob("checkpoints/*/*.json")]:
    strict_json(path.read_text())
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    strict_json(line)


@pytest.mark.slow
def test_a_diverged_run_goes_on_from_its_last_good_checkpoint_in_a_new_workdir(
    diverged_run, tmp_path):
  parent, message = diverged_run
  before = file_digests(parent)
  init_from = re.search(r"--config.init_from=(\S+:\d+) ", message).group(1)
  step = int(init_from.rsplit(":", 1)[1])
  child = tmp_path / "child"
  summary = train.train_and_evaluate(
      tiny_config(**{**DIVERGING, "lr_decay_factor": 0.1, "init_from": init_from}), str(child))
  assert json.loads((child / "parent.json").read_text()) == {
      "workdir": os.path.relpath(parent, child), "step": step, "epoch": step / 3,
      "changed": {"lr_decay_factor": [1e6, 0.1]}}  # relative: a study moved whole keeps it
  assert run_directory.read_parent(str(child))["workdir"] == str(parent)
  assert [r["step"] for r in read_metrics(child)] == [s for s in (3, 6, 9, 12) if s > step]
  assert np.isfinite(summary["test_loss"])
  assert file_digests(parent) == before  # the parent is only read: its config rule holds
  # The config rule of the new run holds as well: its rerun is a finished run.
  again = train.train_and_evaluate(
      tiny_config(**{**DIVERGING, "lr_decay_factor": 0.1, "init_from": init_from}), str(child))
  assert again == summary


def test_an_evaluation_that_is_not_finite_is_neither_recorded_nor_checkpointed(tmp_path,
                                                                               monkeypatch):
  evaluate = builder.Setup.evaluate

  def nan_at_epoch_2(self, state, histograms=False):
    row = evaluate(self, state, histograms)
    return {**row, "test_loss": float("nan")} if int(state.step) == 6 else row

  monkeypatch.setattr(builder.Setup, "evaluate", nan_at_epoch_2)
  with pytest.raises(FloatingPointError, match=r"Non-finite evaluation at epoch 2 \(step 6\): "
                                               r"test_loss; stopped. The last good checkpoint is "
                                               r"at step 3; .*--config.init_from="):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert [r["step"] for r in read_metrics(tmp_path)] == [3]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]


@pytest.mark.parametrize("key,value,match", [
    ("learning_rat", 0.1, r"Unknown config key 'learning_rat'"),
    ("batch_size", "big", r"config.batch_size must be an int"),
    ("model", "resnet", r"config.model.*Unknown model 'resnet'"),
    ("rectifier", "swish", r"config.rectifier: Unknown rectifier 'swish'"),
    ("dataset", "mnist", r"config.dataset: .*mnist"),
    ("augment.crop", "sideways", r"config.augment: .*crop"),
    ("model_options.depth", 3, r"config.model / config.model_options: .*depth"),
    ("learning_rate", float("nan"), r"config.learning_rate must be a finite number > 0, got nan"),
    ("learning_rate", float("inf"), r"config.learning_rate must be a finite number > 0, got inf"),
    ("weight_decay", float("nan"), r"config.weight_decay must be a finite number >= 0"),
    ("input_scale", float("inf"), r"config.input_scale must be a finite number > 0"),
    ("momentum", float("nan"), r"config.momentum must be a finite number in \[0, 1\)"),
    ("lr_decay_epochs", ("abc",), r"config.lr_decay_epochs must be a list of epochs"),
    ("batch_size", 2000, r"config.batch_size=2000 is larger than the training split"),
    ("model", "ndsb", r"ndsb on the images .* at least 28x28 pixels"),
    ("cpu_devices", -1, r"config.cpu_devices must be an int >= 0"),
    ("init_from", ":3", r"config.init_from must be WORKDIR or WORKDIR:STEP .* got ':3'"),
])
def test_config_errors_name_the_key_before_anything_compiles(key, value, match, tmp_path):
  config = tiny_config().to_dict()
  node = config
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  if (key, value) == ("model", "ndsb"):
    node["model_options"] = {}
  if key == "batch_size":  # with steps_per_epoch set, the split's size was never checked
    node["steps_per_epoch"] = 3
  config = ml_collections.ConfigDict(config)
  with pytest.raises(validation.ConfigError, match=match):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


# --- Several devices and processes (subprocesses with fake CPU devices) ------------------------

WORKER = textwrap.dedent("""
    import json, os, sys
    import jax
    import ml_collections
    from training import process
    config = ml_collections.ConfigDict(json.loads(os.environ["CONFIG"]))
    process.configure(config.cpu_devices)  # as train.py's command line does
    import train
    summary = train.train_and_evaluate(config, os.environ["WORKDIR"])
    print("DEVICES", jax.device_count(), "PROCESSES", jax.process_count())
""")


def run_worker(config, workdir, devices=None) -> str:
  """Trains `config` in a fresh process and returns its output; `devices` forces XLA's CPU
  device count (None: the config's cpu_devices decides)."""
  forced = f" --xla_force_host_platform_device_count={devices}" if devices else ""
  env = {**os.environ, "CONFIG": config.to_json(), "WORKDIR": str(workdir),
         "PYTHONPATH": str(REPO), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + forced}
  done = subprocess.run([sys.executable, "-c", WORKER], cwd=REPO, text=True, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
  assert done.returncode == 0, done.stdout[-4000:]
  if devices:
    assert f"DEVICES {devices} PROCESSES 1" in done.stdout, done.stdout[-2000:]
  return done.stdout


def assert_same_run(a, b):
  ra, rb = read_metrics(a), read_metrics(b)
  for key in ("train_loss", "test_loss", "test_error", "train_error"):
    np.testing.assert_allclose([r[key] for r in ra], [r[key] for r in rb], rtol=1e-5, atol=1e-6)
  for x, y in zip(final_params(a), final_params(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_four_devices_match_one_device(digits_run, tmp_path):
  run_worker(tiny_config(), tmp_path, devices=4)
  assert_same_run(digits_run[0], tmp_path)


@pytest.mark.slow
def test_by_default_training_uses_one_single_threaded_device_per_core(digits_run, tmp_path):
  cores = devices.usable_cores()
  run_worker(tiny_config(cpu_devices=0), tmp_path)
  expected = max(n for n in range(1, cores + 1) if 8 % n == 0 and 120 % n == 0)
  assert run_directory.read_run(str(tmp_path)).summary["devices"] == expected
  assert_same_run(digits_run[0], tmp_path)


@pytest.mark.slow
def test_a_batch_that_does_not_divide_uses_fewer_devices(tmp_path):
  output = run_worker(tiny_config(cpu_devices=4, batch_size=6, eval_batch_size=6,
                                  num_epochs=1), tmp_path)
  assert run_directory.read_run(str(tmp_path)).summary["devices"] == 3
  assert "do not divide over 4 devices: using 3 of them" in output


def test_an_existing_backend_is_kept_and_said_once():
  script = textwrap.dedent("""
      import jax
      from training import process
      have = len(jax.devices())  # a notebook that touched JAX first
      for _ in range(2):
        process.configure(cpu_devices=have + 2)
      print("DEVICES", len(jax.devices()), have)
  """)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
  assert out.returncode == 0, out.stderr[-2000:]
  devices_now, had = out.stdout.split()[1:3]
  assert devices_now == had
  assert out.stderr.count("training uses its") == 1
  with pytest.raises(validation.ConfigError, match="cpu_devices must be an int >= 0"):
    validation.validate_config(tiny_config(cpu_devices=-1))


# --- Preemption and lost processes with several processes ------------------------------------

PREEMPT_OVERRIDES = dict(steps_per_epoch=10, num_epochs=2, log_every_steps=5,
                         checkpoint_every_epochs=2)


def start_processes(workdir, config, heartbeat_timeout_s=100, held=None):
  """train.py's command line as 2 jax.distributed processes on localhost; process `held`
  holds after its first epoch's row until a stop signal reaches it (helpers.holding_env)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  overrides = [f"--config.{k}={v}" for k, v in run_directory.flatten(
      records.config_record(config)).items()
               if k.split(".")[0] in ("model_options", "batch_size", "eval_batch_size",
                                      "steps_per_epoch", "num_epochs", "log_every_steps",
                                      "checkpoint_every_epochs", "eval_every_epochs",
                                      "warmup_epochs", "learning_rate", "cpu_devices",
                                      "train_eval_examples")
               and k != "model_options.spp_levels"]
  return [subprocess.Popen(
      [sys.executable, "train.py", "--config=configs/quickstart.py", f"--workdir={workdir}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
       f"--heartbeat_timeout_s={heartbeat_timeout_s}", "--config.lr_decay_epochs=()",
       *overrides], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env=holding_env(workdir.parent, config.steps_per_epoch) if i == held else None)
      for i in range(2)]


def wait_for_first_row(workdir, procs):
  deadline = time.time() + 300
  while not run_directory.read_run(str(workdir)).rows:
    assert time.time() < deadline and all(p.poll() is None for p in procs), \
        [p.communicate()[0][-2000:] for p in procs]
    time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_resumes_as_one_process(
    tmp_path):
  # Two devices a process: the resumed run also checks that 2 processes x 2 devices train
  # what one device does.
  config = tiny_config(**PREEMPT_OVERRIDES, cpu_devices=2)
  reference = tmp_path / "reference"
  train.train_and_evaluate(config, str(reference))
  run = tmp_path / "run"
  procs = start_processes(run, config, held=1)
  wait_for_first_row(run, procs)
  procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host only
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [130, 130], [o[-2000:] for o in outputs]
  steps = {int(o.split("(received by process [1]) at step ")[1].split(";")[0]) for o in outputs}
  assert len(steps) == 1  # both saved the same step
  assert checkpoints.Checkpoints(str(run), keep=2).latest_step() == steps.pop()
  procs = start_processes(run, config)
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outputs]
  record = run_directory.read_run(str(run))
  assert [r["step"] for r in record.rows] == [10, 20]
  assert (record.summary["devices"], record.summary["processes"]) == (4, 2)
  assert_same_run(reference, run)


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_process_ends_the_survivor_with_one_line_naming_it(tmp_path, killed):
  # Process 0 hosts JAX's coordination service: losing it ends process 1 from JAX's side
  # (training/supervisor.py); losing process 1 fails process 0's next collective.
  procs = start_processes(tmp_path, tiny_config(**{**PREEMPT_OVERRIDES, "num_epochs": 20}),
                          heartbeat_timeout_s=10)
  wait_for_first_row(tmp_path, procs)
  procs[killed].kill()
  start = time.time()
  survivor = procs[1 - killed]
  out = survivor.communicate(timeout=120)[0]
  assert survivor.returncode == 1, out[-3000:]
  # The heartbeat timeout (10 s), and a margin for a loaded machine (11.3 s seen on one).
  assert time.time() - start < 10 + 20
  assert f"process(es) [{killed}] of 2 stopped answering" in out, out[-3000:]
  assert "Rerun every process to resume from the last checkpoint" in out.replace(
      "rerun every", "Rerun every")
  # One line of the project's, not JAX's abort and a dump of every thread.
  assert "Fatal Python error" not in out and "Thread 0x" not in out, out[-3000:]
  assert out.count("stopped answering") == 1, out[-3000:]


def test_a_one_class_dataset_is_refused(tmp_path):
  from PIL import Image
  for split in ("train", "test"):
    (tmp_path / "data" / split / "only").mkdir(parents=True)
    for i in range(4):
      Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "data" / split / "only" / f"{i}.png")
  config = tiny_config(dataset=f"folder:{tmp_path / 'data'}", batch_size=2, eval_batch_size=2,
                       cache_dir=str(tmp_path / "cache"))
  with pytest.raises(validation.ConfigError, match=r"has 1 class \(only\); a classifier needs "
                                              r"at least 2"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


CLI_ERRORS = [
    (["--config=configs/quickstart.py", "--config.learning_rat=0.1"],
     r"Unknown config key 'learning_rat' in --config.learning_rat=0.1. Did you mean "
     r"'learning_rate'\?"),
    (["--config=configs/quickstart.py", "--config.model_options.widht=0.5"],
     r"Unknown config key 'model_options.widht' .* Did you mean 'model_options.width'\? "
     r"The options of the model: conv_grad, dropout_rate, kernel_init, rectify_last, "
     r"second_pool, width"),
]


@pytest.mark.parametrize("args,match", CLI_ERRORS)
def test_a_bad_config_flag_is_one_line_with_the_valid_names(args, match, tmp_path):
  out = subprocess.run([sys.executable, "train.py", f"--workdir={tmp_path}", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  assert re.search(match, out.stderr), out.stderr[-2000:]
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 2


def test_any_model_option_can_be_overridden_on_the_command_line(tmp_path):
  """configs/nin_cifar10.py sets kernel_init and conv_grad only; width is still an option."""
  out = subprocess.run([sys.executable, "train.py", "--config=configs/nin_cifar10.py",
                        f"--workdir={tmp_path}", "--config.model_options.width=0.125",
                        "--config.data_dir=" + str(tmp_path / "no-tfds")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  # It gets as far as looking for the data (not prepared here), past flag parsing.
  assert "is not prepared as ArrayRecord" in out.stderr, out.stderr[-2000:]
  assert "AttributeError" not in out.stderr


# train.py's command line with Ctrl-C (SIGINT to itself) while the data loads.
SIGINT_WHILE_LOADING = textwrap.dedent("""
    import os, signal
    from absl import app
    import train
    from training import builder, command_line
    load = builder.load_data
    def load_and_interrupt(config):
      os.kill(os.getpid(), signal.SIGINT)
      return load(config)
    builder.load_data = load_and_interrupt
    train._define_flags()
    app.run(train.main, flags_parser=command_line.parse_flags)
""")


def test_ctrl_c_while_the_data_loads_exits_130_before_the_first_step_without_a_checkpoint(
    tmp_path):
  config_file = tmp_path / "config.py"  # train.py's --config: a file
  config_file.write_text("import json, os, ml_collections\n"
                         "def get_config():\n"
                         "  return ml_collections.ConfigDict(json.loads(os.environ['CONFIG']))\n")
  out = subprocess.run(
      [sys.executable, "-c", SIGINT_WHILE_LOADING, f"--config={config_file}",
       f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True,
      timeout=300, env={**os.environ, "PYTHONPATH": str(REPO),
                        "CONFIG": tiny_config().to_json()})
  assert out.returncode == 130, out.stderr[-3000:]
  assert ("Stopped by SIGINT before training began: nothing was trained and no checkpoint "
          "was written") in out.stderr
  assert "Traceback" not in out.stderr
  assert checkpoints.steps_on_disk(str(tmp_path / "run")) == []
