"""The README's two test commands, as .ci/run reads them: together they run every test."""

import re
import shlex
import subprocess

from tests.helpers import REPO


def _readme_command(marker: str) -> str:
  """The first `pip`/`python` line within two lines after the marker, as .ci/run finds it."""
  lines = (REPO / "README.md").read_text().splitlines()
  [at] = [i for i, line in enumerate(lines) if line.strip() == f"<!-- {marker} -->"]
  [command] = [l for l in lines[at + 1:at + 3] if re.match(r"^(pip|python)", l)][:1]
  return command


def _marker_expression(command: str) -> str:
  pytest_part = command.split("&&")[-1]
  words = shlex.split(pytest_part)
  assert words[:3] == ["python", "-m", "pytest"], command
  return words[words.index("-m", 3) + 1]


def test_the_quick_and_the_slow_command_select_complementary_tests():
  quick, slow = _readme_command("test-command"), _readme_command("slow-test-command")
  install = shlex.split(quick.split("&&")[0])  # the quick tier installs first
  assert install[:2] == ["pip", "install"] and install[-2:] == ["-e", ".[test]"], quick
  assert (_marker_expression(quick), _marker_expression(slow)) == ("not slow", "slow")


def test_ci_runs_both_readme_commands_and_fails_when_a_marker_is_missing(tmp_path):
  script = (REPO / ".ci" / "run").read_text()
  assert "readme_command test-command" in script
  assert "readme_command slow-test-command" in script
  # The extraction function alone, on a README without the slow marker: a named failure.
  function = script[script.index("readme_command() {"):script.index("\n}\n") + 3]
  (tmp_path / "README.md").write_text(
      '<!-- test-command -->\n```bash\npython -m pytest -q -m "not slow"\n```\n')
  probe = f'set -euo pipefail\n{function}\nreadme_command test-command\n' \
          'readme_command slow-test-command\n'
  out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
  assert out.stdout.splitlines() == ['python -m pytest -q -m "not slow"']
  assert out.returncode == 1
  assert "no command found after '<!-- slow-test-command -->' in README.md" in out.stderr
