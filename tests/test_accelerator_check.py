"""benchmarks/accelerator_check.sh, run end to end on CPU in its --tiny mode.

What this covers: the script's plumbing. Every part runs (the test subset, the rectifier and
train-step benchmarks in both dtypes, the scaling benchmark, the synthetic epoch), each
part's status, duration and JSON output land in one file, a part that cannot run is
recorded and the exit status says so, and bad arguments are refused. What it does not cover:
any accelerator or any number. The real check runs on a GPU or TPU machine, without --tiny.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "accelerator_check.sh"
PARTS = ["tests", "rectifiers", "train_step_f32", "train_step_bf16", "scaling",
         "synthetic_epoch"]
pytestmark = pytest.mark.skipif(shutil.which("timeout") is None or shutil.which("bash") is None,
                                reason="the script needs bash and coreutils' timeout")


def run_check(tmp_path, *args, **env):
  out = tmp_path / "check.json"
  proc = subprocess.run(["bash", str(SCRIPT), "--tiny", "--out", str(out), *args], cwd=tmp_path,
                        env={**os.environ, "PYTHON": sys.executable, **env},
                        capture_output=True, text=True, timeout=600)
  return proc, out


@pytest.mark.slow
def test_tiny_accelerator_check_runs_every_part_on_cpu_into_one_json(tmp_path):
  proc, out = run_check(tmp_path)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["tiny"] is True and report["failed"] == []
  assert report["environment"]["backend"] == "cpu"
  assert 0 < report["duration_s"] <= report["budget_s"]
  parts = {p["name"]: p for p in report["parts"]}
  assert list(parts) == PARTS
  for p in parts.values():
    assert p["status"] == "passed" and p["exit_code"] == 0, (p["name"], p["log_tail"])
    assert 0 < p["duration_s"] <= p["timeout_s"] and p["command"]
  assert " passed" in parts["tests"]["summary"]
  assert {r["dtype"] for r in parts["rectifiers"]["result"]["results"]} == {"float32", "bfloat16"}
  for name, dtype in (("train_step_f32", "float32"), ("train_step_bf16", "bfloat16")):
    result = parts[name]["result"]
    assert result["dtype"] == dtype and result["step"] == "train"
    assert {r["conv_grad"] for r in result["results"]} == {"xla", "forward"}
  scaling = parts["scaling"]["result"]
  assert {p["mode"] for p in scaling["points"]} == {"weak", "strong"}
  epoch = parts["synthetic_epoch"]["result"]
  assert epoch["steps"] == 256 // 32 and epoch["images_trained"] == 256
  assert epoch["images_per_s"] > 0 and epoch["loss_is_finite"]


def test_parts_past_the_budget_are_recorded_as_skipped_and_fail_the_check(tmp_path):
  proc, out = run_check(tmp_path, ACCELERATOR_CHECK_BUDGET_S="1")
  assert proc.returncode != 0
  report = json.loads(out.read_text())
  assert [p["status"] for p in report["parts"]] == ["skipped"] * len(PARTS)
  assert report["failed"] == PARTS and "budget" in report["parts"][0]["log_tail"]


def test_unknown_arguments_are_refused_with_the_allowed_ones(tmp_path):
  proc, _ = run_check(tmp_path, "--fast")
  assert proc.returncode == 2
  assert "unknown argument '--fast'; allowed: --out PATH, --tiny" in proc.stderr
