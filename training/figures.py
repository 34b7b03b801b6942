"""Matplotlib without a display, and one run's learning curves.

Every figure of the project (train.py's curves.png, report.py's tables' figures, the
benchmarks' plots) takes its pyplot from `pyplot()`, which selects the file-only "Agg"
backend first: runs write PNGs on machines with no display.
"""

from __future__ import annotations

import os
from typing import Any


def pyplot() -> Any:
  """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to import)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save(fig: Any, path: str, dpi: int = 120) -> None:
  """Writes `fig` to `path` atomically (a reader never sees a half-written PNG: a crash
  leaves the old file or none) and closes it."""
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp{os.getpid()}{ext}"
  fig.savefig(tmp, dpi=dpi)
  os.replace(tmp, path)
  pyplot().close(fig)


def plot_run_curves(rows: list[dict[str, Any]], path: str, title: str) -> None:
  """One run's error per evaluation: training mode, test mode on training images, test."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  epochs = [r["epoch"] for r in rows]
  ax.plot(epochs, [r["train_error"] for r in rows], label="train (training mode)")
  if all("train_eval_error" in r for r in rows):
    ax.plot(epochs, [r["train_eval_error"] for r in rows], label="train (test mode)")
  ax.plot(epochs, [r["test_error"] for r in rows], label="test")
  ax.set(xlabel="epoch", ylabel="error rate", title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save(fig, path, dpi=120)
