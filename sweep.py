r"""The paper's comparison in one command: rectifier settings x seeds, one run directory each.

    python sweep.py --config=configs/nin_cifar10.py --seeds=3 --workdir=runs/cifar10
    python sweep.py --config=configs/cifar10_mini.py --seeds=3 --parallel=2 \
        --workdir=runs/cifar10-mini --config.num_epochs=40

Runs live in `WORKDIR/<setting>/seed<k>`, each a run directory of train.py
(training/run_directory.py). A finished run is skipped, any other is (re)started and
resumes from its checkpoint. `--config.KEY=VALUE` overrides apply to every run; the
rectifier and the seed are set per run. At the end `report.py` writes results.md,
curves.png and rectifiers.png into WORKDIR (also runnable alone over existing runs).

The rules:
- **One config.** `WORKDIR/sweep.json` records the base config; a later sweep in the same
  WORKDIR may add settings and seeds, and change only what train.py lets a rerun change
  (run_directory.NEUTRAL_KEYS). Anything else is refused before any run starts.
- **One sweep per WORKDIR** at a time (an OS lock on `WORKDIR/.lock`); each training also
  holds its own run's lock.
- **Failures**: a run that raises or exits non-zero is recorded; the others still run,
  the report covers the finished ones, and the sweep exits 1 naming each failed run.
- **Signals**: SIGINT or SIGTERM stops the sweep, from its start (while it plans its runs
  or reports: at once, with one line and exit 128 + the signal). The running trainings
  (in this process, or `--parallel` subprocesses, which get the signal forwarded) save a
  checkpoint and stop; the sweep waits for them and exits 128 + the signal number with
  one line. Rerun the same command to resume. Subprocesses also stop if the sweep itself
  is killed.

Placement. `--parallel=1` (the default) trains one run at a time in this process, on every
device (every GPU, or one CPU device per core). `--parallel=K` runs K trainings at once as
subprocesses, each on its own `--devices_per_run=D` devices: on a machine with NVIDIA GPUs
run i sees GPUs iD..iD+D-1 (CUDA_VISIBLE_DEVICES); on CPU it is pinned to cores iD..iD+D-1
(taskset) with D single-threaded XLA devices (still D, unpinned, where K x D exceeds the
cores and the runs share them). Many small runs go faster side by side than one
after another on all devices: on the shared 2-core development machine (NIN at width 0.125,
batch 32, benchmarks/train_step_bench.py, two rounds) two single-threaded processes, one per
core, trained 1,325 and 1,370 images/s in total, one process using both cores 392 and 725.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import logging
import ml_collections

from rectifiers import linen as rectifiers_linen
from configs import default as default_config
from configs import validation
from training import (devices, disk_space, exit_codes, process, progress, records,
                      run_directory, signals)

_HERE = os.path.dirname(os.path.abspath(__file__))
SWEEP_RECORD = run_directory.SWEEP
STOP_TIMEOUT_S = 600  # how long a stopping training may take to save before it is killed.


@dataclasses.dataclass(frozen=True)
class Run:
  """One (setting, seed) cell of the sweep."""
  setting: str
  seed: int
  workdir: str


class SweepStopped(exit_codes.SignalStop):
  """A signal stopped the sweep; the runs it interrupted saved checkpoints (or stopped
  before their first step). `python sweep.py` exits 128 + the signal."""


run_dir = run_directory.sweep_run_path


def parse_seeds(text: str) -> list[int]:
  """'3' -> [0, 1, 2]; '0,4,7' -> [0, 4, 7]."""
  text = text.strip()
  try:
    if "," in text:
      seeds = [int(s) for s in text.split(",") if s.strip()]
    else:
      seeds = list(range(int(text)))
  except ValueError:
    raise ValueError(f"--seeds must be a count ('3') or a comma-separated list ('0,1,2'), "
                     f"got {text!r}.") from None
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f"--seeds must name at least one seed, non-negative and without "
                     f"repeats; got {text!r}.")
  return seeds


def parse_settings(text: str) -> list[str]:
  """Splits at the commas outside parentheses: 'relu,rrelu(lower=5, upper=10)' gives
  ['relu', 'rrelu(lower=5, upper=10)']."""
  settings, depth, current = [], 0, ""
  for char in text:
    depth += {"(": 1, ")": -1}.get(char, 0)
    if depth < 0:
      raise ValueError(f"--settings has an unmatched ')': {text!r}.")
    if char == "," and depth == 0:
      settings.append(current.strip())
      current = ""
    else:
      current += char
  if depth:
    raise ValueError(f"--settings has an unmatched '(': {text!r}.")
  settings = [s for s in settings + [current.strip()] if s]
  if not settings or len(set(settings)) != len(settings):
    raise ValueError(f"--settings must name at least one rectifier, without repeats; got "
                     f"{text!r}.")
  return settings


def run_config(config: ml_collections.ConfigDict, setting: str,
               seed: int) -> ml_collections.ConfigDict:
  """The base config with this run's rectifier and seed."""
  config = ml_collections.ConfigDict(config.to_dict())  # an unlocked deep copy.
  config.rectifier = setting
  config.seed = seed
  return config


def plan(config: ml_collections.ConfigDict, workdir: str, settings: Sequence[str],
         seeds: Sequence[int]) -> tuple[list[Run], list[Run]]:
  """Splits the sweep into (to_run, finished), refusing runs started with another config
  (training/run_directory.py's rule, as a training would). Seed-major order: every
  setting's seed 0 first, so that an interrupted sweep already holds complete comparisons."""
  for setting in settings:
    rectifiers_linen.rectifier_factory(setting)  # a clear error for a typo, before any run.
  defaults = records.config_record(default_config.get_config())
  to_run: list[Run] = []
  finished: list[Run] = []
  for seed in seeds:
    for setting in settings:
      run = Run(setting, seed, run_dir(workdir, setting, seed))
      cfg = run_config(config, setting, seed)
      run_directory.RunDirectory(run.workdir, writer=False).check_config(
          records.config_record(cfg), defaults)
      record = run_directory.read_run(run.workdir)
      done = record.finished and record.config.get("num_epochs") == cfg.num_epochs
      (finished if done else to_run).append(run)
  return to_run, finished


def _record_sweep(config: ml_collections.ConfigDict, workdir: str, settings: Sequence[str],
                  seeds: Sequence[int], parallel: int, devices_per_run: int) -> None:
  """Adds this invocation to WORKDIR/sweep.json after checking the base config against the
  recorded one (the rectifier and seed of the base config do not matter)."""
  path = os.path.join(workdir, SWEEP_RECORD)
  base = {**records.config_record(config), records.RECTIFIER: None, records.SEED: None}
  record = run_directory.read_json(path) if os.path.exists(path) else {"invocations": []}
  if "config" in record:
    run_directory.check_resumable(
        record["config"], base, records.config_record(default_config.get_config()),
        reached_epoch=0, where=workdir)
  record["config"] = base
  record["invocations"].append({
      "settings": list(settings), "seeds": list(seeds), "parallel": parallel,
      "devices_per_run": devices_per_run,
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
  run_directory.write_json(path, record)


def run_sweep(config: ml_collections.ConfigDict, workdir: str,
              settings: Sequence[str] = rectifiers_linen.PAPER_SETTINGS,
              seeds: Sequence[int] = (0, 1, 2), parallel: int = 1, devices_per_run: int = 1,
              report: bool = True) -> dict[tuple[str, int], records.Summary]:
  """Trains every (setting, seed) not yet finished, then writes the report.

  Args:
    config: the base config (its rectifier and seed are replaced per run).
    workdir: the sweep's directory; runs go to `workdir/<setting>/seed<k>`.
    settings: rectifier specs, e.g. `rectifiers.linen.PAPER_SETTINGS`.
    seeds: the seeds; seed k of every setting forms one pair for the paired statistics.
    parallel: 1 trains in this process on the devices JAX has (`python sweep.py` sets up
      config.cpu_devices first; training/process.py); K > 1 runs K `sweep.py --run_one`
      subprocesses at a time, each on its own devices.
    devices_per_run: with parallel > 1, the GPUs (or CPU cores) each run gets.
    report: write results.md and the figures at the end.

  Returns:
    {(setting, seed): summary} for every run of the sweep, finished before or now.

  Raises:
    RuntimeError: some runs failed (the others still ran; their errors are listed).
    SweepStopped: a signal stopped the sweep (running trainings saved checkpoints).
    ValueError, run_directory.RunDirectoryError: before any run, for bad arguments, a
      WORKDIR in use, or a config that differs from the recorded one.
  """
  if parallel < 1 or devices_per_run < 1:
    raise ValueError(f"parallel and devices_per_run must be >= 1, got {parallel} and "
                     f"{devices_per_run}.")
  with run_directory.DirectoryLock(workdir, what="sweep"):
    to_run, finished = plan(config, workdir, list(settings), list(seeds))
    _record_sweep(config, workdir, settings, seeds, parallel, devices_per_run)
    logging.info("Sweep in %s: %d runs finished, %d to run (%d at a time).", workdir,
                 len(finished), len(to_run), parallel)
    start = time.time()
    failures = (_run_in_process(config, to_run) if parallel == 1 else
                _run_subprocesses(config, to_run, parallel, devices_per_run))
    logging.info("Sweep trained %d runs in %.0f s.", len(to_run) - len(failures),
                 time.time() - start)
    summaries = {}
    for seed in seeds:
      for setting in settings:
        record = run_directory.read_run(run_dir(workdir, setting, seed))
        if record.finished:
          summaries[(setting, seed)] = record.summary
    if report and summaries:
      import report as report_lib  # pylint: disable=g-import-not-at-top
      report_lib.write_report(workdir)
  if failures:
    raise RuntimeError(f"{len(failures)} of {len(to_run)} runs failed:\n" + "\n".join(failures))
  return summaries


class SweepClock:
  """Where a sweep's invocation stands: "run k of N" as each run starts and, once a run
  has finished, an ETA for the rest: the mean duration of the runs finished in this
  invocation x the runs not yet ended / the runs at a time. A failed run counts as ended
  and stays out of the mean."""

  def __init__(self, total: int, parallel: int, clock=time.monotonic):
    self.total, self.parallel, self._clock = total, parallel, clock
    self._started: dict[Run, float] = {}
    self._durations: list[float] = []
    self._ended = 0

  def start(self, run: Run) -> str:
    """Marks `run` started; returns "run k of N"."""
    self._started[run] = self._clock()
    return f"run {len(self._started)} of {self.total}"

  def end(self, run: Run, finished: bool) -> None:
    """Marks `run` ended (`finished`: without a failure) and logs the sweep's ETA."""
    self._ended += 1
    if finished:
      self._durations.append(self._clock() - self._started[run])
    if (left := self.total - self._ended) and self._durations:
      logging.info("Sweep: %d of %d runs done; ETA %s for the other %d (%s per run, %d at a "
                   "time).", self._ended, self.total, progress.format_seconds(self.eta()),
                   left, progress.format_seconds(self.mean()), self.parallel)

  def mean(self) -> float:
    return sum(self._durations) / len(self._durations)

  def eta(self) -> float:
    """Seconds until every run has ended, at the mean duration so far."""
    return self.mean() * (self.total - self._ended) / self.parallel


def _stop_message(signum: int, stopped: int, left: int, saved: bool = True) -> str:
  what = (f"{stopped} running training(s) saved a checkpoint and stopped" if saved else
          f"{stopped} training(s) stopped before their first step (nothing trained, no "
          "checkpoint written)")
  return (f"Sweep stopped by {signal.Signals(signum).name}: {what}, {left} not started. "
          "Rerun the same command to resume.")


def _run_in_process(config: ml_collections.ConfigDict, runs: list[Run]) -> list[str]:
  import train  # pylint: disable=g-import-not-at-top
  failures, clock = [], SweepClock(len(runs), parallel=1)
  with signals.RaiseOnSignal() as stop:
    for i, run in enumerate(runs):
      logging.info("Sweep %s: training %s / seed %d in %s.", clock.start(run), run.setting,
                   run.seed, run.workdir)
      try:
        train.train_and_evaluate(run_config(config, run.setting, run.seed), run.workdir)
      except KeyboardInterrupt as e:
        signum = getattr(e, "signum", None) or stop.received or signal.SIGINT
        raise SweepStopped(signum, _stop_message(signum, 1, len(runs) - i - 1,
                                                 getattr(e, "saved", True))) from e
      except Exception as e:  # pylint: disable=broad-except
        if disk_space.full_disk_error(e) is not None:
          raise  # the next runs would fail alike: the sweep stops, with main's one line
        # The rule for in-process and subprocess runs alike: a failed run is recorded and
        # the others still run.
        failures.append(f"{run.workdir}: {type(e).__name__}: {e}")
        if isinstance(e, train.EXPECTED_ERRORS):  # its message says it all, as train.py's.
          logging.error("%s failed: %s", run.workdir, e)
        else:
          logging.exception("%s failed.", run.workdir)
        clock.end(run, finished=False)
      else:
        clock.end(run, finished=True)
  return failures


def visible_gpus() -> list[str]:
  """The GPUs subprocesses may be given: CUDA_VISIBLE_DEVICES if set, else those
  `nvidia-smi -L` lists; none on a machine without NVIDIA GPUs. Asked without starting JAX,
  which would take most of every GPU's memory in this process."""
  if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
    return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return []
  return [str(i) for i, line in enumerate(out.stdout.splitlines())
          if line.startswith("GPU ")] if out.returncode == 0 else []


def slot_environment(slot: int, parallel: int, devices_per_run: int, gpus: Sequence[str],
                     cores: Sequence[int], base_env: dict[str, str],
                     taskset: bool) -> tuple[dict[str, str], list[str]]:
  """(environment, command prefix) of the subprocess in `slot` of `parallel`.

  With GPUs, slot i sees GPUs i*D .. i*D+D-1 (CUDA_VISIBLE_DEVICES), D = devices_per_run.
  On CPU, slot i is pinned (taskset) to cores i*D .. i*D+D-1 when there are enough, and
  has exactly D single-threaded XLA:CPU devices (a forced device count): unpinned, train.py
  would otherwise make one device per core of the machine, against the thread flags made
  for D (and with D = 1 a collective over two devices on one thread deadlocks).
  """
  env = dict(base_env)
  if gpus:
    if parallel * devices_per_run > len(gpus):
      raise ValueError(f"--parallel={parallel} x --devices_per_run={devices_per_run} needs "
                       f"{parallel * devices_per_run} GPUs; {len(gpus)} are visible "
                       f"({', '.join(gpus)}).")
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[slot * devices_per_run:
                                                (slot + 1) * devices_per_run])
    return env, []
  flags = env.get("XLA_FLAGS", "")
  forced = devices.forced_device_count(flags)
  if forced is not None and forced != devices_per_run:
    raise ValueError(f"XLA_FLAGS forces {forced} CPU devices per process, but "
                     f"--devices_per_run={devices_per_run}: drop "
                     f"--xla_force_host_platform_device_count from XLA_FLAGS (the sweep sets "
                     f"it per run) or pass --devices_per_run={forced}.")
  if forced is None:
    flags += f" {devices.FORCED_COUNT_FLAG}={devices_per_run}"
  env["XLA_FLAGS"] = f"{flags} {devices.single_thread_xla_flags(devices_per_run)}".strip()
  if taskset and len(cores) >= parallel * devices_per_run:
    mine = cores[slot * devices_per_run:(slot + 1) * devices_per_run]
    return env, ["taskset", "-c", ",".join(map(str, mine))]
  return env, []


def _has_taskset() -> bool:
  from shutil import which  # pylint: disable=g-import-not-at-top
  return which("taskset") is not None


def _stop_with_parent() -> None:
  """In the child, before exec: its own session (a terminal's Ctrl-C reaches the sweep only,
  which forwards it once) and SIGTERM when the sweep dies (Linux PR_SET_PDEATHSIG)."""
  os.setsid()
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


@dataclasses.dataclass(frozen=True)
class _Placement:
  """Where `--parallel` trainings run: slot i on its own GPUs or cores (slot_environment)."""
  parallel: int
  devices_per_run: int
  gpus: list[str]
  cores: list[int]
  taskset: bool

  @classmethod
  def of_this_machine(cls, parallel: int, devices_per_run: int) -> _Placement:
    """The visible GPUs (else the cores this process may use), checked against the slots."""
    placement = cls(parallel, devices_per_run, visible_gpus(), sorted(os.sched_getaffinity(0)),
                    _has_taskset())
    placement.environment(parallel - 1)  # raises if the GPUs are too few for every slot
    if not placement.gpus and len(placement.cores) < parallel * devices_per_run:
      logging.warning("%d cores for --parallel=%d x --devices_per_run=%d: the runs share "
                      "cores.", len(placement.cores), parallel, devices_per_run)
    return placement

  def environment(self, slot: int) -> tuple[dict[str, str], list[str]]:
    return slot_environment(slot, self.parallel, self.devices_per_run, self.gpus, self.cores,
                            dict(os.environ), self.taskset)


# One running training of a `--parallel` sweep: (run, process, its train.log).
_Active = tuple[Run, subprocess.Popen, Any]


def _start(config: ml_collections.ConfigDict, run: Run, slot: int, placement: _Placement,
           clock: SweepClock) -> _Active:
  """`python sweep.py --run_one` for `run` in `slot`: its config on stdin, its output in
  the run's train.log."""
  env, prefix = placement.environment(slot)
  log = run_directory.open_log(run.workdir)
  cmd = [*prefix, sys.executable, os.path.join(_HERE, "sweep.py"), "--run_one",
         f"--workdir={run.workdir}"]
  logging.info("Sweep %s: starting %s / seed %d (slot %d): %s", clock.start(run), run.setting,
               run.seed, slot, " ".join(cmd))
  proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                          env=env, text=True, preexec_fn=_stop_with_parent)
  proc.stdin.write(json.dumps(records.config_record(run_config(config, run.setting,
                                                               run.seed))))
  proc.stdin.close()
  return run, proc, log


def _reap(active: dict[int, _Active], stopping: bool, clock: SweepClock) -> list[str]:
  """Removes the trainings that ended from `active`; returns the failures among them (one
  that a forwarded stop signal ended, `stopping`, is none)."""
  failures = []
  for slot, (run, proc, log) in list(active.items()):
    if proc.poll() is None:
      continue
    log.close()
    del active[slot]
    if stopping and proc.returncode in (130, -signal.SIGTERM):
      continue
    if proc.returncode:
      failures.append(f"{run.workdir}: exit status {proc.returncode}; see "
                      f"{os.path.join(run.workdir, run_directory.LOG)}")
      logging.error("%s failed (exit status %d).", run.workdir, proc.returncode)
      _record_crash(run.workdir, proc.returncode)
      clock.end(run, finished=False)
    else:
      logging.info("Finished %s / seed %d.", run.setting, run.seed)
      clock.end(run, finished=True)
  return failures


def _record_crash(workdir: str, returncode: int) -> None:
  """Records the failure of a training that died without recording one itself (an abort,
  a kill: exit status other than 1), so that the report tells it from a stopped run."""
  if returncode == 1 or os.path.exists(os.path.join(workdir, run_directory.FAILURE)):
    return
  try:
    with run_directory.DirectoryLock(workdir):
      run_directory.record_failure(workdir, f"exit status {returncode} (see "
                                   f"{os.path.join(workdir, run_directory.LOG)})")
  except run_directory.RunInUseError:
    pass  # another process trains it now: it is not failed.


def _run_subprocesses(config: ml_collections.ConfigDict, runs: list[Run], parallel: int,
                      devices_per_run: int) -> list[str]:
  """Runs `runs` K at a time, each `python sweep.py --run_one` (its config on stdin) with
  its log in the run directory's train.log, on its own GPUs or cores (slot_environment).
  On a stop signal, starts no more, forwards SIGTERM to the running ones once, waits for
  them and raises SweepStopped."""
  placement = _Placement.of_this_machine(parallel, devices_per_run)
  pending, failures, clock = list(runs), [], SweepClock(len(runs), parallel)
  active: dict[int, _Active] = {}
  with signals.StopRequest() as stop:
    forwarded = None  # how many trainings the stop signal was forwarded to.
    try:
      while pending or active:
        free = [s for s in range(parallel) if s not in active] if not stop.received else []
        for slot in free[:len(pending)]:
          active[slot] = _start(config, pending.pop(0), slot, placement, clock)
        if stop.received and forwarded is None:
          for _, proc, _ in active.values():
            proc.send_signal(signal.SIGTERM)
          forwarded = len(active)
        time.sleep(0.2)
        failures += _reap(active, stopping=bool(stop.received), clock=clock)
        if stop.received and not active:
          raise SweepStopped(stop.received,
                             _stop_message(stop.received, forwarded or 0, len(pending)))
    finally:
      _stop_all(active)
  return failures


def _stop_all(active: dict[int, _Active]) -> None:
  """Leaves no training behind: SIGTERM (they save), then SIGKILL after STOP_TIMEOUT_S."""
  for _, proc, _ in active.values():
    if proc.poll() is None:
      proc.send_signal(signal.SIGTERM)
  deadline = time.time() + STOP_TIMEOUT_S
  for run, proc, log in active.values():
    try:
      proc.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      logging.error("%s did not stop within %d s of SIGTERM; killing it.", run.workdir,
                    STOP_TIMEOUT_S)
      proc.kill()
      proc.wait()
    log.close()


# --- Command line --------------------------------------------------------------------------


def _run_one(workdir: str) -> None:
  """A `--parallel` worker: trains the config JSON read from stdin in `workdir`, on the
  devices its config asks for (within the cores or GPUs the sweep gave it)."""
  import train  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(json.load(sys.stdin))

  def set_up_and_train() -> None:
    process.configure(validation.check_cpu_devices(config))
    train.train_and_evaluate(config, workdir)

  exit_codes.run(set_up_and_train, workdir, train.EXPECTED_ERRORS)


# The errors a sweep reports in one line, exit status 1 (training/exit_codes.py).
EXPECTED_ERRORS = (ValueError, RuntimeError, run_directory.RunDirectoryError)


def _set_up_and_sweep(FLAGS: Any) -> None:
  # From the start: a signal while the sweep plans, imports or reports (outside its
  # trainings, which install their own handler) stops it at once, with one line.
  with signals.RaiseOnSignal() as stop:
    try:
      # In process (--parallel=1) the runs use this process's devices; subprocesses set
      # up their own (_run_one), and this one starts no JAX backend.
      process.configure(validation.check_cpu_devices(FLAGS.config) if FLAGS.parallel == 1
                        else None)
      run_sweep(FLAGS.config, FLAGS.workdir, parse_settings(FLAGS.settings),
                parse_seeds(FLAGS.seeds), parallel=FLAGS.parallel,
                devices_per_run=FLAGS.devices_per_run, report=FLAGS.report)
      stop.check()  # one that a library swallowed
    except KeyboardInterrupt:
      if (signum := stop.received) is None:  # not this handler's: it says what it stopped
        raise
      raise SweepStopped(signum, f"Sweep stopped by {signal.Signals(signum).name} outside its "
                         "trainings (while it prepared or reported): no training was "
                         "interrupted, and every record is whole. Rerun the same command to "
                         "go on.") from None


def main(argv: list[str]) -> None:
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.run_one:
    _run_one(FLAGS.workdir)
    return
  if FLAGS.config is None:
    raise app.UsageError("--config is required (e.g. --config=configs/cifar10_mini.py).")
  exit_codes.run(lambda: _set_up_and_sweep(FLAGS), FLAGS.workdir, EXPECTED_ERRORS)
  print(f"Sweep done; report in {os.path.join(FLAGS.workdir, 'results.md')}" if FLAGS.report
        else f"Sweep done; no report (--noreport): python report.py --workdir={FLAGS.workdir}")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "A configs/*.py file; its rectifier argument is ignored (the sweep sets "
      "it per run). --config.KEY=VALUE overrides apply to every run.", lock_config=True)
  flags.DEFINE_string("workdir", None, "The sweep's directory: WORKDIR/<setting>/seed<k>.")
  flags.DEFINE_string("seeds", "3", "A count N (seeds 0..N-1) or a list '0,1,2'.")
  flags.DEFINE_string("settings", ",".join(rectifiers_linen.PAPER_SETTINGS),
                      "Comma-separated rectifier specs (default: the paper's five); commas "
                      "inside a spec's parentheses stay in it.")
  flags.DEFINE_integer("parallel", 1, "Runs at once: K > 1 runs K subprocesses, each on its "
                       "own GPUs (CUDA_VISIBLE_DEVICES) or CPU cores (taskset).")
  flags.DEFINE_integer("devices_per_run", 1, "With --parallel > 1: GPUs, or CPU cores, per run.")
  flags.DEFINE_bool("report", True, "Write the report (results.md, figures) at the end; "
                    "--noreport leaves it to `python report.py --workdir=WORKDIR`.")
  flags.DEFINE_bool("run_one", False, "Internal: train the config JSON on stdin in --workdir.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
