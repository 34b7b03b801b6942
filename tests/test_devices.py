"""training/devices.py: CPU device counts, their XLA flags, and the mesh the batch divides."""

import jax
import pytest

from training import devices


def test_cpu_device_count_is_one_per_usable_core_by_default():
  assert devices.cpu_device_count(0) == devices.usable_cores() >= 1
  assert devices.cpu_device_count(3) == 3
  with pytest.raises(ValueError, match="cpu_devices must be >= 0"):
    devices.cpu_device_count(-1)


def test_single_thread_flags_keep_the_runtime_pool_for_several_devices():
  assert devices.single_thread_xla_flags(1) == (
      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  # Several devices' collectives need the runtime's threads (a rendezvous deadlocks on one).
  assert devices.single_thread_xla_flags(4) == "--xla_cpu_multi_thread_eigen=false"


class FakeDevice:
  def __init__(self, i):
    self.id = i


@pytest.mark.parametrize("count,batch_sizes,used", [
    (4, (8, 120), 4), (4, (6, 6), 3), (4, (7,), 1), (2, (8, 12), 2), (1, (5,), 1)])
def test_mesh_devices_are_the_most_that_divide_every_batch(count, batch_sizes, used, caplog):
  available = [FakeDevice(i) for i in range(count)]
  chosen = devices.mesh_devices(available, batch_sizes)
  assert chosen == available[:used]
  assert ("do not divide over" in caplog.text) == (used < count)


def test_mesh_devices_keep_every_device_with_several_processes(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  available = [FakeDevice(i) for i in range(4)]
  assert devices.mesh_devices(available, (6,)) == available
