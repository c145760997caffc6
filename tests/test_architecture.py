"""The shape of the code: gradflow stands alone, no import cycle, the training loop is imported only from the top,
and the command layer is installed under subpt, not as a top-level `cli` package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gradflow": ROOT / "gradflow", "subpt": ROOT / "subpt", "cli": ROOT / "cli"}
TRAIN_LOOP = "subpt.train"


def _module_name(path: Path) -> str:
    for name, folder in PACKAGES.items():
        if folder in path.parents:
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for folder in PACKAGES.values() for p in sorted(folder.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file (functions included, TYPE_CHECKING blocks not)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            t = t.replace("subpt._cli", "cli")
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_import_gradflow_loads_no_subpt_module() -> None:
    code = ("import sys, gradflow, gradflow.analysis, gradflow.html, gradflow.plots, gradflow.report, "
            "gradflow.windowbasis, gradflow.atomic; print(sorted(m for m in sys.modules if m.split('.')[0] == 'subpt'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_gradflow_imports_nothing_of_subpt_or_the_cli(graph: dict[str, set[str]]) -> None:
    bad = {m: sorted(t for t in ts if not t.startswith("gradflow")) for m, ts in graph.items() if m.startswith("gradflow")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    """A module's imports (anywhere in the file) never lead back to it; a package's __init__ counts as a module."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_training_loop_is_imported_only_by_the_commands_and_the_experiments(graph: dict[str, set[str]]) -> None:
    importers = sorted(m for m, ts in graph.items() if TRAIN_LOOP in ts)
    assert importers, "nothing imports the training loop?"
    assert [m for m in importers if not m.startswith(("cli", "subpt.experiments"))] == []


def test_the_cli_is_installed_as_subpt_cli_not_as_a_top_level_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the project supports 3.10
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setup = project["tool"]["setuptools"]
    assert "cli" not in setup["packages"] and not any(p.startswith("cli.") for p in setup["packages"])
    assert setup["package-dir"] == {"subpt._cli": "cli"}
    assert set(project["project"]["scripts"].values()) == {"subpt._cli.subpt_app:main", "subpt._cli.gradflow_app:main"}
