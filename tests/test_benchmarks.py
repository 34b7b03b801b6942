"""Smoke tests: each benchmark script runs on a tiny problem and writes valid JSON."""

import importlib.util
import json

import pytest

from benchmarks import input_pipeline_bench, rectifiers_bench, train_step_bench


def test_rectifiers_bench_writes_a_row_per_rectifier_and_dtype(tmp_path, capsys):
  # Every row once (in bfloat16, the more fragile dtype), then float32 for a subset: each
  # row compiles two programs, and compiles dominate at this size.
  out = tmp_path / "rectifiers.json"
  rectifiers_bench.main(["--shape", "2,4,4,8", "--dtypes", "bfloat16", "--repeats", "2",
                         "--warmup", "1", "--json", str(out)])
  result = json.loads(out.read_text())
  assert result["benchmark"] == "rectifiers" and result["shape"] == [2, 4, 4, 8]
  names = {r["rectifier"] for r in result["results"]}
  assert {"copy", "relu", "prelu(per channel)", "rrelu exact", "rrelu fast",
          "rrelu fast per-channel"} <= names
  relu = [r for r in result["results"] if r["rectifier"] == "relu"]
  assert relu[0]["fwd_vs_relu"] == 1.0 and relu[0]["fwd+bwd_vs_relu"] == 1.0
  assert all(r["fwd_ms"] > 0 and r["fwd+bwd_ms"] > 0 for r in result["results"])
  assert "| bfloat16 | rrelu fast" in capsys.readouterr().out
  rectifiers_bench.main(["--shape", "2,4,4,8", "--dtypes", "float32", "--repeats", "1",
                         "--only", "rrelu fast", "--json", str(out)])
  result = json.loads(out.read_text())
  assert [(r["dtype"], r["rectifier"]) for r in result["results"]] == [
      ("float32", "relu"), ("float32", "rrelu fast")]


@pytest.mark.slow
def test_train_step_bench_reports_speed_compile_time_memory_and_torch(tmp_path):
  has_torch = importlib.util.find_spec("torch") is not None
  out = tmp_path / "train_step.json"
  train_step_bench.main(["--width", "0.05", "--batch-sizes", "4", "--repeats", "1",
                         "--warmup", "0", "--step", "minimal", "--rectifiers", "relu;rrelu",
                         "--json", str(out)]
                        + ["--torch", "--torch-rectifiers", "relu,rrelu"] * has_torch)
  result = json.loads(out.read_text())
  rows = [r for r in result["results"] if r["framework"] == "jax"]
  assert [r["rectifier"] for r in rows] == ["relu", "rrelu"]
  for r in rows:
    assert r["images_per_s"] > 0 and r["compile_s"] > 0
    assert r["peak_memory_bytes"] >= r["temp_size_bytes"] > 0
  assert rows[0]["speed_vs_jax_relu"] == 1.0 and rows[0]["peak_memory_vs_relu"] == 1.0
  if has_torch:  # The bench extra: PyTorch's NIN step side by side.
    torch_rows = [r for r in result["results"] if r["framework"] == "torch"]
    assert {r["rectifier"] for r in torch_rows} == {
        "relu nchw", "relu channels_last", "rrelu nchw", "rrelu channels_last"}
    assert all(r["images_per_s"] > 0 and r["speed_vs_jax_relu"] > 0 for r in torch_rows)
    assert result["environment"]["torch"].startswith("2.")


@pytest.mark.slow
def test_train_step_bench_times_the_training_scripts_step(tmp_path):
  if importlib.util.find_spec("train") is None:
    pytest.skip("train.py is not importable")
  out = tmp_path / "train_step.json"
  train_step_bench.main(["--width", "0.05", "--batch-sizes", "4", "--repeats", "1",
                         "--warmup", "0", "--step", "train", "--rectifiers", "rrelu",
                         "--conv-grad", "forward", "--json", str(out)])
  result = json.loads(out.read_text())
  assert result["step"] == "train"
  [row] = result["results"]
  assert row["rectifier"] == "rrelu conv_grad=forward" and row["conv_grad"] == "forward"
  assert row["images_per_s"] > 0 and row["peak_memory_bytes"] > 0


@pytest.mark.slow
def test_train_step_bench_feeds_each_model_its_own_input_shape(tmp_path):
  # The NDSB net on 80x80x1 plankton images that its augmentation crops to 70x70, with 121
  # classes (it would silently run on CIFAR's 32x32x3 too).
  out = tmp_path / "ndsb.json"
  train_step_bench.main(["--model", "ndsb", "--width", "0.0625", "--batch-sizes", "2",
                         "--repeats", "1", "--warmup", "0", "--step", "train",
                         "--rectifiers", "relu", "--json", str(out)])
  result = json.loads(out.read_text())
  assert result["image_shape"] == [80, 80, 1] and result["num_classes"] == 121
  assert train_step_bench.WORKLOADS["ndsb"].network == (70, 70, 1)
  assert train_step_bench.WORKLOADS["inception_bn"].network == (28, 28, 3)


def test_input_pipeline_bench_times_the_pipeline_the_step_and_the_loop(tmp_path, capsys):
  out = tmp_path / "pipeline.json"
  input_pipeline_bench.main(["--config=configs/quickstart.py:relu", "--steps", "2",
                             "--repeats", "1", "--width", "0.0625", "--batch", "8",
                             "--json", str(out)])
  result = json.loads(out.read_text())
  assert result["train_examples"] == 1437 and result["image_shape"] == [8, 8, 1]
  rates = result["images_per_s"]
  assert all(rates[k] > 0 for k in ("pipeline", "step", "loop"))
  assert result["loop_vs_step"] == rates["loop"] / rates["step"]
  assert "| loop |" in capsys.readouterr().out


def test_train_step_bench_rejects_an_unknown_conv_grad(capsys):
  with pytest.raises(SystemExit):
    train_step_bench.main(["--conv-grad", "xla,fast"])
  assert "unknown --conv-grad ['fast']; valid: xla,forward" in capsys.readouterr().err


@pytest.mark.slow
def test_train_step_bench_splits_the_batch_over_the_cpu_devices_it_asks_for(tmp_path):
  import subprocess
  import sys
  from tests.helpers import REPO
  out = tmp_path / "two.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.train_step_bench", "--width", "0.0625",
       "--batch-sizes", "4", "--repeats", "1", "--warmup", "0", "--rectifiers", "relu",
       "--cpu-devices", "2", "--json", str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  record = json.loads(out.read_text())
  assert record["devices"] == 2 and record["cpu_devices"] == 2
  assert "2 cpu device(s)" in result.stdout
