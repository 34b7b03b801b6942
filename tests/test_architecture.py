"""docs/architecture.md's code map is true: each row's "may import" against the real imports.

Every module of the project is parsed with `ast` (imports inside functions count too), its
project imports are resolved to modules, and each must be one its row of the table allows:
a name the row gives (a package covers its modules), "the model modules" / "its modules"
(the row's package), or any module of the rows above when the row says "everything above".
The rows' order is the dependency order, and no module imports a cycle.
"""

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("rectifiers", "models", "input_pipeline", "configs", "training", "reporting",
            "benchmarks")
SCRIPTS = ("train", "evaluate", "predict", "sweep", "report")


def project_modules() -> dict[str, Path]:
  """{dotted name: file} for the scripts and every module of the packages."""
  out = {name: REPO / f"{name}.py" for name in SCRIPTS}
  for package in PACKAGES:
    for file in sorted((REPO / package).glob("*.py")):
      out[package if file.name == "__init__.py" else f"{package}.{file.stem}"] = file
  return out


MODULES = project_modules()


def _resolve(name: str) -> str | None:
  """The project module `name` is or lies in (None for other libraries)."""
  while name and name not in MODULES:
    name = name.rpartition(".")[0]
  return name or None


def imports(module: str) -> set[str]:
  """The project modules `module` imports, anywhere in its file."""
  file = MODULES[module]
  found = set()
  for node in ast.walk(ast.parse(file.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = module if file.name == "__init__.py" else module.rpartition(".")[0]
        base = ".".join(filter(None, [package, node.module]))
      found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                   for a in node.names)
  return {m for m in map(_resolve, found) if m and m != module}


def _is_docstring_only(module: str) -> bool:
  body = ast.parse(MODULES[module].read_text()).body
  return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def table_rows() -> list[tuple[list[str], str]]:
  """[(the row's modules, its "may import" text)] in the table's order."""
  text = (REPO / "docs" / "architecture.md").read_text()
  rows = []
  for line in text.splitlines():
    if not line.startswith("| `"):
      continue
    first, _, may = [cell.strip() for cell in line.strip("|").split("|")]
    names, directory = [], ""
    for path in re.findall(r"`([^`]+)`", first):
      if "/" in path:
        directory = path.rpartition("/")[0]
      file = path.rpartition("/")[2]
      if path.endswith("/"):  # a whole package: benchmarks/, notebooks/
        names += [m for m in MODULES if m.split(".")[0] == directory]
      elif file == "*.py":  # the others of the package
        names.append(f"{directory}.*")
      else:
        stem = file.removesuffix(".py")
        names.append(directory.replace("/", ".") if stem == "__init__"
                     else ".".join(filter(None, [directory.replace("/", "."), stem])))
    rows.append((names, may))
  listed = {n for names, _ in rows for n in names}
  for i, (names, may) in enumerate(rows):  # "configs/*.py": the modules no other row has
    rows[i] = ([m for n in names for m in (
        [m for m in MODULES if m.startswith(n[:-1]) and m not in listed
         and not _is_docstring_only(m)] if n.endswith(".*") else [n])], may)
  return rows


ROWS = table_rows()


def test_every_module_has_a_row():
  listed = {m for names, _ in ROWS for m in names}
  missing = [m for m in MODULES if m not in listed and not _is_docstring_only(m)]
  assert not missing, f"modules without a row in docs/architecture.md: {missing}"


@pytest.mark.parametrize("index", range(len(ROWS)), ids=[", ".join(r[0][:2]) for r in ROWS])
def test_a_row_imports_only_what_it_may(index):
  names, may = ROWS[index]
  if "anything" in may:
    return
  above = {m for earlier, _ in ROWS[:index] for m in earlier}
  allowed = {t for t in re.findall(r"`([\w.]+)`", may) if _resolve(t) == t}
  if "everything above" in may:
    allowed |= above
  if "the model modules" in may or "its modules" in may:
    package = names[0].split(".")[0]
    allowed |= {m for m in MODULES if m.startswith(package + ".")}
  for module in names:
    for target in imports(module):
      ok = any(target == a or target.startswith(a + ".") for a in allowed)
      assert ok, f"{module} imports {target}, which its row does not allow ({may})"
      assert target in above or target in allowed, (
          f"{module} imports {target}, which is not above its row")


def test_the_project_imports_no_cycle():
  graph = {m: imports(m) for m in MODULES}
  state: dict[str, int] = {}  # 1: on the current path, 2: done

  def visit(module: str, path: list[str]) -> None:
    state[module] = 1
    for target in sorted(graph[module]):
      if state.get(target) == 1:
        cycle = path[path.index(target):] + [module, target]
        pytest.fail(f"import cycle: {' -> '.join(cycle)}")
      if target not in state:
        visit(target, path + [module])
    state[module] = 2

  for module in graph:
    if module not in state:
      visit(module, [])


def test_every_training_module_and_the_config_checks_have_their_own_test_file():
  # Each module's behaviour is tested where a reader looks for it (big_vision's habit);
  # entry-point tests (test_train.py) test the modules together.
  wanted = [m for m in MODULES if m.startswith("training.") and not _is_docstring_only(m)]
  wanted.append("configs.validation")
  missing = [m for m in wanted if not (REPO / "tests" / f"test_{m.split('.')[-1]}.py").exists()]
  assert not missing, f"modules without a tests/test_<module>.py: {missing}"


def test_the_training_package_doc_names_every_module_it_holds():
  import training
  named = set(re.findall(r"^  (\w+) ", training.__doc__, flags=re.MULTILINE))
  held = {m.split(".")[1] for m in MODULES if m.startswith("training.")}
  assert named == held, (f"training/__init__.py lacks {sorted(held - named)}, names "
                         f"{sorted(named - held)} it does not hold")
