"""A run's checkpoints: orbax saves with SHA-256 digests, and restores that fall back.

Each checkpoint `WORKDIR/checkpoints/<step>/` holds two orbax items, "state" (the train
state and the epoch's running metrics, as arrays) and "extra" (JSON: the data iterator's
position, the epoch, the run's wall time so far), `config.json`, a copy of the run's config
record as it was trained (so that a hand-edited WORKDIR/config.json is noticed:
`recorded_config`), and `sha256.json`, the digest of every other file in it, written once
the save has finished. Saves are synchronous: when `save` returns, the checkpoint and its
digest are on disk.

Restoring tries the newest checkpoint first. One that fails to restore, or whose files do
not match their digests, is moved to `WORKDIR/checkpoints.unusable/<step>` (never
deleted) with the reason logged, and the next newest is tried. A flipped byte in an array
file restores without any error from orbax; the digest is what catches it. A checkpoint
without a digest counts as unfinished (its save was cut off before the digest was
written), unless no checkpoint of the run has one: then it is restored without the check,
with a warning that says why there is none. Either the run was started before digests
existed (its provenance.json, which came later, is missing or begins at the step this code
resumed it from), or its only checkpoints were cut off after orbax finished them and
before their digests were written (its history begins at step 0).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from training import provenance, run_directory

DIGEST, CONFIG = "sha256.json", "config.json"


class NoUsableCheckpointError(RuntimeError):
  """Every checkpoint of a run failed to restore (each was moved aside)."""


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: Any          # the pytree given as `target`, restored.
  extra: dict[str, Any]


def encode_iterator_state(state: Any) -> Any:
  """grain's iterator state as JSON (bytes, from worker processes, as base64)."""
  if isinstance(state, bytes):
    return {"__bytes__": base64.b64encode(state).decode("ascii")}
  return state


def decode_iterator_state(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {"__bytes__"}:
    return base64.b64decode(state["__bytes__"])
  return state


def _digests(step_dir: str) -> dict[str, str]:
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel == DIGEST:
        continue
      with open(path, "rb") as f:
        out[rel] = hashlib.file_digest(f, "sha256").hexdigest()
  return dict(sorted(out.items()))


def verify(step_dir: str) -> str | None:
  """None if every file of the checkpoint matches its recorded digest, else the reason."""
  path = os.path.join(step_dir, DIGEST)
  if not os.path.exists(path):
    return f"it has no {DIGEST}: its save was cut off before the digest was written"
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    return f"its digest file is unreadable ({type(e).__name__})"
  actual = _digests(step_dir)
  for name in sorted(set(recorded) | set(actual)):
    if name not in actual:
      return f"{name} is missing"
    if name not in recorded:
      return f"{name} is not in its digest"
    if recorded[name] != actual[name]:
      return f"{name} does not match its SHA-256 digest"
  return None


def _started_with_digests(workdir: str) -> bool:
  """Whether the run in `workdir` was started by code that writes digests: its code-version
  history (provenance.json, which came after the digests) begins at step 0."""
  history = run_directory.read_code_versions(workdir)
  return bool(history) and history[0].get(provenance.FROM_STEP) == 0


class Checkpoints:
  """Saves and restores one run's checkpoints under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, run_directory.CHECKPOINTS))
    self.keep = keep
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "extra"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=True))
    # orbax removes cut-off saves in a thread that only its `save` waits for; a run that
    # stops before saving (no usable checkpoint) would exit under that thread and print
    # its shutdown tracebacks after the run's own message. (A private method: without it,
    # the thread is left to finish on its own.)
    getattr(self._manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, extra: dict[str, Any],
           config: Mapping[str, Any] | None = None) -> None:
    """Saves and waits; then process 0 writes the copy of `config` (the run's config
    record) and the digest (the checkpoint is complete)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)), force=True)
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      step_dir = os.path.join(self.directory, str(step))
      if config is not None:
        run_directory.write_json(os.path.join(step_dir, CONFIG), dict(config))
      run_directory.write_json(os.path.join(step_dir, DIGEST), _digests(step_dir))

  def restore(self, target: Any) -> Restored | None:
    """The newest checkpoint that restores into `target`'s structure (shapes, dtypes and
    shardings from its leaves); None when the run has no checkpoint."""
    steps = self.steps()
    if not steps:
      return None
    unchecked = not any(os.path.exists(os.path.join(self.directory, str(s), DIGEST))
                        for s in steps)
    why = ("" if not unchecked else
           "its save was cut off after orbax finished it, before its digest was written"
           if _started_with_digests(self.workdir) else
           "the run was started before checkpoints had digests")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    failures = []
    for step in reversed(steps):
      step_dir = os.path.join(self.directory, str(step))
      reason = None if unchecked else verify(step_dir)
      if reason is None:
        try:
          restored = self._manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
          if unchecked:
            logging.warning("Restored the checkpoint at step %d of %s without a digest "
                            "check (%s).", step, self.workdir, why)
          return Restored(step, restored.state, dict(restored.extra))
        except Exception as e:  # pylint: disable=broad-except
          # orbax and TensorStore raise many types for damaged files; any of them means
          # this checkpoint cannot be used, and the next one may be.
          reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      failures.append(f"step {step} ({reason})")
      self._move_aside(step, reason)
    raise NoUsableCheckpointError(
        f"No usable checkpoint in {self.directory}: " + "; ".join(failures) + ". They were "
        f"moved to {os.path.join(self.workdir, run_directory.UNUSABLE)}. Start the run in a "
        "new workdir (or move the run's metrics.jsonl aside too and rerun to start over).")

  def _move_aside(self, step: int, reason: str) -> None:
    logging.warning("The checkpoint at step %d of %s is unusable: %s. Moving it to %s and "
                    "trying the next newest.", step, self.workdir, reason, run_directory.UNUSABLE)
    if jax.process_index() == 0:
      aside = os.path.join(self.workdir, run_directory.UNUSABLE)
      os.makedirs(aside, exist_ok=True)
      target, n = os.path.join(aside, str(step)), 1
      while os.path.exists(target):
        target, n = os.path.join(aside, f"{step}.{n}"), n + 1
      shutil.move(os.path.join(self.directory, str(step)), target)
      with open(target + ".reason.txt", "w") as f:
        f.write(reason + "\n")
    self._manager.reload()  # orbax caches the list of steps (reopening would clean up again).

  def close(self) -> None:
    self._manager.close()


def steps_on_disk(workdir: str) -> list[int]:
  """The steps of `workdir`'s checkpoint directories, oldest first, read without orbax
  (nothing is created)."""
  directory = os.path.join(workdir, run_directory.CHECKPOINTS)
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit()) \
      if os.path.isdir(directory) else []


def recorded_config(workdir: str) -> tuple[int, dict[str, Any]] | None:
  """(step, config record) of the newest checkpoint of `workdir` that kept a readable copy
  of the run's config; None when none did (no checkpoint, or checkpoints written before
  they kept one). Reads files only: nothing is created, orbax is not involved."""
  directory = os.path.join(workdir, run_directory.CHECKPOINTS)
  for step in reversed(steps_on_disk(workdir)):
    try:
      config = run_directory.read_json(os.path.join(directory, str(step), CONFIG))
    except (OSError, ValueError):  # none (an older checkpoint), or cut off mid-save
      continue
    if isinstance(config, dict):
      return step, config
  return None


def restore_from_run(workdir: str, step: int | None, target: Any) -> Restored:
  """Another run's checkpoint at `step` (None: its newest) restored into `target`'s
  structure, read only (nothing in `workdir` is written), its digest checked: where a run
  with config.init_from starts. FileNotFoundError when there is no such checkpoint,
  NoUsableCheckpointError when it is damaged or does not fit `target`."""
  directory = os.path.abspath(os.path.join(workdir, run_directory.CHECKPOINTS))
  steps = steps_on_disk(workdir)
  if not steps:
    raise FileNotFoundError(f"No checkpoint in {directory}.")
  # As `restore`: a checkpoint without its digest is unfinished, unless none has one.
  finished = [s for s in steps if os.path.exists(os.path.join(directory, str(s), DIGEST))]
  step = (finished or steps)[-1] if step is None else step
  if step not in steps:
    raise FileNotFoundError(f"No checkpoint at step {step} in {directory}; its steps: {steps}.")
  if finished and (reason := verify(os.path.join(directory, str(step)))) is not None:
    raise NoUsableCheckpointError(f"The checkpoint at step {step} of {workdir} is unusable: "
                                  f"{reason}.")
  handlers = {"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  with ocp.CheckpointManager(directory, item_handlers=handlers,
                             options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      # A tree or shapes that differ, or damaged files: orbax raises many types.
      raise NoUsableCheckpointError(
          f"The checkpoint at step {step} of {workdir} does not restore into this config's "
          f"train state ({type(e).__name__}: {str(e).splitlines()[0][:300]}): the network, "
          "its options and the optimiser's state must be the parent's.") from None
  return Restored(step, restored.state, dict(restored.extra))


def load_checkpoint(workdir: str, step: int | None = None) -> dict[str, Any]:
  """A run's checkpoint (the latest, or `step`) as nested dicts of arrays on this host's
  first device, whatever topology saved it; for notebooks:
  `load_checkpoint(workdir)["state"]["params"]`. Checks the digest when there is one."""
  directory = os.path.abspath(os.path.join(workdir, run_directory.CHECKPOINTS))
  handlers = {"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(directory, item_handlers=handlers,
                             options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    step_dir = os.path.join(directory, str(step))
    if os.path.exists(os.path.join(step_dir, DIGEST)) and (reason := verify(step_dir)):
      raise NoUsableCheckpointError(f"The checkpoint at step {step} of {workdir} is "
                                    f"damaged: {reason}.")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            manager.item_metadata(step).state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
  return {**restored.state, "extra": restored.extra, "step": step}
