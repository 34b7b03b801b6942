"""Flag parsing for train.py and sweep.py that turns a bad `--config.KEY=VALUE` into one line.

ml_collections applies `--config.KEY=VALUE` overrides while absl parses the flags, and an
unknown key surfaces there as a long AttributeError traceback. `parse_flags` (absl's
`app.run(main, flags_parser=parse_flags)`) reports it as the key, the flag it came from,
the closest valid names and every valid name at that level (for `model_options`, the
model's options), and exits with status 2. A `--config=PATH[:ARG]` whose file is missing
(the closest config files named) or whose get_config fails is one line and status 2 too
(configs/config_file.py), not the traceback ml_collections raises when the config is
first read.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from typing import Any

from absl import flags

from configs import config_file


def parse_flags(argv: list[str]) -> list[str]:
  try:
    if spec := _config_spec(argv):
      config_file.load(spec)
    return flags.FLAGS(argv)
  except config_file.ConfigFileError as e:
    message = str(e)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = override_error(argv, e)
  sys.stderr.write(f"{argv[0]}: {message}\nSee --helpfull for the flags and "
                   "configs/default.py for the config keys.\n")
  sys.exit(2)


def _config_spec(argv: list[str]) -> str | None:
  return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)


def _config_file(argv: list[str]) -> Mapping[str, Any] | None:
  """The config that --config names, loaded as ml_collections would (None if it fails)."""
  if (spec := _config_spec(argv)) is None:
    return None
  try:
    return config_file.load(spec).to_dict()
  except config_file.ConfigFileError:
    return None  # the original error will be reported instead.


def override_error(argv: list[str], error: Exception) -> str:
  """A one-line explanation of why a `--config.KEY=VALUE` override could not be applied."""
  config = _config_file(argv)
  for arg in argv:
    if not arg.startswith("--config.") or config is None:
      continue
    path = arg[len("--config."):].split("=", 1)[0].split(".")
    node: Any = config
    for depth, key in enumerate(path):
      if not isinstance(node, Mapping) or key not in node:
        level = ".".join(path[:depth]) or "the config"
        valid = sorted(node) if isinstance(node, Mapping) else []
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {'.'.join(path[:depth] + close)!r}?" if close else ""
        what = ("options of the model" if path[:depth] == ["model_options"]
                else f"keys of {level}")
        return (f"Unknown config key {'.'.join(path[:depth + 1])!r} in {arg}.{hint} "
                f"The {what}: {', '.join(valid) or '(none)'}.")
      node = node[key]
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return f"Cannot apply the config overrides: {first}"
