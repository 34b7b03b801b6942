"""training/figures.py: a run's curves written whole, outside pyplot, and the PNG check."""

import os
import sys

import pytest

from training import figures

ROWS = [{"epoch": e, "train_error": 0.9 - 0.1 * e, "train_eval_error": 0.85 - 0.1 * e,
         "test_error": 0.88 - 0.09 * e} for e in (1, 2, 3)]


def test_the_curves_are_a_whole_png_and_pyplot_is_left_alone(tmp_path):
  path = str(tmp_path / "curves.png")
  figures.plot_run_curves(ROWS, path, "nin / relu / digits")
  assert figures.is_whole_png(path)
  assert os.listdir(tmp_path) == ["curves.png"]  # no temporary file left beside it
  pyplot = sys.modules.get("matplotlib.pyplot")
  assert pyplot is None or not pyplot.get_fignums()


def test_curves_without_train_eval_columns_are_drawn_too(tmp_path):
  rows = [{k: v for k, v in r.items() if k != "train_eval_error"} for r in ROWS]
  figures.plot_run_curves(rows, str(tmp_path / "c.png"), "t")
  assert figures.is_whole_png(str(tmp_path / "c.png"))


@pytest.mark.parametrize("content,whole", [
    (None, False),
    (b"", False),
    (b"\x89PNG\r\n\x1a\n" + b"x" * 50, False),  # cut before its closing chunk
    (b"GIF89a" + b"x" * 50 + b"IEND\xaeB`\x82", False),
    (b"\x89PNG\r\n\x1a\n" + b"x" * 50 + b"IEND\xaeB`\x82", True),
])
def test_a_png_is_whole_only_from_its_signature_to_its_end_chunk(tmp_path, content, whole):
  path = tmp_path / "f.png"
  if content is not None:
    path.write_bytes(content)
  assert figures.is_whole_png(str(path)) is whole
