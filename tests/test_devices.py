"""training/devices.py: CPU device counts, their XLA flags, and the mesh the batch divides."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from tests.helpers import REPO
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


def test_client_threads_leave_the_last_device_a_thread_when_the_others_wait_on_two():
  assert devices.client_threads(2) == max(devices.usable_cores(), 3)
  assert devices.client_threads(8) == max(devices.usable_cores(), 15)


def test_a_forced_device_count_gets_the_client_threads(monkeypatch):
  monkeypatch.setattr(os, "environ", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  devices.configure_cpu_devices(0)
  assert os.environ["PJRT_NPROC"] == str(devices.client_threads(4))


def test_an_explicit_thread_count_wins(monkeypatch):
  monkeypatch.setattr(os, "environ", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                      "PJRT_NPROC": "7"})
  devices.configure_cpu_devices(0)
  assert os.environ["PJRT_NPROC"] == "7"


def test_several_cpu_devices_start_xla_with_the_client_threads():
  # XLA reads PJRT_NPROC once, when JAX creates its CPU backend: count the pool it made.
  code = textwrap.dedent("""
      import os
      from training import process
      process.configure(cpu_devices=2)
      import jax
      jax.numpy.ones(2).block_until_ready()
      names = [open(f"/proc/self/task/{t}/comm").read().strip()
               for t in os.listdir("/proc/self/task")]
      print(len(jax.devices()), sum("XLAEigen" in n for n in names))
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=300, check=True).stdout.split()
  assert out == ["2", str(devices.client_threads(2))]
