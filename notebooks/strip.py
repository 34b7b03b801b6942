r"""Keeps committed notebooks reviewable: outputs stay, volatile metadata goes.

    python -m notebooks.strip notebooks/*.ipynb             # strip in place
    python -m notebooks.strip --check notebooks/*.ipynb     # exit 1 if any would change
    python -m notebooks.strip --execute notebooks/results.ipynb   # run, then strip
    python -m notebooks.strip --execute --out=/tmp/nb notebooks/results.ipynb  # a copy

Run from the repository root. `--execute` runs each notebook top to bottom in a fresh
python3 kernel (nbclient, the `notebooks` extra) from the notebook's own directory, and
writes it back with its outputs (or, with `--out=DIR`, writes DIR/NAME.ipynb and leaves the
committed file as it is); an error stops with the failing cell's traceback and leaves the
file as it was.

Stripping keeps every cell's source, outputs, execution count and `tags` ("parameters"
marks a notebook's parameter cell), and drops what changes from one execution or machine to
the next without changing what a reader sees:
  * notebook metadata other than the kernel's name and the language's name (Python's
    version, widget state, editor settings);
  * cell metadata other than `tags` (`execution` timestamps, collapsed/scrolled state);
  * the metadata of execute_result outputs, and the splits between consecutive pieces of
    one stream (where the kernel happened to flush stdout);
  * random cell ids: each id becomes a hash of the cell's type and source, so an edit
    changes only its own cell's id.
Stripping is idempotent: a stripped notebook strips to the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from typing import Any

import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
KEPT_CELL_METADATA = ("tags",)


def _cell_id(cell: Any, seen: set[str]) -> str:
  digest = hashlib.sha256(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:12]
  cell_id, n = digest, 1
  while cell_id in seen:  # two cells with the same source
    n += 1
    cell_id = f"{digest}-{n}"
  seen.add(cell_id)
  return cell_id


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
  """Removes volatile metadata from `nb` in place (see the module doc) and returns it."""
  nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC,
                                    "language_info": {"name": "python"}})
  if (nb.nbformat, nb.nbformat_minor) < (4, 5):
    nb.nbformat, nb.nbformat_minor = 4, 5  # the first version with cell ids
  seen: set[str] = set()
  for cell in nb.cells:
    cell.metadata = nbformat.from_dict(
        {k: cell.metadata[k] for k in KEPT_CELL_METADATA if cell.metadata.get(k)})
    cell.id = _cell_id(cell, seen)
    if cell.cell_type == "code":
      outputs: list[Any] = []
      for output in cell.outputs:
        if output.output_type == "execute_result":
          output.metadata = nbformat.from_dict({})
        if (output.output_type == "stream" and outputs and outputs[-1].output_type == "stream"
            and outputs[-1].name == output.name):
          outputs[-1].text += output.text
        else:
          outputs.append(output)
      cell.outputs = outputs
  return nb


def _text(nb: nbformat.NotebookNode) -> str:
  return nbformat.writes(nb) + "\n"


def strip_file(path: str, check: bool = False) -> bool:
  """Strips the notebook at `path`; returns whether it changed (with `check`, nothing
  is written)."""
  with open(path, encoding="utf-8") as f:
    before = f.read()
  after = _text(strip(nbformat.reads(before, as_version=4)))
  if after != before and not check:
    with open(path, "w", encoding="utf-8") as f:
      f.write(after)
  return after != before


def execute_file(path: str, timeout: int = 1200, out: str | None = None) -> str:
  """Runs the notebook at `path` top to bottom in a fresh python3 kernel, from its
  directory, and writes it, stripped, with its outputs to `out` (default: back to `path`);
  returns where it wrote."""
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  with open(path, encoding="utf-8") as f:
    nb = nbformat.read(f, as_version=4)
  NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                 resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}
                 ).execute()
  out = out or path
  with open(out, "w", encoding="utf-8") as f:
    f.write(_text(strip(nb)))
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("paths", nargs="+", help="notebooks (.ipynb)")
  parser.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if any notebook is not stripped")
  parser.add_argument("--execute", action="store_true",
                      help="run each notebook in a fresh kernel first")
  parser.add_argument("--out", default=None,
                      help="with --execute: write the executed notebooks into this folder "
                           "and leave the given files unchanged")
  args = parser.parse_args(argv)
  if args.out and not args.execute:
    parser.error("--out applies to --execute (stripping alone rewrites in place).")
  changed = []
  for path in args.paths:
    if args.out:
      os.makedirs(args.out, exist_ok=True)
      print(execute_file(path, out=os.path.join(args.out, os.path.basename(path))))
      continue
    if args.execute:
      execute_file(path)
    if strip_file(path, check=args.check):
      changed.append(path)
  if args.check and changed:
    print("Not stripped (run python -m notebooks.strip on them): " + ", ".join(changed),
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
