"""A full disk is found however it is wrapped, and said in one message (training/disk_space.py)."""

import errno
import os

from training import disk_space, run_directory

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a/metrics.jsonl")


def _raised(error, wrapper):
  try:
    try:
      raise error
    except OSError as e:
      raise wrapper from e
  except Exception as e:  # pylint: disable=broad-except
    return e


def test_a_full_disk_is_found_as_the_cause_the_context_or_only_the_text():
  assert disk_space.full_disk_error(_raised(ENOSPC, RuntimeError("save failed"))) is ENOSPC
  quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
  assert disk_space.full_disk_error(ExceptionGroup("writes", [ValueError(), quota])) is quota
  orbax = ValueError("RESOURCE_EXHAUSTED: Failed to write: No space left on device [os_error=28]")
  assert disk_space.full_disk_error(orbax) is orbax
  assert disk_space.full_disk_error(OSError(errno.EACCES, "Permission denied")) is None
  assert disk_space.full_disk_error(ValueError("no space here")) is None


def test_the_message_names_the_directory_the_file_the_free_space_and_a_checkpoints_size(tmp_path):
  step = tmp_path / run_directory.CHECKPOINTS / "6"
  step.mkdir(parents=True)
  (step / "state").write_bytes(b"x" * 3000)
  message = disk_space.message(ENOSPC, str(tmp_path))
  assert message.startswith(f"No space left on the disk of {tmp_path} (writing "
                            "/runs/a/metrics.jsonl): ")
  assert "free there now; a checkpoint of this run takes 2.9 KB. Free space there" in message
  assert "rerun the same command" in message
  quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
  assert disk_space.message(quota, str(tmp_path / "new" / "run")).startswith(
      f"Over the disk quota of {tmp_path}/new/run: ")


def test_a_command_that_only_reads_the_run_says_what_it_did_not_write_and_nothing_of_resuming(
    tmp_path):
  step = tmp_path / run_directory.CHECKPOINTS / "6"
  step.mkdir(parents=True)
  (step / "state").write_bytes(b"x" * 3000)
  evaluation = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                       str(tmp_path / run_directory.EVALUATIONS / "x.json"))
  message = disk_space.message(evaluation, str(tmp_path), unwritten="The evaluation")
  assert message.startswith(f"No space left on the disk of {tmp_path} (writing "
                            f"{tmp_path}/evaluations/x.json): ")
  assert message.endswith("free there now. The evaluation was not written, and the run's "
                          "record is untouched. Free space there (or raise the quota) and "
                          "rerun the same command.")
  assert "checkpoint" not in message and "resume" not in message
