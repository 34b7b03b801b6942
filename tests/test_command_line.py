"""training/command_line.py: a bad --config.KEY=VALUE is one line naming the valid keys."""

import pytest

from training import command_line
from tests.helpers import REPO

CONFIG = f"--config={REPO / 'configs' / 'quickstart.py'}"


@pytest.mark.parametrize("flag,expected", [
    ("--config.learning_rat=0.1", "Unknown config key 'learning_rat' in "
     "--config.learning_rat=0.1. Did you mean 'learning_rate'?"),
    ("--config.augment.crp=4", "Unknown config key 'augment.crp'"),
    ("--config.model_options.widht=0.5", "Did you mean 'model_options.width'? The options "
     "of the model: "),
    ("--config.seed.x=1", "Unknown config key 'seed.x'"),
])
def test_an_unknown_key_names_the_closest_and_the_valid_ones(flag, expected):
  message = command_line.override_error(["train.py", CONFIG, flag], AttributeError("x"))
  assert expected in message and "\n" not in message


def test_other_errors_keep_their_first_line():
  message = command_line.override_error(["train.py", CONFIG, "--config.seed=1"],
                                        ValueError("could not convert\nsecond line"))
  assert message == "Cannot apply the config overrides: could not convert"


def test_without_a_loadable_config_the_original_error_is_reported():
  message = command_line.override_error(["train.py", "--config=/no/such.py",
                                         "--config.lr=1"], KeyError("lr"))
  assert message == "Cannot apply the config overrides: 'lr'"


def test_parse_flags_exits_2_with_one_line(capsys, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top

  def bad(argv):
    raise flags.IllegalFlagValueError("flag --workdir: must be set")

  monkeypatch.setattr(flags, "FLAGS", bad)
  with pytest.raises(SystemExit) as e:
    command_line.parse_flags(["train.py"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("train.py: flag --workdir: must be set\n")


def test_a_misspelled_config_file_is_one_line_naming_the_closest_files(capsys):
  with pytest.raises(SystemExit) as e:
    command_line.parse_flags(["train.py", "--config=configs/ndbs.py:relu", "--workdir=/x"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.splitlines()[0] == ("train.py: --config=configs/ndbs.py: no such file. Did you "
                                 "mean configs/ndsb.py or configs/ndsb_cpu.py?")


def test_a_config_whose_get_config_fails_is_one_line(tmp_path, capsys):
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config(arg=None):\n  raise KeyError('no setting ' + arg)\n")
  with pytest.raises(SystemExit):
    command_line.parse_flags(["train.py", f"--config={bad}:x"])
  assert capsys.readouterr().err.splitlines()[0] == (
      f"train.py: --config={bad}:x: get_config('x') failed: KeyError: 'no setting x'")
