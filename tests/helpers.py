"""What several test files share that is not a fixture: paths, the tiny config, run copies.

Fixtures live in conftest.py; this is a plain module (`from tests.helpers import ...`).
"""

import glob
import hashlib
import os
import shutil
import textwrap
from pathlib import Path

import jax
import ml_collections
import numpy as np

from configs import quickstart
from training import checkpoints, run_directory

REPO = Path(__file__).resolve().parents[1]
CIFAR10_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"


def tiny_config(rectifier: str = "rrelu", **overrides) -> ml_collections.ConfigDict:
  """A NIN at 1/16 width on digits, 3 steps an epoch, 2 epochs: seconds per run."""
  config = quickstart.get_config(rectifier)
  config.model_options = ml_collections.ConfigDict({"width": 0.0625, "kernel_init": "he"})
  config.batch_size = 8
  config.eval_batch_size = 120
  # Two evaluation batches of training images, not all 1,437: evaluations are most of a
  # tiny run's time with XLA's optimisations off (tests/conftest.py).
  config.train_eval_examples = 240
  # The per-layer statistics are a second evaluation program to compile: off here, on in
  # the tests about them (tests/test_activation_statistics.py and the runs reports read).
  config.activation_statistics = False
  config.steps_per_epoch = 3
  config.num_epochs = 2
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 2
  config.warmup_epochs = 0.0
  config.lr_decay_epochs = ()
  config.learning_rate = 0.02
  # One device whatever the machine: subprocesses that set up their devices as train.py
  # does (training/process.py) get JAX's default that in-process runs use, so both compute
  # bit-identical results.
  config.cpu_devices = 1
  config.update_from_flattened_dict(overrides)
  return config


def final_params(workdir) -> list[np.ndarray]:
  """The parameters of a run's newest checkpoint, as host arrays in tree order."""
  restored = checkpoints.load_checkpoint(str(workdir))
  return [np.asarray(x) for x in jax.tree.leaves(restored["state"]["params"])]


def copy_run(src, dst, *, drop=()) -> str:
  """A copy of run `src` at `dst` without its evaluations, lock and the names in `drop`."""
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop, run_directory.EVALUATIONS,
                                                          run_directory.LOCK))
  return str(dst)


def sweep_of_copies(run, root, settings=("relu", "prelu"), seeds=(0, 1)) -> str:
  """A sweep directory whose every (setting, seed) is a copy of `run`."""
  for setting in settings:
    for seed in seeds:
      copy_run(run, run_directory.sweep_run_path(str(root), setting, seed))
  return str(root)


def file_digests(workdir) -> dict[str, str]:
  """{relative path: SHA-256} of every file of a run but its lock: what "unchanged" means."""
  out = {}
  for path in sorted(glob.glob(f"{workdir}/**/*", recursive=True)):
    if os.path.isfile(path) and not path.endswith(run_directory.LOCK):
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


# Python imports `sitecustomize` at start-up from the first sys.path entry that has one: on
# a subprocess's PYTHONPATH this makes a training hold right after its metrics row at
# HOLD_AT until a stop signal reaches it, so that the signal arrives at one known moment
# whatever the machine's load (the alternative, long epochs, is a race and slow).
_HOLD_AFTER_ROW = textwrap.dedent("""
    import time
    from training import run_directory, signals
    HOLD_AT = {step}
    received = []
    handle, append_row = signals.StopRequest._handle, run_directory.RunDirectory.append_row
    def recording(self, signum, frame):
      received.append(signum)
      return handle(self, signum, frame)
    def holding(self, row):
      append_row(self, row)
      deadline = time.time() + 300
      while row["step"] == HOLD_AT and not received and time.time() < deadline:
        time.sleep(0.01)
    signals.StopRequest._handle, run_directory.RunDirectory.append_row = recording, holding
""")


def holding_env(directory: Path, step: int) -> dict[str, str]:
  """The environment of a subprocess whose trainings hold after their row at `step` until
  they receive SIGTERM or SIGINT (`directory` gets the hook)."""
  hook = Path(directory) / f"hold-at-{step}"
  hook.mkdir(exist_ok=True)
  (hook / "sitecustomize.py").write_text(_HOLD_AFTER_ROW.format(step=step))
  return {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{REPO}"}
