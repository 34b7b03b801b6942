"""Shared test setup: a persistent XLA compilation cache, so identical train steps compiled by
several tests (and by their subprocesses) compile once per session."""

import os
import tempfile
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR10_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"

_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                               tempfile.mkdtemp(prefix="rectifiers-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def cifar10_mini() -> Path:
  if not CIFAR10_MINI.is_dir():
    pytest.skip(f"{CIFAR10_MINI} is missing (the shared data folder beside the checkout).")
  return CIFAR10_MINI
