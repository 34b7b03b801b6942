"""results/ndsb/divergence/trace_steps.py's record of a step, against numbers worked out by
hand: what the committed trace of prelu / seed 1 means."""

import importlib.util
import json
import math

import numpy as np

from tests.helpers import REPO


def _trace_steps():
  path = REPO / "results" / "ndsb" / "divergence" / "trace_steps.py"
  spec = importlib.util.spec_from_file_location("trace_steps", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


trace_steps = _trace_steps()


def test_by_name_joins_the_tree_path_of_every_parameter():
  tree = {"conv1": {"kernel": np.ones((2, 2)), "bias": np.zeros(2)},
          "conv1_act": {"slope": np.full(3, 0.25)}}
  names = trace_steps.by_name(tree)
  assert sorted(names) == ["conv1/bias", "conv1/kernel", "conv1_act/slope"]
  np.testing.assert_array_equal(names["conv1_act/slope"], np.full(3, 0.25))


def test_a_step_records_magnitude_norm_relative_update_and_the_slopes_range():
  before = {"c/kernel": np.array([3.0, 4.0]), "c/bias": np.zeros(2),
            "c_act/slope": np.array([0.25, 0.25])}
  after = {"c/kernel": np.array([3.0, 4.5]), "c/bias": np.array([0.1, -0.2]),
           "c_act/slope": np.array([-2.0, 0.5])}
  line = trace_steps.trace_line(7, 2.5, before, after)
  assert line["step"] == 7 and line["loss"] == 2.5
  kernel = line["params"]["c/kernel"]
  assert kernel["max_abs"] == 4.5
  assert kernel["norm"] == round(math.hypot(3.0, 4.5), 3)  # 5.408, 4 significant digits
  assert kernel["update_rel"] == 0.1  # |(0, 0.5)| / |(3, 4)|
  assert "min" not in kernel and "max" not in kernel
  assert line["params"]["c/bias"]["update_rel"] is None  # all zeros before: undefined
  slope = line["params"]["c_act/slope"]
  assert (slope["min"], slope["max"], slope["max_abs"]) == (-2.0, 0.5, 2.0)
  assert slope["update_rel"] == float(f"{math.hypot(2.25, 0.25) / math.hypot(0.25, 0.25):.4g}")


def test_a_diverged_step_is_written_as_json_nulls_not_nan():
  before = {"c/kernel": np.array([1.0, 1.0])}
  after = {"c/kernel": np.array([np.nan, np.inf])}
  line = trace_steps.trace_line(301, float("nan"), before, after)
  text = json.dumps(line, allow_nan=False)  # raises on a NaN or an infinity
  assert json.loads(text)["loss"] is None
  assert set(line["params"]["c/kernel"].values()) == {None}


def test_the_committed_trace_holds_prelu_seed_1_up_to_and_past_its_divergence():
  path = REPO / "results" / "ndsb" / "divergence" / "prelu-seed1.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
  assert rows[299]["loss"] == 81741545472.0 and rows[300]["loss"] is None
  assert all(np.isfinite(r["loss"]) for r in rows[:300])
  assert sum(name.endswith("/slope") for name in rows[0]["params"]) == 19
