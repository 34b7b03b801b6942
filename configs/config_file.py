"""A config file named by a `--config` spec, `PATH[:ARG]`, loaded the one way every entry
point loads it: `get_config(ARG)` (or `get_config()`) of the Python file at PATH, as
ml_collections' `config_flags.DEFINE_config_file` does.

    config = config_file.load("configs/ndsb_cpu.py:prelu")

PATH is relative to the working directory, else to the repository. A file that is not
there, or whose `get_config` fails, is a `ConfigFileError` whose one line names the spec
and, for a misspelled file, the closest config files.
"""

from __future__ import annotations

import difflib
import importlib.util
import os

import ml_collections

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConfigFileError(ValueError):
  """The config file is missing or cannot build its config; the message says which."""


def resolve(path: str) -> str:
  """`path` if it is a file, else the repository's file of that relative path; the
  ConfigFileError names the closest existing config files."""
  for candidate in (path, os.path.join(REPOSITORY, path)):
    if os.path.isfile(candidate):
      return candidate
  directory = os.path.dirname(path) or "."
  if not os.path.isdir(directory) and os.path.isdir(os.path.join(REPOSITORY, directory)):
    directory = os.path.join(REPOSITORY, directory)
  names = sorted(f for f in os.listdir(directory) if f.endswith(".py")) if os.path.isdir(
      directory) else []
  close = difflib.get_close_matches(os.path.basename(path), names, n=2)
  shown = os.path.dirname(path)
  hint = (f" Did you mean {' or '.join(os.path.join(shown, c) for c in close)}?" if close
          else f" The config files are in configs/ ({', '.join(_configs())}).")
  raise ConfigFileError(f"--config={path}: no such file.{hint}")


def load(spec: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` of the file of `spec` ("PATH" or "PATH:ARG")."""
  path, _, arg = spec.partition(":")
  file = resolve(path)
  module_spec = importlib.util.spec_from_file_location(
      "_config_" + os.path.splitext(os.path.basename(file))[0], file)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  (any error of the file's own code)
    raise ConfigFileError(f"--config={spec}: {file} cannot be imported: "
                          f"{type(e).__name__}: {_first_line(e)}") from None
  if not hasattr(module, "get_config"):
    raise ConfigFileError(f"--config={spec}: {file} has no get_config(); a config file "
                          "defines get_config(arg=None) returning an ml_collections.ConfigDict.")
  try:
    return module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigFileError(f"--config={spec}: get_config({arg!r}) failed: "
                          f"{type(e).__name__}: {_first_line(e)}") from None


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else "(no message)"


def _configs() -> list[str]:
  directory = os.path.join(REPOSITORY, "configs")
  return sorted(f for f in os.listdir(directory)
                if f.endswith(".py") and not f.startswith("_") and f not in
                ("default.py", "validation.py", "config_file.py"))
