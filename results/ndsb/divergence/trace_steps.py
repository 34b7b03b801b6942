"""Trains one run of the NDSB study from step 0 as the sweep placed it and writes, after every
step, the step's mean training loss and, for each parameter, its largest magnitude, its
norm and the step's update relative to its norm before the step (PReLU's slopes: also
their range); numbers to 4 significant digits, null where not finite. It is how prelu /
seed 1's divergence at step 300 was looked into (results/ndsb/README.md).

  taskset -c 0 python results/ndsb/divergence/trace_steps.py --setting=prelu --seed=1 \
      --workdir=/tmp/prelu-seed1 --out=results/ndsb/divergence/prelu-seed1.jsonl

Run from the repository root. `taskset -c 0` and the XLA flags set below are the sweep's
placement (one core, one single-threaded XLA:CPU device): XLA:CPU's results depend on how
many cores the process may use, so without them the trajectory is another one. The
workdir must be new: it is a run of the study's recipe (configs/ndsb_cpu.py), recorded as
any run is; the trace is the only addition.
"""

import json
import os
import sys

from absl import app, flags
import jax
import numpy as np

sys.path.insert(0, os.getcwd())
from configs import ndsb_cpu  # noqa: E402
import sweep  # noqa: E402
from training import process, steps  # noqa: E402

FLAGS = flags.FLAGS


def by_name(params) -> dict[str, np.ndarray]:
  """{"layer/name": host array} for every parameter of the tree `params`."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def _number(x: float, digits: int = 4) -> float | None:
  """`x` to `digits` significant digits, None when not finite (JSON has no NaN)."""
  return float(f"{x:.{digits}g}") if np.isfinite(x) else None


def trace_line(step: int, loss: float, before: dict[str, np.ndarray],
               after: dict[str, np.ndarray]) -> dict:
  """The trace's record of one step: its mean training loss and, per parameter, the
  largest magnitude and norm after the step and the update's norm relative to the norm
  before it (None for a tensor that was all zeros, the biases at step 0); PReLU's slopes
  also their range."""
  params = {}
  with np.errstate(all="ignore"):  # past the divergence everything is NaN
    for name, w in after.items():
      norm = float(np.linalg.norm(before[name]))
      params[name] = {"max_abs": _number(np.abs(w).max()), "norm": _number(np.linalg.norm(w)),
                      "update_rel": (_number(np.linalg.norm(w - before[name]) / norm)
                                     if norm > 0 else None)}
      if name.endswith("/slope"):
        params[name].update(min=_number(w.min()), max=_number(w.max()))
  return {"step": step, "loss": loss if np.isfinite(loss) else None, "params": params}


def traced(jit_train_step, out):
  """jit_train_step, whose step also writes the trace's line (the state is donated, so
  the parameters before the step are copied to the host first)."""
  def make(*args, **kwargs):
    step_fn = jit_train_step(*args, **kwargs)

    def call(state, *rest):
      before = by_name(jax.device_get(state.params))
      new_state, metrics = step_fn(state, *rest)
      after, m = by_name(jax.device_get(new_state.params)), jax.device_get(metrics)
      line = trace_line(int(new_state.step), float(m["loss"] / m["count"]), before, after)
      out.write(json.dumps(line, allow_nan=False) + "\n")
      out.flush()
      return new_state, metrics
    return call
  return make


def _define_flags() -> None:
  flags.DEFINE_string("setting", "prelu", "The rectifier setting (sweep.py's names).")
  flags.DEFINE_integer("seed", 1, "The run's seed.")
  flags.DEFINE_string("workdir", None, "A new run directory.", required=True)
  flags.DEFINE_string("out", None, "The JSON-lines trace to write.", required=True)


def main(argv):
  del argv
  if os.path.exists(FLAGS.workdir):
    raise app.UsageError(f"--workdir={FLAGS.workdir} exists; the trace starts from step 0.")
  config = sweep.run_config(ndsb_cpu.get_config(), FLAGS.setting, FLAGS.seed)
  # The XLA flags of a `sweep.py --parallel=2` slot: one single-threaded CPU device. XLA's
  # CPU results depend on its threading, so other flags give another trajectory.
  os.environ["XLA_FLAGS"] = sweep.slot_environment(0, 1, 1, [], [0], dict(os.environ),
                                                   taskset=False)[0]["XLA_FLAGS"]
  process.configure(config.cpu_devices)
  import train  # pylint: disable=g-import-not-at-top  (after the devices are set up)
  with open(FLAGS.out, "w") as out:
    # training/builder.py looks jit_train_step up in `steps` when it builds a run.
    steps.jit_train_step = traced(steps.jit_train_step, out)
    try:
      train.train_and_evaluate(config, FLAGS.workdir)
    except FloatingPointError as e:  # the divergence guard: the trace is complete
      print(e)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
