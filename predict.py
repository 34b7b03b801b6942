r"""Classifies image files with a trained run's exported model and writes a CSV.

    python predict.py --workdir=RUN --images=DIR [--top_k=5] [--out=FILE.csv]

Every image file under DIR, subfolders included (the extensions of
input_pipeline/folder.py's IMAGE_EXTENSIONS; other files are left out with a warning), in
the order of their paths relative to DIR, is decoded as the run's images were
(`folder.decode_image`: 8-bit samples only, grayscale for a one-channel run, else RGB,
resized bilinearly to the run's image size when it differs) and scored in test mode by the
run's export (`RUN/model/`, checked whole and against the run's records: training/export.py),
with the run's own preprocessing. The CSV (FILE, or the standard output) has a header, then
one row per image: its path relative to DIR, then the `top_k` most probable classes and
their probabilities (the softmax of the logits), most probable first:

    file,class_1,probability_1,class_2,probability_2
    a/0001.jpg,cat,0.912345,dog,0.051234

Errors are one line. Exit status 2 for arguments that cannot be used: DIR without images,
a file that is not an image (or not 8-bit, or too large), a RUN without an export, `top_k`
outside 1..the number of classes (and, as for every script, a bad flag); 1 for an export or
a run record that is damaged (the message says how to write it again).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from absl import logging
import numpy as np

from input_pipeline import atomic_file, folder
from training import exit_codes, export, process, run_directory

BATCH = 256  # images scored at once: bounds the memory the decoded images take on device
# A damaged export or record, or a file it cannot read or write, is a failure (status 1);
# what was passed and cannot be used is a PredictionError (status 2, training/exit_codes.py).
EXPECTED_ERRORS = (export.ExportError, run_directory.RunDirectoryError, OSError)


class PredictionError(ValueError):
  """The run, the images or the arguments cannot be used as asked; one line says why."""


def image_files(directory: str) -> list[str]:
  """The image files under `directory` (recursively), as sorted paths relative to it."""
  if not os.path.isdir(directory):
    raise PredictionError(f"--images={directory} is not a directory.")
  found: list[str] = []
  other: list[str] = []
  for root, dirs, files in os.walk(directory):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in files:
      if name.startswith("."):
        continue
      rel = os.path.relpath(os.path.join(root, name), directory)
      (found if Path(name).suffix.lower() in folder.IMAGE_EXTENSIONS else other).append(rel)
  if other:
    logging.warning("Left out %d file(s) of %s that are not named as images (%s): %s",
                    len(other), directory, ", ".join(sorted(folder.IMAGE_EXTENSIONS)),
                    ", ".join(sorted(other)[:10]))
  if not found:
    raise PredictionError(f"No image files in {directory} (extensions: "
                          f"{', '.join(sorted(folder.IMAGE_EXTENSIONS))}).")
  return sorted(found)


def decode(directory: str, files: Sequence[str], image_shape: Sequence[int]) -> np.ndarray:
  """uint8 (N, H, W, C): `files` decoded as the run's images were (`folder.decode_image`)."""
  h, w, c = image_shape
  if h != w:  # decode_image resizes to squares, as training's image_size does.
    raise PredictionError(f"The run's images are {h}x{w}: predict.py resizes to square "
                          "images only.")
  images = []
  for rel in files:
    try:
      images.append(folder.decode_image(Path(directory) / rel, h, grayscale=c == 1))
    except folder.TooLargeError as e:
      raise PredictionError(f"{os.path.join(directory, rel)} is too large to decode "
                            f"({e}).") from None
    except folder.NotEightBitError as e:
      raise PredictionError(f"{os.path.join(directory, rel)} is not an 8-bit image ({e}); "
                            "convert it to 8 bits.") from None
    # Broken files fail in many ways (OSError, SyntaxError, struct.error, ...).
    except Exception as e:  # pylint: disable=broad-except
      why = str(e).splitlines()[0] if str(e) else ""
      raise PredictionError(f"{os.path.join(directory, rel)} is not an image Pillow can "
                            f"decode ({type(e).__name__}: {why}).") from None
  return np.stack(images)


def softmax(logits: np.ndarray) -> np.ndarray:
  """exp(l - max l) / sum exp(l - max l) per row, in float64."""
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def load_model(workdir: str) -> export.ExportedModel:
  """RUN's export, checked against RUN's records (`workdir` may also be an export alone)."""
  if not os.path.isdir(workdir):
    raise PredictionError(f"--workdir={workdir} is not a directory.")
  if not export.has_export(workdir):
    raise PredictionError(f"{workdir} has no exported model ("
                          f"{os.path.join(workdir, export.DIRECTORY, export.METADATA)} is "
                          "missing): a run writes it when it finishes.")
  is_run = os.path.exists(os.path.join(workdir, run_directory.CONFIG))
  return export.load(workdir, run_directory.read_run(workdir) if is_run else None)


def predict(workdir: str, images: str, top_k: int) -> list[list[Any]]:
  """The CSV's rows, header first (see the module doc)."""
  exported = load_model(workdir)
  names = exported.class_names
  if not 1 <= top_k <= len(names):
    raise PredictionError(f"--top_k must be in 1..{len(names)} (the run's classes), got "
                          f"{top_k}.")
  files = image_files(images)
  decoded = decode(images, files, exported.image_shape)
  logits = np.concatenate([np.asarray(exported.logits(decoded[i:i + BATCH]))
                           for i in range(0, len(decoded), BATCH)])
  probabilities = softmax(logits)
  order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k]
  header = ["file"] + [f"{k}_{i}" for i in range(1, top_k + 1)
                       for k in ("class", "probability")]
  return [header] + [[rel] + [v for j in row for v in (names[j], f"{p[j]:.6f}")]
                     for rel, row, p in zip(files, order, probabilities)]


def write_csv(rows: list[list[Any]], out: TextIO) -> None:
  csv.writer(out, lineterminator="\n").writerows(rows)


def _csv_text(rows: list[list[Any]]) -> str:
  text = io.StringIO()
  write_csv(rows, text)
  return text.getvalue()


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS

  def work() -> list[list[Any]]:
    process.configure()
    rows = predict(FLAGS.workdir, FLAGS.images, FLAGS.top_k)
    if FLAGS.out:  # whole or not at all, as every file the project writes
      atomic_file.write_text(FLAGS.out, _csv_text(rows))
    else:
      write_csv(rows, sys.stdout)
    return rows

  rows = exit_codes.run(work, os.path.dirname(os.path.abspath(FLAGS.out or ".")),
                        EXPECTED_ERRORS, unwritten=f"The predictions ({FLAGS.out or 'stdout'})",
                        bad_arguments=(PredictionError,))
  if FLAGS.out:
    print(f"{len(rows) - 1} images -> {FLAGS.out}")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A finished run's directory (or its model/).")
  flags.DEFINE_string("images", None, "A folder of image files (subfolders included).")
  flags.DEFINE_integer("top_k", 5, "Classes per image, most probable first.")
  flags.DEFINE_string("out", "", "The CSV file to write (default: the standard output).")
  flags.mark_flags_as_required(["workdir", "images"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from training import command_line  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)  # a bad flag: one line, status 2
