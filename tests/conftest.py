"""Shared test setup (cheap compiles, a persistent XLA compilation cache) and the fixtures
several files use. Shared helpers that are not fixtures are in tests/helpers.py.

The tests check semantics, not speed, on tiny networks where compiling dominates: XLA's
CPU backend optimisations cost ~2.5x the compile time (Inception-BN's step: 103 s -> 42 s
without them). The persistent cache lets identical steps compiled by several tests (and by
their subprocesses, which inherit the environment) compile once per session.
"""

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import pytest  # noqa: E402

from tests.helpers import CIFAR10_MINI, copy_run, tiny_config  # noqa: E402
from training import compilation_cache, run_directory  # noqa: E402


def _session_cache_dir() -> str:
  """One cache for the whole session: pytest-xdist's workers share theirs through the run's
  id (set in every worker), so a program one worker compiled is a hit for the other."""
  run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  if not run:
    return tempfile.mkdtemp(prefix="rectifiers-xla-cache-")
  directory = os.path.join(tempfile.gettempdir(), f"rectifiers-xla-cache-{run}")
  os.makedirs(directory, exist_ok=True)
  return directory


compilation_cache.enable(os.environ.get("JAX_COMPILATION_CACHE_DIR") or _session_cache_dir(),
                         cache_everything=True)


@pytest.fixture(scope="session")
def cifar10_mini() -> Path:
  if not CIFAR10_MINI.is_dir():
    pytest.skip(f"{CIFAR10_MINI} is missing (the shared data folder beside the checkout).")
  return CIFAR10_MINI


def _trained_once(tmp_path_factory, name: str, config) -> Path:
  """A finished run of `config`, trained once per test session, and this worker's own copy
  of it (tests write evaluations into their run).

  Under pytest-xdist the first worker to ask trains it in the session's shared temporary
  folder, holding a lock, and every later one copies it: a copy reads back as the original
  (tests/helpers.copy_run), and copying takes milliseconds, training seconds. A worker that
  asks while the lock is held trains its own rather than wait idle (the workers often reach
  the same fixture at once, at the start of the session).
  """
  import train  # pylint: disable=g-import-not-at-top  (after the XLA flags above)
  own = tmp_path_factory.mktemp(name)
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = tmp_path_factory.getbasetemp().parent / f"trained-once-{name}"
    with open(f"{shared}.lock", "a") as lock:
      try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        pass  # being trained by another worker
      else:
        if not (shared / run_directory.SUMMARY).exists():
          shutil.rmtree(shared, ignore_errors=True)  # left by a worker that crashed midway
          train.train_and_evaluate(config, str(shared))
        shutil.rmtree(own)
        copy_run(shared, own)
        return own
  train.train_and_evaluate(config, str(own))
  return own


@pytest.fixture(scope="session")
def prelu_run(tmp_path_factory) -> Path:
  """One finished tiny PReLU run on digits (its records with the per-layer statistics,
  checkpoints and export), shared by the tests that read a run without changing it."""
  return _trained_once(tmp_path_factory, "prelu-run",
                       tiny_config("prelu", activation_statistics=True))


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> tuple[Path, dict]:
  """(workdir, summary) of tiny_config() trained in process: one device, the reference the
  multi-device and multi-process runs must match, and a parent for config.init_from."""
  workdir = _trained_once(tmp_path_factory, "digits", tiny_config())
  return workdir, run_directory.read_json(str(workdir / run_directory.SUMMARY))
