"""benchmarks/scaling_model.py: the all-reduce cost against hand computations, the shape of
the weak and strong scaling curves, the inputs it reads, and its command line."""

import json

import pytest

from benchmarks import scaling_model as sm

IB = sm.FABRICS["ib"]


def test_ring_allreduce_is_two_n_minus_one_over_n_bytes_over_bandwidth_plus_latencies():
  # 4 ranks, 1 GB at 100 GB/s, 10 us per step: 2*3/4 * 1e9/1e11 s + 2*3 * 1e-5 s.
  assert sm.ring_allreduce_seconds(4, 1e9, 100e9, 1e-5) == pytest.approx(0.015 + 0.00006)
  assert sm.ring_allreduce_seconds(1, 1e9, 100e9, 1e-5) == 0


def test_hierarchical_allreduce_is_a_ring_in_each_host_then_one_between_hosts():
  # 16 GPUs = 2 hosts of 8, 4 MB: NVLink ring 2*7/8 * 4e6/450e9 + 14 * 3.4 us, host ring
  # 2*1/2 * 4e6/400e9 + 2 * 14 us, plus NCCL's 8.4 us base.
  by_hand = 7e6 / 450e9 + 47.6e-6 + 4e6 / 400e9 + 28e-6 + 8.4e-6
  assert sm.allreduce_seconds(16, 4e6, IB) == pytest.approx(by_hand)
  assert by_hand == pytest.approx(109.556e-6, rel=1e-5)
  # Inside one host: the NVLink ring alone. 4 GPUs: 2*3/4 * 4e6/450e9 + 6 * 3.4 us + base.
  assert sm.allreduce_seconds(4, 4e6, IB) == pytest.approx(6e6 / 450e9 + 20.4e-6 + 8.4e-6)
  assert sm.allreduce_seconds(1, 4e6, IB) == 0


def test_small_collectives_cost_nccls_tree_latency():
  # 64 GPUs = 8 hosts: 6.8 + 2 * (7 * 0.6 + log2(8) * 5.0) us = 45.2 us.
  assert sm.small_collective_seconds(64, IB) == pytest.approx(45.2e-6)
  assert sm.small_collective_seconds(2, IB) == pytest.approx(6.8e-6 + 1.2e-6)


def test_device_counts_above_one_host_must_fill_hosts():
  with pytest.raises(ValueError, match="12 devices do not fill hosts of 8 GPUs"):
    sm.hosts(12, IB)
  assert sm.hosts(4, IB) == (4, 1) and sm.hosts(64, IB) == (8, 8)


NIN = sm.WORKLOADS["nin"]
# A measured-looking compute: 6 ms at batch 128 and 1 ms of fixed cost per step.
WITH_FLOOR = sm.Compute(floor=1e-3, per_image=5e-3 / 128, source="test")


@pytest.mark.parametrize("workload", sorted(sm.WORKLOADS))
@pytest.mark.parametrize("fabric", sorted(sm.FABRICS))
def test_weak_scaling_efficiency_never_rises_with_devices(workload, fabric):
  w = sm.WORKLOADS[workload]
  for compute in (sm.placeholder_compute(w, 50), WITH_FLOOR):
    rows = sm.scaling_rows("weak", sm.DEFAULT_DEVICES, w.batch, compute, w, sm.FABRICS[fabric],
                           w.collectives, critical_batch=2048)
    assert [r["devices"] for r in rows] == list(sm.DEFAULT_DEVICES)
    for key in ("efficiency", "efficiency_overlap"):
      eff = [r[key] for r in rows]
      assert eff[0] == 1.0 and all(a >= b for a, b in zip(eff, eff[1:])), (key, eff)
    assert rows[-1]["efficiency"] < 1.0
    for r in rows:  # efficiency = t_c(b) / t(N) and t(N) = t_c + all-reduce + small ones
      assert r["step_s"] == pytest.approx(r["compute_s"] + r["allreduce_s"]
                                          + r["small_collectives_s"])
      assert r["efficiency"] == pytest.approx(compute(w.batch) / r["step_s"])


def test_strong_scaling_efficiency_drops_once_the_per_device_batch_is_small():
  strong = sm.scaling_rows("strong", sm.DEFAULT_DEVICES, 128, WITH_FLOOR, NIN, IB,
                           NIN.collectives, critical_batch=2048)
  weak = sm.scaling_rows("weak", sm.DEFAULT_DEVICES, 128, WITH_FLOOR, NIN, IB,
                         NIN.collectives, critical_batch=2048)
  # Down to one image per device, then no more rows.
  assert [r["batch_per_device"] for r in strong] == [128, 64, 32, 16, 8, 4, 2, 1]
  eff = [r["efficiency"] for r in strong]
  assert all(a > b for a, b in zip(eff, eff[1:])), eff
  # By hand at 128 devices: t_c(128) / (128 (t_c(1) + T(128) + t_small(128))).
  t = WITH_FLOOR(1) + sm.allreduce_seconds(128, 4 * NIN.params, IB) + \
      sm.small_collective_seconds(128, IB)
  assert eff[-1] == pytest.approx(WITH_FLOOR(128) / (128 * t))
  assert eff[-1] < 0.1
  # Same devices, same communication: the smaller per-device batch is what costs.
  for s, w in zip(strong[1:], weak[1:]):
    assert s["efficiency"] < w["efficiency"]


def test_weak_rows_flag_batches_past_the_critical_batch_and_the_dataset():
  rows = {r["devices"]: r for r in sm.scaling_rows(
      "weak", sm.DEFAULT_DEVICES, 128, WITH_FLOOR, NIN, IB, 2, critical_batch=2048)}
  assert rows[16]["notes"] == "" and rows[16]["steps_per_epoch"] == 50_000 // 2048
  assert rows[32]["notes"] == "batch > critical ~2,048"
  assert rows[512]["notes"] == "batch > the 50,000 training images"
  assert rows[512]["steps_per_epoch"] == 0 and rows[512]["epoch_s"] is None


def test_fit_compute_is_proportional_for_one_batch_and_a_line_for_several():
  one = sm.fit_compute([(128, 0.0064)], "test")
  assert one.floor == 0 and one(64) == pytest.approx(0.0032)
  line = sm.fit_compute([(32, 0.002), (128, 0.005)], "test")
  assert line.floor == pytest.approx(0.001) and line.per_image == pytest.approx(0.003 / 96)
  # A negative intercept would be a step faster than free: fitted through the origin.
  origin = sm.fit_compute([(32, 0.001), (128, 0.006)], "test")
  assert origin.floor == 0
  assert origin.per_image == pytest.approx((32 * 0.001 + 128 * 0.006) / (32**2 + 128**2))
  with pytest.raises(ValueError, match="do not grow with the batch"):
    sm.fit_compute([(32, 0.004), (128, 0.002)], "test")


def test_inputs_come_from_scaling_and_train_step_json(tmp_path):
  scaling = tmp_path / "scaling.json"
  scaling.write_text(json.dumps({
      "benchmark": "scaling", "model": "nin", "width": 1.0, "dtype": "float32",
      "environment": {"backend": "gpu", "device_kind": "NVIDIA H200"},
      "points": [
          {"mode": "weak", "devices": 1, "global_batch": 32, "step_s_median": 0.002,
           "hlo_collectives": 0},
          {"mode": "strong", "devices": 1, "global_batch": 128, "step_s_median": 0.005,
           "hlo_collectives": 0},
          {"mode": "weak", "devices": 2, "global_batch": 64, "step_s_median": 0.0021,
           "hlo_collectives": 3}]}))
  inputs = sm.inputs_from_json(str(scaling))
  assert inputs["measured"] == [(32, 0.002), (128, 0.005)] and inputs["collectives"] == 3
  assert "NVIDIA H200" in inputs["source"] and "batch 128: 5 ms" in inputs["source"]
  bench = tmp_path / "step.json"
  bench.write_text(json.dumps({
      "benchmark": "train_step", "model": "nin", "width": 1.0, "dtype": "bfloat16",
      "results": [{"framework": "jax", "rectifier": "relu", "batch": 128, "step_ms": 4.0},
                  {"framework": "jax", "rectifier": "rrelu", "batch": 128, "step_ms": 4.4}]}))
  assert sm.inputs_from_json(str(bench))["measured"] == [(128, 0.004)]
  assert sm.inputs_from_json(str(bench), "rrelu")["measured"] == [(128, 0.0044)]


def test_command_line_marks_placeholder_inputs_and_writes_json(tmp_path, capsys):
  out = tmp_path / "model.json"
  sm.main(["--model", "nin,ndsb", "--assume-tflops", "50", "--devices", "1,8,16",
           "--json", str(out)])
  text = capsys.readouterr().out
  assert text.count("**PLACEHOLDER INPUTS") == 2 and "## NDSB net on NDSB" in text
  assert "| 16 | 2 | 128 | 2,048 |" in text and "NVIDIA H100 and H200" in text
  reports = json.loads(out.read_text())["reports"]
  assert [r["workload"]["model"] for r in reports] == ["nin", "ndsb"]
  assert reports[0]["compute"]["placeholder"] is True
  # 3 x 0.404 GFLOPs per image at 50 TFLOP/s, 128 images: 3.1 ms.
  assert reports[0]["weak"][0]["compute_s"] == pytest.approx(3 * 0.404e9 * 128 / 50e12)


def test_command_line_takes_measured_points(capsys):
  sm.main(["--model", "nin", "--measured", "128:6,32:2", "--devices", "1,2"])
  text = capsys.readouterr().out
  assert "PLACEHOLDER" not in text and "given on the command line" in text
  assert "t_c(b) = 0.667 ms + 0.04167 ms x b" in text


@pytest.mark.parametrize("argv, message", [
    (["--assume-tflops", "50", "--devices", "1,12"], "12 devices do not fill hosts of 8 GPUs"),
    (["--measured", "128:6", "--model", "nin,ndsb"], "several --model values need"),
    (["--measured", "128-6"], "--measured takes BATCH:MS pairs"),
    (["--assume-tflops", "50", "--model", "vgg"], "unknown --model ['vgg']"),
    (["--assume-tflops", "0"], "--assume-tflops must be > 0, got 0.0."),
    (["--model", "nin"], "one of the arguments --from-json --measured --assume-tflops"),
])
def test_bad_arguments_say_what_was_given_and_what_is_allowed(argv, message, capsys):
  with pytest.raises(SystemExit):
    sm.main(argv)
  assert message in capsys.readouterr().err
