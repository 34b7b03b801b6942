"""What recording the activation statistics costs an evaluation.

Times one whole evaluation (`training.builder.Setup.evaluate`: the test split and the train-eval
subset, as a training run evaluates) with config.activation_statistics on and off, for
each rectifier, round-robin (benchmarks/timing.py), and prints the ratio on/off. "on"
includes PReLU's slopes and RReLU's training-mode probe; "on + histograms" also the
pre-activation histograms that a few evaluations of a run record. Weights are a fresh
initialisation: the cost does not depend on their values.

  python -m benchmarks.activation_stats_bench                      # the small-data config
  python -m benchmarks.activation_stats_bench --rectifiers relu --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from typing import Any

import jax

from training import builder
from benchmarks import timing
from configs import small_data


def measure(rectifier: str, repeats: int, warmup: int,
            overrides: dict[str, Any]) -> dict[str, float]:
  """{"off", "on", "on + histograms": median seconds per evaluation}."""
  config = small_data.get_config(rectifier)
  config.update_from_flattened_dict(overrides)
  calls = {}
  for name, stats, histograms in (("off", False, False), ("on", True, False),
                                  ("on + histograms", True, True)):
    config.activation_statistics = stats
    s = builder.setup(config, builder.load_data(config))
    state = s.parts.init(jax.random.key(0))
    calls[name] = lambda s=s, state=state, h=histograms: s.evaluate(state, histograms=h)
  return timing.round_robin(calls, repeats=repeats, warmup=warmup)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rectifiers", default="relu,prelu,rrelu")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--width", type=float, default=None,
                      help="model width (default: the small-data config's, 0.25)")
  parser.add_argument("--json", default=None, help="also write the results here")
  args = parser.parse_args(argv)
  overrides = {} if args.width is None else {"model_options.width": args.width}
  results = []
  for rectifier in args.rectifiers.split(","):
    t = measure(rectifier, args.repeats, args.warmup, overrides)
    row = {"rectifier": rectifier, **{f"{k} s": v for k, v in t.items()},
           "on / off": t["on"] / t["off"],
           "on + histograms / off": t["on + histograms"] / t["off"]}
    results.append(row)
    print(f"{rectifier:>8}: evaluation {t['off']:.2f} s without the statistics; with them "
          f"{row['on / off']:.3f}x, with histograms too {row['on + histograms / off']:.3f}x")
  record = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "jax": jax.__version__, "repeats": args.repeats, "results": results}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(record, f, indent=2)
  return record


if __name__ == "__main__":
  main()
