"""Figures that touch no process-wide matplotlib state, and one run's learning curves.

Every figure of the project (train.py's curves.png, report.py's tables' figures, the
benchmarks' plots) is a `matplotlib.figure.Figure` made by `figure()` and written by
`save()`: no pyplot, no `matplotlib.use`, so training in a notebook leaves the kernel's
backend and its open figures alone, and runs write PNGs on machines with no display
(`Figure.savefig` renders with Agg whatever the backend; matplotlib's "Embed in a web
application server" example does the same).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from input_pipeline import atomic_file
from training import records


def figure(**options: Any) -> Any:
  """A new `matplotlib.figure.Figure(**options)`, outside pyplot (matplotlib is imported on
  first use: it is slow to import)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  return Figure(**options)


def save(fig: Any, path: str, dpi: int = 120) -> None:
  """Writes `fig` to `path` (its format from the extension, PNG without one) whole or not
  at all (input_pipeline/atomic_file): a reader never sees a half-written PNG."""
  image_format = os.path.splitext(path)[1].lstrip(".").lower() or "png"
  atomic_file.write(path, lambda f: fig.savefig(f, format=image_format, dpi=dpi))


_PNG_SIGNATURE, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def is_whole_png(path: str) -> bool:
  """Whether `path` holds a PNG from its signature to its closing IEND chunk."""
  try:
    with open(path, "rb") as f:
      head = f.read(len(_PNG_SIGNATURE))
      f.seek(0, os.SEEK_END)
      f.seek(max(f.tell() - len(_PNG_END), 0))
      return head == _PNG_SIGNATURE and f.read() == _PNG_END
  except OSError:
    return False


def plot_run_curves(rows: Sequence[Mapping[str, Any]], path: str, title: str) -> None:
  """One run's error per evaluation: training mode, test mode on training images, test."""
  fig = figure(figsize=(6, 4))
  ax = fig.subplots()
  epochs = [r[records.EPOCH] for r in rows]
  ax.plot(epochs, [r[records.TRAIN_ERROR] for r in rows], label="train (training mode)")
  if all(records.TRAIN_EVAL_ERROR in r for r in rows):
    ax.plot(epochs, [r[records.TRAIN_EVAL_ERROR] for r in rows], label="train (test mode)")
  ax.plot(epochs, [r[records.TEST_ERROR] for r in rows], label="test")
  ax.set(xlabel="epoch", ylabel="error rate", title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save(fig, path, dpi=120)
