r"""Trains one of the paper's networks with one rectifier and reports its errors per epoch.

    python train.py --config=configs/nin_cifar10.py:rrelu --workdir=runs/nin-rrelu \
        --config.num_epochs=10

The same code runs on one CPU, N local devices or N processes (`--multihost`): the step is
`jax.jit`-compiled over a `Mesh` with the batch on the "data" axis and the parameters
replicated; XLA inserts the gradient all-reduce. Notebooks call `train_and_evaluate`, which
changes nothing process-wide and trains on the devices JAX has; the command line sets those
up first (training/process.py).

This file is the loop and the command line; what the loop calls lives in training/ (the
code map, docs/architecture.md): the parts a config builds (training/builder.py), the steps
(training/steps.py), the evaluation (training/evaluation.py), where a run starts
(training/resume.py), the divergence policy (training/divergence.py) and how it finishes
(training/finish.py). What a workdir holds and guarantees (one writer, one config, records
that match the checkpoints) is training/run_directory.py's; checkpoints are
training/checkpoints.py's. A diverged run (a non-finite loss, evaluation or state) stops
before recording or saving it; `config.init_from` goes on from one of its checkpoints, in a
new workdir, under a changed config.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Mapping
from typing import Any

from absl import logging
import jax
import ml_collections

import input_pipeline
from configs import default as default_config
from configs import validation
from input_pipeline import fingerprints
from training import (builder, checkpoints, divergence, evaluation, exit_codes, finish,
                      optimizer, process, profiler, progress, provenance, records, resume,
                      run_directory, signals, supervisor, tensorboard)

# Train steps the loop dispatches ahead of the one it waits for. JAX dispatches
# asynchronously, and without a bound the loop ran up to log_every_steps steps (two programs
# each) ahead of the devices; on several CPU devices XLA then blocked launches on its
# 32-programs-per-device cap inside the thread pool that runs the devices' parts
# (training/devices.py `client_threads`). Two steps keep the next batch's transfer and
# dispatch overlapping the running step, which is all the overlap there is to have.
STEPS_IN_FLIGHT = 2


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Mapping[str, Any]:
  """Trains and evaluates `config` in `workdir`, resuming from its newest usable checkpoint
  (with none yet and config.init_from set: starting from that other run's checkpoint).

  Returns the final metrics (also written to `workdir/summary.json`). Refuses, before
  writing anything, a workdir that another process holds or that holds a run of another
  config (training/run_directory.py). Runs on the devices JAX has (config.cpu_devices is
  the command line's: training/process.py) and leaves the process as it found it.
  """
  validation.validate_config(config)
  record = records.config_record(config)
  # From the start, not only around the loop: a SIGINT while the data load, the restore or
  # a compile runs would otherwise land wherever Python is (in JAX's garbage-collection
  # hook it is ignored, and the run trained on).
  with signals.StopRequest() as stop, run_directory.RunDirectory(
      workdir, writer=jax.process_index() == 0, events=tensorboard.EventWriter) as run, \
      profiler.StepProfiler(run.file(run_directory.PROFILE), config.get("profile_steps", 0),
                            enabled=run.writer) as profile:
    run.check_config(record, records.config_record(default_config.get_config()),
                     checkpoints.recorded_config(workdir))
    if (done := run.read()).finished and done.config["num_epochs"] == config.num_epochs:
      if not (missing := finish.incomplete_artefacts(done)):
        logging.info("%s: the run already finished at step %d (epoch %d); nothing to train. "
                     "Summary: test error %.4f, test log-loss %.4f, train error %.4f (%s).",
                     workdir, done.summary[records.STEP], done.summary[records.EPOCH],
                     done.summary[records.TEST_ERROR], done.summary[records.TEST_LOSS],
                     done.summary[records.TRAIN_ERROR], run.file(run_directory.SUMMARY))
        return done.summary
      what = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
      if done.summary[records.STEP] not in checkpoints.steps_on_disk(workdir):
        # Without the final weights they cannot be rebuilt, and retraining would drop rows.
        logging.warning("%s has a summary but its %s missing or incomplete, and its final "
                        "checkpoint is gone; leaving the run as it is.", workdir, what)
        return done.summary
      logging.warning("%s has a summary but its %s missing or incomplete (the run was stopped "
                      "as it finished); writing them again from its final checkpoint.",
                      workdir, what)
    s = builder.setup(config, builder.load_data(config))
    parent = resume.from_parent(s, workdir)
    # The fingerprints of the examples it trains on, as the pipeline holds them (decoded,
    # resized): computed only when the run has none yet (0.35 s a core for 50,000 images
    # in memory; a TFDS split is read once more).
    run.start(record, s.dataset_record(), s.dataset.mean_image,
              lambda: fingerprints.of_source(s.dataset.train))
    if parent is not None:
      run.record_parent(parent[1])
    saved = checkpoints.Checkpoints(workdir, config.keep_checkpoints)
    state, epoch_metrics, data, clock = resume.initial_or_restored(s, saved,
                                                                   parent and parent[0])
    step, rng = int(state.step), jax.random.key(config.seed)
    run.resume_from(step)  # rows the checkpoint does not back are redone.
    run.record_code_version(step, provenance.code_version())

    def save(step: int) -> None:
      divergence.check_state(state, step, saved)
      saved.save(step, {"state": state, "epoch_metrics": epoch_metrics}, {
          records.ITERATOR: checkpoints.encode_iterator_state(data.get_state()),
          records.EPOCH: step / s.steps_per_epoch, records.WALL_TIME: clock.elapsed()},
                 config=record)

    if stopping := signals.agreed_stop(stop, step, every=1):  # before the first step
      saved.close()
      raise resume.stopped_before_training(stopping, step)
    line = progress.ProgressLine(s.total_steps, s.steps_per_epoch, step, run.writer)
    # The step rows' loss, from the epoch sums the loop fetches anyway (progress.py).
    interval, first_step = progress.IntervalLoss(jax.device_get(epoch_metrics)), step
    in_flight: collections.deque[Any] = collections.deque()
    while step < s.total_steps:
      state, metrics = s.parts.train_step(
          state, input_pipeline.to_device(next(data), s.data_sharding), rng, s.mean_image)
      epoch_metrics, step = s.add_metrics(epoch_metrics, metrics), step + 1
      in_flight.append(metrics)
      if len(in_flight) > STEPS_IN_FLIGHT:
        jax.block_until_ready(in_flight.popleft())
      clock.count(config.batch_size)
      logged = step % config.log_every_steps == 0
      if step == first_step + 1 and not logged:
        clock.new_interval()  # the step rows' images/s leave the compilation out
      if logged:
        sums = jax.device_get(epoch_metrics)
        divergence.check_training_sums(sums, s.steps_per_epoch, saved)
        interval.observe(sums)
        loss = interval.take()
        line.update(step, loss, clock.images_per_sec())
        run.append_step(records.step_row(
            step=step, epoch=step / s.steps_per_epoch, train_loss=loss,
            learning_rate=optimizer.learning_rate_at(s.parts.schedule, step - 1),
            images_per_sec=clock.interval_images_per_sec(), wall_time=clock.elapsed()))
      elif line.tty:
        line.update(step, None, clock.images_per_sec())
      profile.after_step(step, logged, state, last=step == s.total_steps)
      if stopping := signals.agreed_stop(stop, step, config.log_every_steps):
        line.clear()
        divergence.check_training_sums(jax.device_get(epoch_metrics), s.steps_per_epoch, saved)
        save(step)
        raise resume.stopped(stopping, step, saved)
      if step % s.steps_per_epoch:
        continue
      epoch, train_sums = step // s.steps_per_epoch, jax.device_get(epoch_metrics)
      divergence.check_training_sums(train_sums, s.steps_per_epoch, saved)
      interval.observe(train_sums)
      if epoch % config.eval_every_epochs == 0 or step == s.total_steps:
        line.clear()
        row = _evaluation_row(s, state, epoch, step, train_sums, clock)
        divergence.check_row(row, saved)
        run.append_row(row)
      epoch_metrics = s.zero_metrics()
      interval.new_epoch()
      if epoch % config.checkpoint_every_epochs == 0 or step == s.total_steps:
        save(step)
    saved.close()
    return finish.finish(run, s, state)


def _evaluation_row(s: builder.Setup, state: Any, epoch: int, step: int,
                    train_sums: dict[str, Any], clock: progress.RunClock) -> records.Row:
  images_per_sec, start = clock.images_per_sec(), clock.elapsed()
  row = records.row(
      epoch=epoch, step=step, train_error=float(train_sums["errors"] / train_sums["count"]),
      train_loss=float(train_sums["loss"] / train_sums["count"]),
      evaluation=s.evaluate(state, histograms=evaluation.wants_histograms(s.config, epoch)),
      learning_rate=optimizer.learning_rate_at(s.parts.schedule, step - 1),
      images_per_sec=images_per_sec,
      wall_time=clock.elapsed())
  clock.new_window()
  logging.info("epoch %d: train error %.4f loss %.4f | test error %.4f loss %.4f | %.1f img/s "
               "| evaluated in %.1f s", epoch, row[records.TRAIN_ERROR], row[records.TRAIN_LOSS],
               row[records.TEST_ERROR], row[records.TEST_LOSS], images_per_sec,
               row[records.WALL_TIME] - start)
  return row


# --- Command line --------------------------------------------------------------------------


# The errors a run reports in one line, exit status 1 (anything else is a bug and keeps its
# traceback; how each ending exits: training/exit_codes.py).
EXPECTED_ERRORS = (validation.ConfigError, FileNotFoundError, FloatingPointError,
                   input_pipeline.CorruptImagesError, input_pipeline.DatasetNotPreparedError,
                   run_directory.RunDirectoryError, checkpoints.NoUsableCheckpointError)


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS
  multiprocess = bool(FLAGS.multihost or FLAGS.coordinator_address
                      or os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if multiprocess and not supervisor.is_child():
    # JAX aborts a process whose peer is lost; a parent process says so in one line.
    sys.exit(supervisor.supervise(sys.argv, FLAGS.process_id, FLAGS.num_processes))
  if supervisor.is_child():
    supervisor.die_with_supervisor()
  summary = exit_codes.run(lambda: _set_up_and_train(FLAGS, multiprocess), FLAGS.workdir,
                           EXPECTED_ERRORS)
  if jax.process_index() == 0:
    print(f"final: test error {summary[records.TEST_ERROR]:.4f}, test log-loss "
          f"{summary[records.TEST_LOSS]:.4f}, train error {summary[records.TRAIN_ERROR]:.4f} "
          f"(epoch {summary[records.EPOCH]}); outputs in {FLAGS.workdir}")


def _set_up_and_train(FLAGS: Any, multiprocess: bool) -> Mapping[str, Any]:
  # Before jax.distributed or anything else creates a backend.
  process.configure(validation.check_cpu_devices(FLAGS.config))
  if multiprocess:
    process.initialize_distributed(FLAGS.coordinator_address or None, FLAGS.num_processes,
                                   FLAGS.process_id, FLAGS.heartbeat_timeout_s)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  return train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "A configs/*.py file, optionally :rectifier.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (cluster "
                    "auto-detection, or the flags below); implied by --coordinator_address "
                    "or the JAX_COORDINATOR_ADDRESS environment variable.")
  flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for --multihost.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, for --multihost.")
  flags.DEFINE_integer("process_id", None, "This process's index, for --multihost.")
  flags.DEFINE_integer("heartbeat_timeout_s", 100, "For --multihost: seconds without a "
                       "heartbeat after which a process counts as lost and the others stop.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
