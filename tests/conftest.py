"""Shared test setup: cheap compiles and a persistent XLA compilation cache.

The tests check semantics, not speed, on tiny networks where compiling dominates: XLA's
CPU backend optimisations cost ~2.5x the compile time (Inception-BN's step: 103 s -> 42 s
without them). The persistent cache lets identical steps compiled by several tests (and by
their subprocesses, which inherit the environment) compile once per session.
"""

import os
import tempfile
from pathlib import Path

_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import ml_collections  # noqa: E402
import pytest  # noqa: E402

from configs import quickstart  # noqa: E402
from training import compilation_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CIFAR10_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"

compilation_cache.enable(os.environ.get("JAX_COMPILATION_CACHE_DIR")
                         or tempfile.mkdtemp(prefix="rectifiers-xla-cache-"),
                         cache_everything=True)


@pytest.fixture(scope="session")
def cifar10_mini() -> Path:
  if not CIFAR10_MINI.is_dir():
    pytest.skip(f"{CIFAR10_MINI} is missing (the shared data folder beside the checkout).")
  return CIFAR10_MINI


def tiny_config(rectifier: str = "rrelu", **overrides) -> ml_collections.ConfigDict:
  """A NIN at 1/16 width on digits, 3 steps an epoch, 2 epochs: seconds per run."""
  config = quickstart.get_config(rectifier)
  config.model_options = ml_collections.ConfigDict({"width": 0.0625, "kernel_init": "he"})
  config.batch_size = 8
  config.eval_batch_size = 120
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


@pytest.fixture(scope="session")
def prelu_run(tmp_path_factory) -> Path:
  """One finished tiny PReLU run on digits (its records, checkpoints and export), shared by
  the tests that read a run without changing it."""
  import train  # pylint: disable=g-import-not-at-top  (after the XLA flags above)
  workdir = tmp_path_factory.mktemp("prelu-run")
  train.train_and_evaluate(tiny_config("prelu"), str(workdir))
  return workdir
