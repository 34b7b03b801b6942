"""training/provenance: which commit wrote the code, and whether tracked files differ from it."""

import shutil
import subprocess

import pytest

from training import provenance


def _git(cwd, *args):
  subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                 env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                      "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def checkout(tmp_path):
  if shutil.which("git") is None:
    pytest.skip("git is not installed")
  repo = tmp_path / "code"
  (repo / "training").mkdir(parents=True)
  (repo / "train.py").write_text("print(1)\n")
  _git(repo, "init", "-q")
  _git(repo, "add", "train.py")
  _git(repo, "commit", "-q", "-m", "one")
  return repo


def _version(path):
  provenance._cached.cache_clear()  # pylint: disable=protected-access
  return provenance.code_version(str(path))


def test_a_clean_checkout_records_its_commit_and_not_dirty(checkout):
  version = _version(checkout)
  assert len(version["commit"]) == 40 and version["dirty"] is False
  assert set(version["versions"]) == set(provenance.LIBRARIES)


def test_untracked_outputs_leave_provenance_clean_and_tracked_edits_do_not(checkout):
  (checkout / "evaluations").mkdir()
  (checkout / "evaluations" / "official.json").write_text("{}")
  assert _version(checkout)["dirty"] is False
  (checkout / "train.py").write_text("print(2)\n")
  assert _version(checkout)["dirty"] is True


def test_a_code_copy_inside_another_repository_records_unknown(checkout):
  copy = checkout / "vendored"
  copy.mkdir()
  (copy / "train.py").write_text("print(1)\n")
  assert _version(copy) == {"commit": "unknown", "dirty": None,
                            "versions": provenance.library_versions()}


def test_outside_any_repository_the_commit_is_unknown(tmp_path):
  assert _version(tmp_path)["commit"] == "unknown"
