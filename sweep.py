r"""The paper's comparison in one command: rectifier settings x seeds, one run directory each.

    python sweep.py --config=configs/nin_cifar10.py --seeds=3 --workdir=runs/cifar10
    python sweep.py --config=configs/cifar10_mini.py --seeds=3 --parallel=2 \
        --workdir=runs/cifar10-mini --config.num_epochs=40

Runs live in `WORKDIR/<setting>/seed<k>` (`train.py`'s outputs). A run whose `summary.json`
exists and whose metrics reached `num_epochs` is skipped; any other is (re)started, and
train.py resumes it from its last checkpoint. `--config.KEY=VALUE` overrides apply to every
run; the rectifier and the seed are set per run. At the end `report.py` writes results.md,
curves.png and rectifiers.png into WORKDIR (also runnable alone over existing runs).

`--parallel=K` runs K trainings at once as subprocesses, each with single-threaded XLA and,
where the machine has K cores, pinned to its own core (taskset). Measured on the shared 2-core
development machine (NIN at width 0.125, batch 32, train.train_step, two rounds with
benchmarks/train_step_bench.py): two single-threaded processes, one per core, trained 1,325
and 1,370 images/s in total; one process using both cores 392 and 725. XLA:CPU's intra-op
threading does not pay off for convolutions this small. For a large model on one machine,
or on accelerators, keep the default --parallel=1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import logging
import ml_collections

from rectifiers import linen as rectifiers_linen

_HERE = os.path.dirname(os.path.abspath(__file__))
RUN_CONFIG = "sweep_config.json"   # the exact config of a run, written before it starts.
# One XLA:CPU thread per subprocess: measured faster in aggregate than sharing cores (above).
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclasses.dataclass(frozen=True)
class Run:
  """One (setting, seed) cell of the sweep."""
  setting: str
  seed: int
  workdir: str


def run_dir(workdir: str, setting: str, seed: int) -> str:
  return os.path.join(workdir, setting, f"seed{seed}")


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


def run_config(config: ml_collections.ConfigDict, setting: str,
               seed: int) -> ml_collections.ConfigDict:
  """The base config with this run's rectifier and seed."""
  config = ml_collections.ConfigDict(config.to_dict())  # an unlocked deep copy.
  config.rectifier = setting
  config.seed = seed
  return config


def _config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  # The same normalisation as train.py's config.json (tuples become lists).
  return json.loads(config.to_json_best_effort())


def is_finished(path: str, num_epochs: int) -> bool:
  """Whether the run in `path` wrote its summary after reaching `num_epochs`."""
  summary, metrics = os.path.join(path, "summary.json"), os.path.join(path, "metrics.jsonl")
  if not (os.path.exists(summary) and os.path.exists(metrics)):
    return False
  with open(metrics) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return bool(rows) and rows[-1]["epoch"] >= num_epochs


def _check_same_config(path: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume or skip a run that was started with another config: a sweep whose runs
  silently differ in their recipe would compare nothing."""
  previous = os.path.join(path, RUN_CONFIG)
  if not os.path.exists(previous):
    return
  with open(previous) as f:
    old = json.load(f)
  new = _config_json(config)
  if old != new:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    raise ValueError(
        f"{path} was started with a different config (keys {changed} differ). Use another "
        f"--workdir for a different recipe, or delete {path} to redo that run.")


def _write_run_config(path: str, config: ml_collections.ConfigDict) -> str:
  os.makedirs(path, exist_ok=True)
  out = os.path.join(path, RUN_CONFIG)
  tmp = out + ".tmp"
  with open(tmp, "w") as f:
    json.dump(_config_json(config), f, indent=2, sort_keys=True)
  os.replace(tmp, out)
  return out


def _load_run_config(path: str) -> ml_collections.ConfigDict:
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def plan(config: ml_collections.ConfigDict, workdir: str, settings: Sequence[str],
         seeds: Sequence[int]) -> tuple[list[Run], list[Run]]:
  """Splits the sweep into (to_run, finished). Seed-major order: every setting's seed 0
  first, so that an interrupted sweep already holds complete comparisons."""
  for setting in settings:
    rectifiers_linen.rectifier_factory(setting)  # a clear error for a typo, before any run.
  to_run, finished = [], []
  for seed in seeds:
    for setting in settings:
      run = Run(setting, seed, run_dir(workdir, setting, seed))
      cfg = run_config(config, setting, seed)
      _check_same_config(run.workdir, cfg)
      (finished if is_finished(run.workdir, cfg.num_epochs) else to_run).append(run)
  return to_run, finished


def _subprocess_env(slot: int, parallel: int) -> tuple[dict[str, str], list[str]]:
  """Environment and command prefix for the subprocess in `slot`: single-threaded XLA, pinned
  to core `slot` when there are enough cores (taskset, where available)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA_FLAGS).strip()
  # Workers share the parent's compilation cache: seeds of a setting compile the same program.
  prefix: list[str] = []
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
  if len(cores) >= parallel and _has_taskset():
    prefix = ["taskset", "-c", str(cores[slot])]
  return env, prefix


def _has_taskset() -> bool:
  from shutil import which
  return which("taskset") is not None


def run_sweep(config: ml_collections.ConfigDict, workdir: str,
              settings: Sequence[str] = rectifiers_linen.PAPER_SETTINGS,
              seeds: Sequence[int] = (0, 1, 2), parallel: int = 1,
              report: bool = True) -> dict[tuple[str, int], dict[str, Any]]:
  """Trains every (setting, seed) not yet finished, then writes the report.

  Args:
    config: the base config (its rectifier and seed are replaced per run).
    workdir: the sweep's directory; runs go to `workdir/<setting>/seed<k>`.
    settings: rectifier specs, e.g. `rectifiers.linen.PAPER_SETTINGS`.
    seeds: the seeds; seed k of every setting forms one pair for the paired statistics.
    parallel: 1 trains in this process (simplest, used by the tests); K > 1 runs K
      single-threaded `sweep.py --run_one` subprocesses at a time.
    report: write results.md and the figures at the end.

  Returns:
    {(setting, seed): summary} for every run of the sweep, finished before or now.

  Raises:
    RuntimeError: some runs failed (the others still ran; their logs are named).
  """
  if parallel < 1:
    raise ValueError(f"parallel must be >= 1, got {parallel}.")
  to_run, finished = plan(config, workdir, list(settings), list(seeds))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "sweep.json"), "w") as f:
    json.dump({"settings": list(settings), "seeds": list(seeds), "parallel": parallel,
               "config": _config_json(config)}, f, indent=2, sort_keys=True)
  logging.info("Sweep in %s: %d runs finished, %d to run (%d at a time).", workdir,
               len(finished), len(to_run), parallel)
  for run in finished:
    logging.info("Skipping %s (finished).", run.workdir)

  failures: list[str] = []
  start = time.time()
  if parallel == 1:
    import train  # here, so that `--run_one` subprocesses and the tests import it once.
    for run in to_run:
      cfg = run_config(config, run.setting, run.seed)
      _write_run_config(run.workdir, cfg)
      logging.info("Training %s / seed %d in %s.", run.setting, run.seed, run.workdir)
      try:
        train.train_and_evaluate(cfg, run.workdir)
      except (train.ConfigError, FloatingPointError) as e:
        failures.append(f"{run.workdir}: {e}")
        logging.error("%s failed: %s", run.workdir, e)
  else:
    failures = _run_subprocesses(config, to_run, parallel)
  logging.info("Sweep trained %d runs in %.0f s.", len(to_run) - len(failures),
               time.time() - start)

  summaries = {}
  for seed in seeds:
    for setting in settings:
      path = os.path.join(run_dir(workdir, setting, seed), "summary.json")
      if os.path.exists(path):
        with open(path) as f:
          summaries[(setting, seed)] = json.load(f)
  if report:
    import report as report_lib
    report_lib.write_report(workdir)
  if failures:
    raise RuntimeError(f"{len(failures)} of {len(to_run)} runs failed:\n" + "\n".join(failures))
  return summaries


def _run_subprocesses(config: ml_collections.ConfigDict, runs: list[Run],
                      parallel: int) -> list[str]:
  """Runs `runs` K at a time, each `python sweep.py --run_one=...` with its log beside it."""
  pending = list(runs)
  active: dict[int, tuple[Run, subprocess.Popen, Any]] = {}  # slot -> (run, process, log)
  failures = []
  try:
    while pending or active:
      for slot in range(parallel):
        if slot in active or not pending:
          continue
        run = pending.pop(0)
        cfg_path = _write_run_config(run.workdir, run_config(config, run.setting, run.seed))
        env, prefix = _subprocess_env(slot, parallel)
        log = open(os.path.join(run.workdir, "train.log"), "a")
        cmd = [*prefix, sys.executable, os.path.join(_HERE, "sweep.py"),
               f"--run_one={cfg_path}", f"--workdir={run.workdir}"]
        logging.info("Starting %s / seed %d (slot %d): %s", run.setting, run.seed, slot,
                     " ".join(cmd))
        active[slot] = (run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                              env=env), log)
      time.sleep(1.0)
      for slot, (run, proc, log) in list(active.items()):
        if proc.poll() is None:
          continue
        log.close()
        del active[slot]
        if proc.returncode:
          failures.append(f"{run.workdir}: exit status {proc.returncode}; see "
                          f"{run.workdir}/train.log")
          logging.error("%s failed (exit status %d).", run.workdir, proc.returncode)
        else:
          logging.info("Finished %s / seed %d.", run.setting, run.seed)
  finally:
    # On an interrupt, pass it on: train.py saves a checkpoint and the next sweep resumes.
    for run, proc, log in active.values():
      if proc.poll() is None:
        proc.terminate()
    for run, proc, log in active.values():
      try:
        proc.wait(timeout=120)
      except subprocess.TimeoutExpired:
        proc.kill()
      log.close()
  return failures


# --- Command line --------------------------------------------------------------------------


def _enable_compilation_cache() -> None:
  """A persistent XLA cache: the seeds of one setting compile the same programs (the seed is a
  runtime argument), so only the first seed pays the compile. Subprocesses inherit it."""
  import jax
  cache = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                                os.path.join(os.path.expanduser("~"), ".cache", "rectifiers",
                                             "xla"))
  jax.config.update("jax_compilation_cache_dir", cache)


def main(argv: list[str]) -> None:
  from absl import app, flags
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import train
  train._quiet_library_info_logs()
  _enable_compilation_cache()
  if FLAGS.run_one:  # a worker of --parallel: one run from its written config.
    try:
      train.train_and_evaluate(_load_run_config(FLAGS.run_one), FLAGS.workdir)
    except KeyboardInterrupt as e:
      logging.warning("%s", e)
      sys.exit(130)
    return
  if FLAGS.config is None:
    raise app.UsageError("--config is required (e.g. --config=configs/cifar10_mini.py).")
  settings = [s.strip() for s in FLAGS.settings.split(",") if s.strip()]
  try:
    run_sweep(FLAGS.config, FLAGS.workdir, settings, parse_seeds(FLAGS.seeds),
              parallel=FLAGS.parallel)
  except (ValueError, RuntimeError) as e:
    logging.error("%s", e)
    sys.exit(1)
  print(f"Sweep done; report in {os.path.join(FLAGS.workdir, 'results.md')}")


def _define_flags() -> None:
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file(
      "config", None, "A configs/*.py file; its rectifier argument is ignored (the sweep sets "
      "it per run). --config.KEY=VALUE overrides apply to every run.", lock_config=True)
  flags.DEFINE_string("workdir", None, "The sweep's directory: WORKDIR/<setting>/seed<k>.")
  flags.DEFINE_string("seeds", "3", "A count N (seeds 0..N-1) or a list '0,1,2'.")
  flags.DEFINE_string("settings", ",".join(rectifiers_linen.PAPER_SETTINGS),
                      "Comma-separated rectifier specs (default: the paper's five).")
  flags.DEFINE_integer("parallel", 1, "Runs at once (subprocesses, one XLA thread each).")
  flags.DEFINE_string("run_one", None, "Internal: train the run config in this JSON file.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
