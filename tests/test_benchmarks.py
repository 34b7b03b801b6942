"""Smoke tests: each benchmark script runs on a tiny problem and writes valid JSON."""

import importlib.util
import json

import pytest

from benchmarks import rectifiers_bench, train_step_bench


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


def test_train_step_bench_times_the_training_scripts_step(tmp_path):
  if importlib.util.find_spec("train") is None:
    pytest.skip("train.py is not importable")
  out = tmp_path / "train_step.json"
  train_step_bench.main(["--width", "0.05", "--batch-sizes", "4", "--repeats", "1",
                         "--warmup", "0", "--step", "train", "--rectifiers", "rrelu",
                         "--conv", "fast", "--json", str(out)])
  result = json.loads(out.read_text())
  assert result["step"] == "train"
  [row] = result["results"]
  assert row["rectifier"] == "rrelu +fast conv" and row["conv"] == "fast"
  assert row["images_per_s"] > 0 and row["peak_memory_bytes"] > 0


@pytest.mark.parametrize("hw,cin,cout,k", [(6, 3, 8, 5), (6, 20, 8, 1), (5, 24, 7, 3), (4, 17, 6, 2)])
def test_fast_conv_matches_lax_values_and_gradients(hw, cin, cout, k):
  import jax
  import numpy as np
  from jax import lax

  from benchmarks import fast_conv

  pad = (((k - 1) // 2, k // 2),) * 2  # k = 2: asymmetric padding
  x, w, g = (jax.random.normal(jax.random.key(i), s) for i, s in enumerate(
      [(3, hw, hw, cin), (k, k, cin, cout), (3, hw, hw, cout)]))
  conv = lambda f: lambda x, w: f(x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y_ref, vjp_ref = jax.vjp(conv(lax.conv_general_dilated), x, w)
  y, vjp = jax.vjp(jax.jit(conv(fast_conv.conv_general_dilated)), x, w)
  np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-4, atol=1e-4)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-3)


def test_fast_conv_defers_to_lax_for_strided_convolutions():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  from benchmarks import fast_conv

  x, w = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 4))
  kwargs = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = jax.make_jaxpr(lambda x, w: fast_conv.conv_general_dilated(x, w, **kwargs))(x, w)
  assert "custom_vjp" not in str(got)
  np.testing.assert_array_equal(np.asarray(fast_conv.conv_general_dilated(x, w, **kwargs)),
                                np.asarray(lax.conv_general_dilated(x, w, **kwargs)))
