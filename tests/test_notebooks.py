"""The notebooks run top to bottom in a fresh kernel, and their committed form stays reviewable.

Each notebook is executed with nbclient in a fresh python3 kernel (ipykernel), from
notebooks/, with RECTIFIERS_NOTEBOOK_QUICK=1, which its parameter cell reads to shrink the
work (train_and_inspect.ipynb: 2 epochs of 3 steps in a temporary directory). Any cell
that raises fails the test. The kernel inherits this process's environment, so the fast
XLA compile flags and compilation cache of conftest.py apply to it too.
"""

import copy
import json
import shutil

import pytest

from tests.helpers import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebooks import strip  # noqa: E402  (needs nbformat)

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _execute(path, monkeypatch, tmp_path, **env) -> nbformat.NotebookNode:
  monkeypatch.setenv("RECTIFIERS_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # where quick runs write (tempfile.mkdtemp)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(path, as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(path.parent)}}).execute()
  return nb


def _text_outputs(nb) -> str:
  out = []
  for cell in nb.cells:
    for output in cell.get("outputs", []):
      out.append(output.get("text", ""))
      out.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
  return "\n".join(out)


def test_there_are_the_three_notebooks():
  assert [p.name for p in NOTEBOOKS] == ["rectifiers.ipynb", "results.ipynb",
                                         "train_and_inspect.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_a_fresh_kernel(path, monkeypatch, tmp_path):
  nb = _execute(path, monkeypatch, tmp_path)  # raises CellExecutionError on the first failing cell
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count == i + 1 for i, c in enumerate(code))
  assert not [o for c in code for o in c.outputs if o.output_type == "error"]
  figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
  assert figures, "every notebook draws at least one figure"


@pytest.mark.slow
def test_results_notebook_reads_a_study_with_train_eval_columns(tmp_path, monkeypatch):
  # Two settings of the committed study, given the test-mode training columns that newer
  # runs record: the notebook adds the test-mode and gap columns.
  study = tmp_path / "study"
  for setting in ("relu", "prelu"):
    shutil.copytree(REPO / "results" / "cifar10-mini" / "runs" / setting, study / setting)
    for run in (study / setting).glob("seed*"):
      rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
      for row in rows:
        row.update(train_eval_error=row["train_error"] - 0.05, train_eval_loss=1.0)
      (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
      summary = json.loads((run / "summary.json").read_text())
      summary.update(train_eval_error=rows[-1]["train_eval_error"], train_eval_loss=1.0)
      (run / "summary.json").write_text(json.dumps(summary))
  nb = _execute(REPO / "notebooks" / "results.ipynb", monkeypatch, tmp_path,
                RECTIFIERS_NOTEBOOK_STUDY=str(study))
  text = _text_outputs(nb)
  assert "10 finished runs" in text
  assert "train, test mode" in text and "gap: test − train (test mode)" in text
  # The study in detail holds the two settings it was given; the last section then sets
  # every committed study side by side.
  assert "settings: ReLU (5 seeds), PReLU (5 seeds)\n" in text
  assert "small-data/n500-nodropout: 500 images, dropout 0, 150 epochs" in text


# --- The committed notebooks ---------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_its_outputs_in_execution_order(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
  assert [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
  assert not [o for c in code for o in c.outputs if o.output_type == "error"]
  first = nb.cells[0]
  assert first.cell_type == "markdown" and 'pip install -e ".[notebooks]"' in first.source
  assert any("parameters" in c.metadata.get("tags", []) for c in code) or path.stem == "rectifiers"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped_and_names_no_local_path(path):
  assert not strip.strip_file(str(path), check=True), (
      f"run: python -m notebooks.strip notebooks/{path.name}")
  text = path.read_text()
  assert str(REPO) not in text and str(REPO.parent) + "/" not in text


def _volatile(nb):
  """`nb` as an editor and a kernel leave it: timestamps, widget state, random ids, a
  stream split in two."""
  nb = copy.deepcopy(nb)
  nb.metadata.update(language_info={"name": "python", "version": "3.11.9"},
                     widgets={"application/vnd.jupyter.widget-state+json": {"state": {}}},
                     kernelspec={"display_name": ".venv", "language": "python", "name": "venv"})
  for i, cell in enumerate(nb.cells):
    cell.id = f"random-{i}-{id(cell)}"
    cell.metadata["collapsed"] = False
    if cell.cell_type == "code":
      cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
      streams = [o for o in cell.outputs if o.output_type == "stream"]
      if streams and len(streams[0].text) > 1:
        text = streams[0].text
        streams[0].text = text[:len(text) // 2]
        cell.outputs.insert(cell.outputs.index(streams[0]) + 1, nbformat.v4.new_output(
            "stream", name=streams[0].name, text=text[len(text) // 2:]))
  return nb


def test_strip_removes_volatile_metadata_keeps_outputs_and_is_idempotent(tmp_path):
  committed = nbformat.read(REPO / "notebooks" / "rectifiers.ipynb", as_version=4)
  path = tmp_path / "n.ipynb"
  nbformat.write(_volatile(committed), str(path))
  assert strip.strip_file(str(path), check=True)  # it has something to strip
  assert strip.strip_file(str(path))
  once = path.read_text()
  assert not strip.strip_file(str(path))  # idempotent: nothing left to strip
  assert path.read_text() == once
  # What remains is the committed notebook: outputs (streams joined again), tags, counts.
  assert once == (REPO / "notebooks" / "rectifiers.ipynb").read_text()
  stripped = nbformat.read(str(path), as_version=4)
  assert "widgets" not in stripped.metadata and "version" not in stripped.metadata.language_info
  assert all("execution" not in c.metadata and "collapsed" not in c.metadata
             for c in stripped.cells)
  assert sum(len(c.get("outputs", [])) for c in stripped.cells) > 5


def test_strip_check_exits_1_on_an_unstripped_notebook(tmp_path, capsys):
  committed = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
  path = tmp_path / "n.ipynb"
  nbformat.write(_volatile(committed), str(path))
  assert strip.main(["--check", str(path)]) == 1
  assert "Not stripped" in capsys.readouterr().err
  assert strip.main([str(path)]) == 0
  assert strip.main(["--check", str(path)]) == 0


def test_execute_with_out_writes_a_copy_and_leaves_the_notebook_unchanged(tmp_path, capsys):
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                               "language": "python"}
  path = tmp_path / "n.ipynb"
  nbformat.write(nb, str(path))
  before = path.read_bytes()
  assert strip.main(["--execute", f"--out={tmp_path / 'executed'}", str(path)]) == 0
  assert path.read_bytes() == before
  executed = nbformat.read(str(tmp_path / "executed" / "n.ipynb"), as_version=4)
  assert executed.cells[0].outputs[0].text == "42\n"
  assert capsys.readouterr().out.strip() == str(tmp_path / "executed" / "n.ipynb")
