"""training/compilation_cache.py: one place that turns JAX's persistent cache on."""

import os
import subprocess
import sys
import textwrap

from tests.helpers import REPO


def test_enable_sets_the_directory_for_jax_and_for_subprocesses(tmp_path):
  # A fresh interpreter: the cache is process-wide state the test session has set already.
  code = textwrap.dedent(f"""
      import os, jax
      from training import compilation_cache
      os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
      got = compilation_cache.enable({str(tmp_path / 'xla')!r}, cache_everything=True)
      assert got == {str(tmp_path / 'xla')!r}
      assert os.environ["JAX_COMPILATION_CACHE_DIR"] == got
      assert jax.config.jax_compilation_cache_dir == got
      assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
      jax.jit(lambda x: x * 2 + 1)(jax.numpy.arange(3.0)).block_until_ready()
      print(sorted(os.listdir(got)) != [])
      """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "True"  # the compiled program was written to the cache


def test_the_default_is_the_environment_variable_else_the_users_cache(tmp_path):
  code = textwrap.dedent("""
      import os
      from training import compilation_cache
      print(compilation_cache.enable())
      """)
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  home = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env={**env, "HOME": str(tmp_path)})
  assert home.stdout.strip() == str(tmp_path / ".cache" / "rectifiers" / "xla"), home.stderr
  named = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120,
                         env={**env, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "x")})
  assert named.stdout.strip() == str(tmp_path / "x"), named.stderr
