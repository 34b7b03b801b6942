"""training/resume.py: where a run starts (its own checkpoint, another run's through
config.init_from, or fresh) and the messages of a run stopped by a signal."""

import json
import os
import signal

import numpy as np
import pytest

import train
from configs import validation
from tests.helpers import final_params, tiny_config
from training import resume, run_directory


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_init_from_with_the_parents_own_config_continues_it_bit_identically(digits_run,
                                                                             tmp_path):
  parent, _ = digits_run
  train.train_and_evaluate(tiny_config(init_from=f"{parent}:3"), str(tmp_path))
  timing = ("wall_time", "images_per_sec")
  strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]
  assert strip(read_metrics(tmp_path)) == strip(read_metrics(parent)[1:])
  for a, b in zip(final_params(parent), final_params(tmp_path), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("init_from,overrides,match", [
    ("{tmp}/nowhere:3", {}, r"init_from=.*: there is no directory"),
    ("{parent}:4", {}, r"No checkpoint at step 4 .*; its steps: \[3, 6\]"),
    ("{parent}", {"train_examples": 300}, r"the parent trained on other data or batches "
                                          r"\(.*train_examples.* differ"),
    ("{parent}", {}, r"the checkpoint is at step 6, this config ends at step 6 .* raise "
                     r"config.num_epochs"),
])
def test_init_from_is_refused_before_anything_is_written(digits_run, tmp_path, init_from,
                                                         overrides, match):
  parent, _ = digits_run
  config = tiny_config(init_from=init_from.format(tmp=tmp_path, parent=parent), **overrides)
  with pytest.raises(validation.ConfigError, match=match):
    train.train_and_evaluate(config, str(tmp_path / "child"))
  assert os.listdir(tmp_path / "child") == [run_directory.LOCK]


def test_a_stop_after_training_names_the_step_and_the_checkpoint_and_how_to_resume():
  class Saved:
    directory = "/runs/a/checkpoints"

  error = resume.stopped((signal.SIGTERM, [0]), 12, Saved())
  assert str(error) == ("Stopped by SIGTERM at step 12; saved a checkpoint in "
                        "/runs/a/checkpoints. Rerun the same command to resume.")
  assert error.signum == signal.SIGTERM and error.saved


@pytest.mark.parametrize("step,where", [(0, "before training began"),
                                        (6, "before training went on from step 6")])
def test_a_stop_before_the_first_step_says_nothing_was_trained_or_saved(step, where):
  error = resume.stopped_before_training((signal.SIGINT, [0]), step)
  assert str(error).startswith(f"Stopped by SIGINT {where}: nothing was trained and no "
                               "checkpoint was written.")
  assert error.signum == signal.SIGINT and not error.saved
