"""Where a run starts: its own newest usable checkpoint, else the checkpoint another run's
`config.init_from` names (checked against this run first), else fresh; and the message of
a run stopped by a signal (it resumes from the checkpoint it saved)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from absl import logging
import jax

from configs import default as default_config
from configs import validation
from training import builder, checkpoints, divergence, progress, records, run_directory, signals
from training.steps import TrainState


def from_parent(s: builder.Setup, workdir: str
                ) -> tuple[checkpoints.Restored, records.ParentRecord] | None:
  """The checkpoint config.init_from names, restored, and its record (parent.json), for a
  run that has no checkpoint of its own yet (None otherwise). Checked before anything is
  written: another run's, with this run's data and batches, finite, before the end. The
  parent is read under its shared lock: never while it trains."""
  config = s.config
  if not (spec := validation.init_from(config)) or checkpoints.steps_on_disk(workdir):
    return None
  path, step = spec
  where = f"config.init_from={config.init_from!r}"
  if os.path.abspath(path) == os.path.abspath(workdir):
    raise validation.ConfigError(f"{where} names this run's own workdir: a run goes on from "
                                 "another run's checkpoint, into a new workdir.")
  if not os.path.isdir(path):
    raise validation.ConfigError(f"{where}: there is no directory {path}.")
  if step is None and os.path.exists(pinned := os.path.join(workdir, run_directory.PARENT)):
    step = run_directory.read_json(pinned)[records.STEP]  # the step this run first started from
  defaults = records.config_record(default_config.get_config())
  lock = (run_directory.DirectoryLock(
      path, shared=True, reader="a training that starts from its checkpoint (config.init_from)")
          if jax.process_index() == 0 else contextlib.nullcontext())
  with lock:
    parent = run_directory.read_run(path)
    if not parent.config:
      raise validation.ConfigError(f"{where}: {path} holds no {run_directory.CONFIG}; it is "
                                   "not a run directory.")
    data = run_directory.json_values(s.dataset_record())
    differ = sorted(k for k in set(parent.dataset) | set(data)
                    if parent.dataset.get(k) != data.get(k))
    differ += [f"config.{k}" for k in ("batch_size", "steps_per_epoch")
               if parent.config.get(k, defaults[k]) != config[k]]
    if differ:
      raise validation.ConfigError(
          f"{where}: the parent trained on other data or batches ({', '.join(differ)} differ "
          f"from {os.path.join(path, run_directory.DATASET)} and its config): a run goes on "
          "from a checkpoint only with the parent's data, batch size and epoch length.")
    target = {"state": s.parts.init(jax.random.key(config.seed)),
              "epoch_metrics": s.zero_metrics()}
    try:
      restored = checkpoints.restore_from_run(path, step, target)
    except (FileNotFoundError, checkpoints.NoUsableCheckpointError) as e:
      raise validation.ConfigError(f"{where}: {e}") from None
  if not bool(divergence.all_finite(restored.state)):
    raise validation.ConfigError(f"{where}: the checkpoint at step {restored.step} holds "
                                 "non-finite numbers; choose an earlier step.")
  if restored.step >= s.total_steps:
    raise validation.ConfigError(
        f"{where}: the checkpoint is at step {restored.step}, this config ends at step "
        f"{s.total_steps} (epoch {config.num_epochs}); raise config.num_epochs.")
  changed = {key: [old, new] for key, old, new in run_directory.config_differences(
      parent.config, records.config_record(config), defaults) if key != "init_from"}
  # Relative to this run: a study moved or copied whole keeps the link to its parent.
  relative = os.path.relpath(os.path.abspath(path), os.path.abspath(workdir))
  return restored, records.ParentRecord(workdir=relative, step=restored.step,
                                        epoch=restored.step / s.steps_per_epoch, changed=changed)


def initial_or_restored(s: builder.Setup, saved: checkpoints.Checkpoints,
                        parent: checkpoints.Restored | None = None
                        ) -> tuple[TrainState, dict[str, jax.Array], Any, progress.RunClock]:
  """(train state, the epoch's running metrics, the data iterator, the run's clock), from
  the newest usable checkpoint, else from `parent` (config.init_from's checkpoint), else
  fresh."""
  state, epoch_metrics, data = s.parts.init(jax.random.key(s.config.seed)), s.zero_metrics(), \
      s.train_iterator()
  elapsed = 0.0
  own = saved.restore({"state": state, "epoch_metrics": epoch_metrics})
  if restored := own or parent:
    state, epoch_metrics = restored.state["state"], restored.state["epoch_metrics"]
    data.set_state(checkpoints.decode_iterator_state(restored.extra[records.ITERATOR]))
    elapsed = restored.extra.get(records.WALL_TIME, 0.0)
    if own:
      logging.info("Resumed from the checkpoint at step %d of %s.", restored.step, saved.workdir)
    else:
      logging.info("Starting from the checkpoint at step %d of %s (config.init_from).",
                   restored.step, s.config.init_from)
  logging.info("%s with %s: %d parameters; %d %s devices in %d processes; %d steps per epoch.",
               s.config.model, s.config.rectifier, s.num_params, s.num_devices,
               jax.default_backend(), jax.process_count(), s.steps_per_epoch)
  return state, epoch_metrics, data, progress.RunClock(elapsed)


def stopped(stopping: tuple[int, list[int]], step: int,
            saved: checkpoints.Checkpoints) -> signals.Stopped:
  """The error that ends a run stopped by a signal at `step`, after its checkpoint."""
  signum, asked = stopping
  who = f" (received by process {asked})" if jax.process_count() > 1 else ""
  return signals.Stopped(f"Stopped by {signal.Signals(signum).name}{who} at step {step}; saved "
                         f"a checkpoint in {saved.directory}. Rerun the same command to resume.",
                         signum)


def stopped_before_training(stopping: tuple[int, list[int]], step: int) -> signals.Stopped:
  """The error that ends a run stopped by a signal before its first step (while it loaded
  the data, restored or compiled): nothing was trained, so no checkpoint is written."""
  signum, asked = stopping
  who = f" (received by process {asked})" if jax.process_count() > 1 else ""
  return signals.Stopped(f"Stopped by {signal.Signals(signum).name}{who} before training "
                         f"{'began' if step == 0 else f'went on from step {step}'}: nothing "
                         "was trained and no checkpoint was written. Rerun the same command "
                         "to train.", signum, saved=False)
