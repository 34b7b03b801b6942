"""A run's own record of its config (`WORKDIR/config.json`) as a config again.

    python train.py --config=configs/rerun.py:WORKDIR --workdir=WORKDIR

reruns that run with exactly the config it recorded, whatever command started it. A
finished run trains nothing more: the rerun writes again, from its final checkpoint, what
it lacks or has damaged (its export, curves, event files; training/finish.py). An
unfinished run resumes. `from_record` is also how evaluate.py reads a run's config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from configs import default


def from_record(record: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A run's config record over today's defaults: keys added to the code after the run was
  recorded take their default, keys the code no longer has are left out."""
  defaults = default.get_config().to_dict()
  merged = {**defaults, **{k: v for k, v in record.items() if k in defaults}}
  merged["augment"] = {**defaults["augment"], **record.get("augment", {})}
  return ml_collections.ConfigDict(merged)


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """The config run `workdir` recorded in its config.json."""
  file = os.path.join(workdir, "config.json")
  if not os.path.exists(file):
    raise FileNotFoundError(f"{file} is missing: configs/rerun.py:WORKDIR takes a run "
                            "directory (one with a config.json).")
  with open(file) as f:
    return from_record(json.load(f))
