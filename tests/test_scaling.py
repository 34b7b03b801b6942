"""benchmarks/scaling.py on fake CPU devices: the points of both modes, the efficiency
arithmetic, the collective share, two jax.distributed processes, and argument errors.

A NIN at 1/16 width, 4 images per device, 1 timed step: seconds per point, all compiling.
"""

import json
import types

import jax
import pytest

from benchmarks import scaling
from training.devices import single_thread_xla_flags

TINY = ["--width=0.0625", "--repeats=1", "--warmup=1", "--profile-steps=2"]


# It trains in two fresh processes, of 1 and 2 devices: its tests are in the slow tier.
@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
  out = tmp_path_factory.mktemp("scaling")
  scaling.main(["--devices=1,2", "--mode=both", "--batch-per-device=4", "--global-batch=4",
                *TINY, f"--json={out / 's.json'}", f"--plot={out / 's.png'}"])
  result = json.loads((out / "s.json").read_text())
  points = {(p["mode"], p["devices"]): p for p in result["points"]}
  return result, points, out


@pytest.mark.slow
def test_weak_keeps_the_per_device_batch_and_strong_the_global_batch(both_modes):
  _, points, _ = both_modes
  assert set(points) == {("weak", 1), ("weak", 2), ("strong", 1), ("strong", 2)}
  assert [points["weak", n]["global_batch"] for n in (1, 2)] == [4, 8]
  assert [points["weak", n]["batch_per_device"] for n in (1, 2)] == [4, 4]
  assert [points["strong", n]["global_batch"] for n in (1, 2)] == [4, 4]
  assert [points["strong", n]["batch_per_device"] for n in (1, 2)] == [4, 2]


@pytest.mark.slow
def test_points_report_spread_throughput_compile_time_and_environment(both_modes):
  result, points, _ = both_modes
  for p in points.values():
    assert len(p["step_times_s"]) == 1 and p["processes"] == 1
    assert 0 < p["step_s_min"] <= p["step_s_q1"] <= p["step_s_median"] <= p["step_s_q3"] \
        <= p["step_s_max"]
    assert p["images_per_s"] == pytest.approx(p["global_batch"] / p["step_s_median"])
    assert p["compile_s"] > 0 and p["peak_memory_bytes"] > 0
  env = result["environment"]
  assert env["jax"] == jax.__version__ and env["backend"] == "cpu" and env["cores"] >= 1
  assert env["device_kind"] and env["date"].startswith("20")
  assert env["command"].startswith("python -m benchmarks.scaling --devices=1,2 --mode=both")
  assert [w["device_count"] for w in env["workers"]] == [1, 2]
  # One single-threaded XLA:CPU device per core: the default layout under test.
  assert all(single_thread_xla_flags(w["device_count"]) in w["xla_flags"]
             for w in env["workers"])
  assert result["model"] == "nin" and result["width"] == 0.0625
  assert result["conv_grad"] == "forward" and result["cpu_threads_per_device"] == "1"


@pytest.mark.slow
def test_efficiency_is_throughput_over_devices_times_the_one_device_throughput(both_modes):
  _, points, _ = both_modes
  for mode in ("weak", "strong"):
    one, two = points[mode, 1], points[mode, 2]
    assert one["efficiency"] == 1.0 and one["baseline_devices"] == 1
    assert two["efficiency"] == pytest.approx(two["images_per_s"] / (2 * one["images_per_s"]))
    assert two["speedup"] == pytest.approx(two["images_per_s"] / one["images_per_s"])
  # Strong scaling keeps the global batch: the same number is T_1 / (N T_N).
  t1, t2 = points["strong", 1]["step_s_median"], points["strong", 2]["step_s_median"]
  assert points["strong", 2]["efficiency"] == pytest.approx(t1 / (2 * t2))


@pytest.mark.slow
def test_collective_share_is_zero_on_one_device_and_read_from_the_trace_on_two(both_modes):
  _, points, _ = both_modes
  for mode in ("weak", "strong"):
    assert points[mode, 1]["hlo_collectives"] == 0 and points[mode, 1]["collective_share"] == 0
    two = points[mode, 2]
    assert two["hlo_collectives"] >= 1  # the gradient all-reduce, at least
    # XLA:CPU's trace names each thunk after its HLO instruction: the share is measured.
    assert 0 < two["collective_share"] <= 1, two["collective_share_note"]
    assert "collective events" in two["collective_share_note"]


@pytest.mark.slow
def test_plot_is_written_as_a_png(both_modes):
  _, _, out = both_modes
  assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_two_processes_run_one_point_over_gloo(tmp_path):
  out = tmp_path / "s.json"
  scaling.main(["--devices=2", "--processes=2", "--batch-per-device=4", *TINY, f"--json={out}"])
  [point] = json.loads(out.read_text())["points"]
  assert point["processes"] == 2 and point["devices_per_process"] == 1
  assert point["devices"] == 2 and point["global_batch"] == 8 and point["efficiency"] == 1.0
  assert point["hlo_collectives"] >= 1 and point["images_per_s"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--mode=strong", "--global-batch=6", "--devices=1,4"],
     "--global-batch=6 is not divisible by [4] devices (from --devices); strong scaling splits "
     "the global batch evenly: pick a multiple of 4."),
    (["--devices=1,0"], "--devices must be positive device counts, got '1,0'."),
    (["--devices=1,two"], "--devices must be comma-separated device counts, got '1,two'."),
    (["--devices=1,2", "--processes=2"], "device counts [1] (from --devices) are not multiples"),
    (["--repeats=0"], "--repeats must be >= 1, got 0."),
    (["--width=0"], "--width must be > 0, got 0.0."),
    (["--config=configs/missing.py"], "--config=configs/missing.py: no such file."),
])
def test_bad_arguments_fail_with_what_was_given_and_what_is_allowed(argv, message, capsys):
  with pytest.raises(SystemExit):
    scaling.main(argv)
  assert message in capsys.readouterr().err


def test_union_seconds_counts_nested_and_overlapping_intervals_once():
  # [0, 20) with [2, 5) nested and [8, 20) overlapping, then [30, 35): 20 + 5 ns.
  assert scaling.union_seconds([(8, 20), (0, 10), (2, 5), (30, 35)]) == pytest.approx(25e-9)
  assert scaling.union_seconds([]) == 0


def _plane(name, lines):
  return types.SimpleNamespace(name=name, lines=[
      types.SimpleNamespace(name=line, events=[
          types.SimpleNamespace(name=n, start_ns=s, duration_ns=d) for n, s, d in events])
      for line, events in lines.items()])


def test_collective_seconds_sums_collective_ops_per_line():
  host = _plane("/host:CPU", {
      "thread 1": [("all-reduce.1", 0, 100), ("end: all-reduce.1", 100, 0), ("dot.1", 100, 50)],
      "thread 2": [("all-reduce", 10, 40), ("reduce-scatter.2.1", 60, 10), ("fusion", 0, 9)]})
  assert scaling.collective_seconds([host])[:2] == (pytest.approx(150e-9), 3)
  # On accelerators only the device planes' "XLA Ops" lines count (not the kernel streams,
  # which repeat the same time, nor the host).
  gpu = _plane("/device:GPU:0", {
      "XLA Ops": [("all-reduce-start.3", 0, 30), ("all-reduce-done.3", 30, 5),
                  ("convolution.2", 35, 100)],
      "Stream #7": [("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 0, 30)]})
  assert scaling.collective_seconds([host, gpu])[:2] == (pytest.approx(35e-9), 2)
  # A trace without the derived "XLA Ops" line: the NCCL kernels on the device's streams.
  streams = _plane("/device:GPU:0", {
      "Stream #7": [("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 0, 30), ("gemm_kernel", 30, 9)],
      "Stream #8": [("convolution_kernel", 0, 50)]})
  busy, events, where = scaling.collective_seconds([host, streams])
  assert (busy, events) == (pytest.approx(30e-9), 1) and "NCCL" in where


def test_count_collectives_finds_collective_instructions_only():
  hlo = """
  %all-reduce = f32[8]{0} all-reduce(f32[8]{0} %x), replica_groups={}, to_apply=%add
  %ars = (f32[4]{0}, f32[4]{0}) all-reduce-start(%a, %b), to_apply=%add
  %ard = f32[4]{0} all-reduce-done(%ars)
  %fusion = f32[8]{0} fusion(%all-reduce), kind=kLoop, calls=%fused
  %ag = f32[16]{0} all-gather(%y), dimensions={0}
  """
  assert scaling.count_collectives(hlo) == 3


def test_add_efficiency_against_hand_computed_numbers():
  points = [{"mode": "weak", "devices": n, "images_per_s": x}
            for n, x in ((4, 200.0), (1, 100.0), (2, 150.0))]
  points.append({"mode": "strong", "devices": 2, "images_per_s": 90.0})
  points.append({"mode": "strong", "devices": 8, "images_per_s": 180.0})
  scaling.add_efficiency(points)
  assert [p["efficiency"] for p in points] == [0.5, 1.0, 0.75, 1.0, 0.5]
  assert [p["baseline_devices"] for p in points] == [1, 1, 1, 2, 2]
