"""The type checker over all non-test code (pyproject.toml's [tool.mypy]): a name a module
does not define (a renamed exception, a moved function) fails here, not in a user's hands."""

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_mypy_finds_no_error_in_the_non_test_code():
  if importlib.util.find_spec("mypy") is None:
    pytest.skip("mypy is not installed (pip install -e '.[test]')")
  out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
