"""training/checkpoints.py on tiny pytrees: save, digests, restore with fallback, loading."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import REPO
from training import checkpoints, run_directory


def state(value: float) -> dict:
  return {"params": {"w": jnp.full((2, 3), value, jnp.float32)}, "step": jnp.int32(value)}


def saved(workdir, steps=(1, 2), keep=3) -> checkpoints.Checkpoints:
  ckpt = checkpoints.Checkpoints(str(workdir), keep=keep)
  for step in steps:
    ckpt.save(step, state(step), {"epoch": step / 2})
  return ckpt


def step_dir(workdir, step) -> str:
  return os.path.join(workdir, run_directory.CHECKPOINTS, str(step))


def a_data_file(directory) -> str:
  """The largest file of a checkpoint other than its digest (an array file)."""
  files = [os.path.join(r, n) for r, _, ns in os.walk(directory) for n in ns
           if n != checkpoints.DIGEST]
  return max(files, key=os.path.getsize)


def test_save_writes_a_digest_that_verifies_and_restore_takes_the_newest(tmp_path):
  ckpt = saved(tmp_path)
  assert ckpt.steps() == [1, 2] and ckpt.latest_step() == 2
  assert checkpoints.verify(step_dir(tmp_path, 2)) is None
  restored = ckpt.restore(state(0))
  assert restored.step == 2 and restored.extra == {"epoch": 1.0}
  np.testing.assert_array_equal(restored.state["params"]["w"], np.full((2, 3), 2.0))
  ckpt.close()


def test_keep_drops_the_oldest(tmp_path):
  ckpt = saved(tmp_path, steps=(1, 2, 3), keep=2)
  assert ckpt.steps() == [2, 3]
  ckpt.close()


def test_restore_without_checkpoints_is_none(tmp_path):
  ckpt = checkpoints.Checkpoints(str(tmp_path), keep=1)
  assert ckpt.restore(state(0)) is None and ckpt.latest_step() is None
  ckpt.close()


def test_verify_names_a_changed_a_missing_and_an_unlisted_file(tmp_path):
  saved(tmp_path, steps=(1,)).close()
  directory = step_dir(tmp_path, 1)
  data = a_data_file(directory)
  with open(data, "r+b") as f:
    first = f.read(1)
    f.seek(0)
    f.write(bytes([first[0] ^ 0xFF]))
  assert "does not match its SHA-256 digest" in checkpoints.verify(directory)
  os.remove(data)
  assert "is missing" in checkpoints.verify(directory)
  with open(os.path.join(directory, "stray"), "w") as f:
    f.write("x")
  digest = json.load(open(os.path.join(directory, checkpoints.DIGEST)))
  digest.pop(os.path.relpath(data, directory))
  run_directory.write_json(os.path.join(directory, checkpoints.DIGEST), digest)
  assert "stray is not in its digest" in checkpoints.verify(directory)
  with open(os.path.join(directory, checkpoints.DIGEST), "w") as f:
    f.write("{")
  assert "digest file is unreadable" in checkpoints.verify(directory)
  os.remove(os.path.join(directory, checkpoints.DIGEST))
  assert "its save was cut off before the digest" in checkpoints.verify(directory)


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_restored(tmp_path):
  ckpt = saved(tmp_path)
  with open(a_data_file(step_dir(tmp_path, 2)), "ab") as f:
    f.write(b"\0")
  restored = ckpt.restore(state(0))
  assert restored.step == 1
  assert ckpt.steps() == [1]
  aside = tmp_path / run_directory.UNUSABLE
  assert (aside / "2").is_dir()
  assert "SHA-256" in (aside / "2.reason.txt").read_text()
  ckpt.close()


def test_every_checkpoint_damaged_raises_and_keeps_them_aside(tmp_path):
  ckpt = saved(tmp_path)
  for step in (1, 2):
    os.remove(os.path.join(step_dir(tmp_path, step), checkpoints.DIGEST))
  # A run with a digest nowhere counts as written before digests: it restores, unchecked.
  assert ckpt.restore(state(0)).step == 2
  run_directory.write_json(os.path.join(step_dir(tmp_path, 1), checkpoints.DIGEST), {})
  with pytest.raises(checkpoints.NoUsableCheckpointError, match="step 2 .*step 1"):
    ckpt.restore(state(0))
  assert sorted(os.listdir(tmp_path / run_directory.UNUSABLE)) == [
      "1", "1.reason.txt", "2", "2.reason.txt"]
  ckpt.close()


def test_a_checkpoint_cut_off_before_its_digest_is_told_apart_from_one_before_digests(
    tmp_path, caplog):
  ckpt = saved(tmp_path, steps=(1,))
  os.remove(os.path.join(step_dir(tmp_path, 1), checkpoints.DIGEST))
  provenance = os.path.join(tmp_path, run_directory.PROVENANCE)
  # An older run resumed by this code: its history begins where it resumed.
  run_directory.write_json(provenance, {"code_versions": [{"from_step": 1}]})
  with caplog.at_level(logging.WARNING):
    assert ckpt.restore(state(0)).step == 1
  assert "the run was started before checkpoints had digests" in caplog.text
  caplog.clear()
  # A run this code started (history from step 0): orbax finished the save, the digest was
  # cut off. The only checkpoint is still used, and the warning says so.
  run_directory.write_json(provenance, {"code_versions": [{"from_step": 0}]})
  with caplog.at_level(logging.WARNING):
    assert ckpt.restore(state(0)).step == 1
  assert "cut off after orbax finished it, before its digest was written" in caplog.text
  ckpt.close()


NO_USABLE_CHECKPOINT = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from training import checkpoints, run_directory
    ckpt = checkpoints.Checkpoints(sys.argv[1], keep=2)
    ckpt.save(1, {"w": jnp.ones(3)}, {})
    run_directory.write_json(sys.argv[1] + "/checkpoints/1/sha256.json", {})
    try:
      checkpoints.Checkpoints(sys.argv[1], keep=2).restore({"w": jnp.ones(3)})
    except checkpoints.NoUsableCheckpointError as e:
      sys.exit(str(e))
""")


def test_no_usable_checkpoint_ends_with_its_message_and_no_shutdown_noise(tmp_path):
  done = subprocess.run([sys.executable, "-c", NO_USABLE_CHECKPOINT, str(tmp_path)], cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1].startswith("No usable checkpoint in ")
  assert "Traceback" not in done.stderr, done.stderr


def test_load_checkpoint_gives_plain_arrays_and_refuses_a_damaged_one(tmp_path):
  saved(tmp_path).close()
  loaded = checkpoints.load_checkpoint(str(tmp_path))
  assert loaded["step"] == 2 and loaded["extra"] == {"epoch": 1.0}
  np.testing.assert_array_equal(loaded["params"]["w"], np.full((2, 3), 2.0))
  assert checkpoints.load_checkpoint(str(tmp_path), step=1)["step"] == 1
  with open(a_data_file(step_dir(tmp_path, 2)), "ab") as f:
    f.write(b"\0")
  with pytest.raises(checkpoints.NoUsableCheckpointError, match="step 2 .* is damaged"):
    checkpoints.load_checkpoint(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    checkpoints.load_checkpoint(str(tmp_path / "none"))


@pytest.mark.parametrize("iterator_state", [{"next_index": 7}, b"\x00\x01grain"])
def test_iterator_states_round_trip_through_json(iterator_state):
  encoded = checkpoints.encode_iterator_state(iterator_state)
  assert checkpoints.decode_iterator_state(json.loads(json.dumps(encoded))) == iterator_state
