"""The layering of README's code map, read from the source: who may import whom.

Every import counts, also those inside functions (the lazy ones that keep start-up cheap) and
those under TYPE_CHECKING. A package's own `__init__` running before its submodules is not an
import of the submodule's, so it is not an edge.
"""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("studio", "storage")
TORCH_FLOWS = ("studio.engine", "studio.engine_models", "studio.training")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
    files["app"] = ROOT / "app.py"
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from studio import packs` imports the module studio.packs, not just the package.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = project_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_imports_inside_functions(graph):
    # studio/runtime.py imports the engine only inside `Runtime.engine`.
    assert "studio.engine" in graph["studio.runtime"]
    assert "studio.services.tunes" in graph["studio.core"]


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_storage_imports_nothing_of_studio(graph):
    bad = {m: sorted(t for t in ts if within(t, "studio")) for m, ts in graph.items() if within(m, "storage")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


@pytest.mark.parametrize("face", ["studio.ui", "studio.api"])
def test_ui_and_api_import_neither_storage_nor_services_nor_the_torch_flows(graph, face):
    bad = {m: sorted(t for t in ts if within(t, "storage", *TORCH_FLOWS)) for m, ts in graph.items() if within(m, face)}
    assert {m: ts for m, ts in bad.items() if ts} == {}


@pytest.mark.parametrize("face", ["studio.ui", "studio.api"])
def test_only_the_face_itself_and_app_import_it(graph, face):
    importers = sorted(m for m, ts in graph.items() if not within(m, face) and any(within(t, face) for t in ts))
    assert importers == ["app"]


def test_services_import_neither_the_facade_nor_a_face(graph):
    bad = {
        m: sorted(t for t in ts if within(t, "studio.core", "studio.ui", "studio.api"))
        for m, ts in graph.items()
        if within(m, "studio.services", "studio.runtime")
    }
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in project_files().items()}
    assert sizes["studio.core"] <= 450
    assert {name: size for name, size in sizes.items() if size > 800} == {}
