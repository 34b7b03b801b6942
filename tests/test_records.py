"""training/records.py: the records' schema, checked against a real run, and what derives
from it."""

import ast

import ml_collections
import pytest

import models
from configs import quickstart
from tests.helpers import REPO
from training import provenance, records, run_directory


def test_a_runs_records_have_the_schemas_keys(prelu_run):
  record = run_directory.read_run(str(prelu_run))
  for row in record.rows:
    assert records.Row.__required_keys__ <= set(row) <= set(records.Row.__annotations__)
  summary = record.summary
  assert records.Summary.__required_keys__ <= set(summary) <= set(
      records.Summary.__annotations__)
  assert records.PRELU_SLOPE_VECTORS in summary  # a PReLU run
  assert set(record.dataset) == set(records.DatasetRecord.__annotations__)
  assert summary[records.BEST_TEST_ERROR] == records.best_test_error(record.rows)
  activations = record.rows[-1][records.ACTIVATIONS]
  assert {records.TEST, records.TRAIN_EVAL, records.PRELU_SLOPES} <= set(activations)


def test_the_key_constants_are_the_schemas_names():
  row_keys = set(records.Row.__annotations__)
  constants = {value for name, value in vars(records).items()
               if name.isupper() and isinstance(value, str)}
  assert {records.EPOCH, records.STEP, records.TRAIN_ERROR, records.TRAIN_LOSS,
          records.TEST_ERROR, records.TEST_LOSS, records.TEST_EXAMPLES,
          records.TRAIN_EVAL_ERROR, records.TRAIN_EVAL_LOSS, records.TRAIN_EVAL_EXAMPLES,
          records.ACTIVATIONS, records.LEARNING_RATE, records.IMAGES_PER_SEC,
          records.WALL_TIME} == row_keys
  assert {records.BEST_TEST_ERROR, records.PRELU_SLOPE_VECTORS} <= constants


def test_derived_values():
  rows = [{"test_error": 0.3}, {"test_error": 0.1}, {"test_error": 0.2}]
  assert records.best_test_error(rows) == 0.1
  assert records.generalisation_gap({"test_error": 0.25, "train_eval_error": 0.05}) == \
      pytest.approx(0.2)
  assert records.split_columns(records.TEST, {"error": 0.5, "loss": 1.0, "examples": 4}) == {
      "test_error": 0.5, "test_loss": 1.0, "test_examples": 4}


def test_the_config_record_lists_every_model_option_as_json():
  config = quickstart.get_config("relu")
  config.model_options = ml_collections.ConfigDict({"width": 0.5})
  config.lr_decay_epochs = (1, 2)
  record = records.config_record(config)
  assert record["model_options"] == {**models.default_options("nin"), "width": 0.5}
  assert record["lr_decay_epochs"] == [1, 2]  # tuples become lists, as JSON gives them back


# (module, key): string literals that equal a record key but are not one. The steps'
# device-side metric sums and an evaluation's sown statistics use their own short names;
# keyword-argument dicts are arguments, not records. (input_pipeline, below training/ by
# the dependency rule, is not checked: it names its folders and cache fields itself.)
NOT_RECORD_KEYS = {
    ("training/steps.py", "loss"), ("training/steps.py", "activations"),
    ("training/evaluation.py", "loss"), ("training/evaluation.py", "activations"),
    ("train.py", "loss"), ("training/checkpoints.py", "step"), ("evaluate.py", "step"),
}


def _key_literals(path):
  """(key, line) of each string used as a subscript, a .get/.pop/.setdefault key, a dict
  key or the left side of `in`."""
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Subscript):
      candidates = [node.slice]
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr in ("get", "pop", "setdefault") and node.args):
      candidates = [node.args[0]]
    elif isinstance(node, ast.Dict):
      candidates = [k for k in node.keys if k is not None]
    elif isinstance(node, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn))
                                               for o in node.ops):
      candidates = [node.left]
    else:
      continue
    for c in candidates:
      if isinstance(c, ast.Constant) and isinstance(c.value, str):
        yield c.value, c.lineno


def test_no_record_key_is_spelled_out_outside_the_schema():
  keys = {v for k, v in vars(records).items() if k.isupper() and isinstance(v, str)}
  keys |= {v for k, v in vars(provenance).items() if k.isupper() and isinstance(v, str)}
  files = [p for p in [*REPO.glob("*.py"), *REPO.glob("training/*.py"),
                       *REPO.glob("reporting/*.py")]
           if p.name not in ("records.py", "provenance.py")]
  spelled = sorted(f"{p.relative_to(REPO)}:{line}: {key!r}" for p in files
                   for key, line in _key_literals(p)
                   if key in keys and (str(p.relative_to(REPO)), key) not in NOT_RECORD_KEYS)
  assert not spelled, "record keys spelled out (use training/records.py's names):\n" + \
      "\n".join(spelled)
