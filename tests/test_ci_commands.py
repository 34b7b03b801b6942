"""The README's two test commands, as .ci/run reads them: together they run every test."""

import shlex
import subprocess

from tests.helpers import REPO


def _ci_readme_commands(*markers: str, readme_dir=REPO) -> subprocess.CompletedProcess:
  """.ci/run's own `readme_command`, run for each marker on the README in `readme_dir`: the
  commands exactly as CI finds them, one per line."""
  script = (REPO / ".ci" / "run").read_text()
  start = script.index("readme_command() {")
  function = script[start:script.index("\n}\n", start) + 3]
  calls = "".join(f"readme_command {m}\n" for m in markers)
  return subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}{calls}"],
                        cwd=readme_dir, capture_output=True, text=True)


def _marker_expression(command: str) -> str:
  pytest_part = command.split("&&")[-1]
  words = shlex.split(pytest_part)
  assert words[:3] == ["python", "-m", "pytest"], command
  return words[words.index("-m", 3) + 1]


def test_the_quick_and_the_slow_command_select_complementary_tests():
  out = _ci_readme_commands("test-command", "slow-test-command")
  assert out.returncode == 0, out.stderr
  quick, slow = out.stdout.splitlines()
  install = shlex.split(quick.split("&&")[0])  # the quick tier installs first
  assert install[:2] == ["pip", "install"] and install[-2:] == ["-e", ".[test]"], quick
  assert (_marker_expression(quick), _marker_expression(slow)) == ("not slow", "slow")


def test_ci_runs_both_readme_commands_and_fails_when_a_marker_is_missing(tmp_path):
  script = (REPO / ".ci" / "run").read_text()
  assert "readme_command test-command" in script
  assert "readme_command slow-test-command" in script
  (tmp_path / "README.md").write_text(
      '<!-- test-command -->\n```bash\npython -m pytest -q -m "not slow"\n```\n')
  out = _ci_readme_commands("test-command", "slow-test-command", readme_dir=tmp_path)
  assert out.stdout.splitlines() == ['python -m pytest -q -m "not slow"']
  assert out.returncode == 1
  assert "no command found after '<!-- slow-test-command -->' in README.md" in out.stderr
