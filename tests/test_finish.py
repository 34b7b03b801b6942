"""training/finish.py: what a finished run promises beside its summary, and what a run with
a summary but without one of them lacks (a rerun writes it again; tests/test_faults.py)."""

import os
import shutil

import pytest

from tests.helpers import copy_run
from training import export, finish, run_directory, tensorboard


@pytest.fixture
def run(prelu_run, tmp_path):
  return copy_run(prelu_run, tmp_path / "run")


def test_a_finished_run_lacks_nothing(run):
  assert finish.incomplete_artefacts(run_directory.read_run(run)) == []


def test_a_finished_runs_summary_holds_its_last_row_and_the_run_facts(run):
  record = run_directory.read_run(run)
  summary = record.summary
  for key, value in record.rows[-1].items():
    assert summary[key] == value, key
  assert (summary["model"], summary["rectifier"], summary["seed"]) == ("nin", "prelu", 0)
  assert summary["best_test_error"] == min(r["test_error"] for r in record.rows)
  # PReLU's learned slopes, one vector per rectified layer, in the network's order.
  assert list(summary["prelu_slope_vectors"])[0] == "conv1"


@pytest.mark.parametrize("damage,missing", [
    (lambda run: os.remove(os.path.join(run, run_directory.CURVES)), run_directory.CURVES),
    (lambda run: open(os.path.join(run, run_directory.CURVES), "r+b").truncate(100),
     run_directory.CURVES),
    (lambda run: os.remove(os.path.join(run, export.DIRECTORY, "model.json")), export.DIRECTORY),
    (lambda run: shutil.rmtree(os.path.join(run, tensorboard.DIRECTORY)), tensorboard.DIRECTORY),
])
def test_each_missing_or_damaged_artefact_is_named(run, damage, missing):
  damage(run)
  assert finish.incomplete_artefacts(run_directory.read_run(run)) == [missing]
