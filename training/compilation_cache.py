"""JAX's persistent compilation cache, set up in one place for train.py, sweep.py and the tests.

The seeds of one setting compile the same programs (the seed is a runtime argument), and
a resumed run compiles what it compiled before: with the cache only the first pays.
Subprocesses inherit the directory through JAX_COMPILATION_CACHE_DIR.
"""

from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join("~", ".cache", "rectifiers", "xla")


def enable(directory: str | None = None, cache_everything: bool = False) -> str:
  """Turns the cache on in `directory` (default: $JAX_COMPILATION_CACHE_DIR, else
  ~/.cache/rectifiers/xla) and returns it. `cache_everything` also keeps programs that
  compile fast and small ones (the tests' tiny networks)."""
  directory = os.path.expanduser(
      directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIR)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
  jax.config.update("jax_compilation_cache_dir", directory)
  if cache_everything:
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
