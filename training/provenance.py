"""Which code trained a run: the checkout's git commit and the versions of the libraries.

A run records the code version it started under, and each version it was resumed under
since, as (from_step, version) pairs in `WORKDIR/provenance.json`
(training/run_directory.py). A resume under another commit goes on (a bug fix must not
strand a study), but the record shows it, and report.py says when the runs of one study
were trained by more than one version.

    {"commit": "4f1c…" | "unknown", "dirty": false | true | null,
     "versions": {"jax": "0.10.2", "jaxlib": ..., "flax": ..., "optax": ...,
                  "orbax-checkpoint": ..., "grain": ...}}

`dirty` is whether tracked files (code, configs, committed results) differ from the
commit: outputs that git does not track, such as an evaluation written into a committed
study's directory, are not code and leave it false. Both are "unknown"/null outside a git
checkout, without git, and when the code is a copy inside another repository (git would
report that repository's commit, which did not write this code): the repository's top
level must be the code's root.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

# The keys of a version record (`code_version`) and of a history entry (`with_version`);
# provenance.json's schema lives here, below training/records.py in the import order.
COMMIT, DIRTY, VERSIONS, FROM_STEP = "commit", "dirty", "versions", "from_step"

# The libraries whose versions can change what a run computes or how it is stored.
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str, cwd: str) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
  versions = {}
  for name in LIBRARIES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


@functools.cache
def _cached(repo: str) -> tuple[str, bool | None]:
  top = _git("rev-parse", "--show-toplevel", cwd=repo)
  if top is None or os.path.realpath(top.strip()) != os.path.realpath(repo):
    return "unknown", None
  commit = _git("rev-parse", "HEAD", cwd=repo)
  if commit is None:
    return "unknown", None
  status = _git("status", "--porcelain", "--untracked-files=no", cwd=repo)
  return commit.strip(), None if status is None else bool(status.strip())


def code_version(repo: str = _REPO) -> dict[str, Any]:
  """The code version of the checkout at `repo` (default: this one) in this process."""
  commit, dirty = _cached(os.path.abspath(repo))
  return {COMMIT: commit, DIRTY: dirty, VERSIONS: library_versions()}


def same_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
  return all(a.get(k) == b.get(k) for k in (COMMIT, DIRTY, VERSIONS))


def describe(version: Mapping[str, Any]) -> str:
  """One short line: 'commit 4f1c2ab (uncommitted changes), jax 0.10.2, flax 0.12.8, ...'."""
  commit = version.get(COMMIT, "unknown")
  text = "commit unknown" if commit == "unknown" else f"commit {commit[:10]}"
  if version.get(DIRTY):
    text += " (uncommitted changes)"
  versions = version.get(VERSIONS, {})
  return text + "".join(f", {k} {v}" for k, v in sorted(versions.items()))


def with_version(history: Sequence[Mapping[str, Any]], step: int,
                 version: Mapping[str, Any]) -> list[dict[str, Any]]:
  """The run's (from_step, version) history once it continues from `step` under `version`:
  entries that began after `step` trained nothing the run keeps and are dropped; a new
  entry is added when the version differs from the last one kept."""
  kept = [dict(h) for h in history if h[FROM_STEP] <= step] if step else []
  if not kept or not same_version(kept[-1], version):
    kept.append({FROM_STEP: step, **version})
  return kept
