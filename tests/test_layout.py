"""The package's shape (docs/design.md, "The package's shape"), read from the source with
:mod:`ast`: no import cycle between modules, none between the package's areas but the
ones allowed below (each with its reason), and the in-app side never imports the readers.

Every ``looptools`` import counts, at module level or inside a function (a lazy import
still runs); those under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import looptools

PACKAGE = Path(looptools.__file__).resolve().parent

#: The top-level areas: a module inside one counts as that area; any other module of the
#: package (settings, _frames, ...) is an area of its own.
AREAS = ("plugins", "inapp", "live", "report", "gate", "cli", "profilers", "pytest_plugin")

#: Area imports that close a cycle, allowed with their reason.  Without them the areas
#: import each other in one direction only.
ALLOWED_BACK_EDGES: dict[tuple[str, str], str] = {
    ("live", "inapp"):
        "live/stream.py is the stream's writer as well as its reader: a hub Detector "
        "(inapp.hub) that the monitor adds in the app; the dashboard reads what it sends",
    ("profilers", "inapp"):
        "the yappi sampler runs in the app, a hub Detector (inapp.hub) that the monitor "
        "adds under `looptools profile --sampler yappi`; the rest drives py-spy from outside",
    ("plugins", "inapp"):
        "plugins/ and inapp/ are both the in-app side: asyncio_loop's watchdog thread keeps "
        "process signals off itself with inapp._ourthreads, as every looptools thread does",
}

#: Module cycles, allowed with their reason.
ALLOWED_MODULE_CYCLES: dict[tuple[str, ...], str] = {
    ("looptools.plugins", "looptools.plugins.asyncio_loop", "looptools.plugins.qasync_loop",
     "looptools.plugins.qtasyncio_loop"):
        "plugins/__init__.py's plugin_for imports the loop kinds lazily (only the one the app "
        "runs), and they take the LoopPlugin and Driver base classes from it",
}

#: What the in-app side (plugins/, inapp/) must never import, directly or through others.
READERS = ("looptools.report", "looptools.gate", "looptools.live.dashboard", "looptools.cli")
IN_APP = ("looptools.plugins", "looptools.inapp")


def _module_names(package: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, str | None]]:
    """``(module, name)`` for each import: ``import a.b`` -> (a.b, None), ``from a import b``
    -> (a, b); relative ones resolved; the bodies of ``if TYPE_CHECKING:`` skipped."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            yield from ((base, alias.name) for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b`` is ``a.b`` when
    that is a module, else ``a``)."""
    modules = _module_names(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        targets = set()
        for base, member in _imported(tree, name, path.name == "__init__.py"):
            if member is not None and f"{base}.{member}" in modules:
                targets.add(f"{base}.{member}")
            elif base in modules:
                targets.add(base)
        graph[name] = targets - {name}
    return graph


def area(module: str) -> str:
    """``looptools.inapp.monitor`` -> ``inapp``; ``looptools.settings`` -> ``settings``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def area_graph(graph: Mapping[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    """Area -> area it imports -> the module imports behind that edge."""
    areas: dict[str, dict[str, list[str]]] = {}
    for module, targets in graph.items():
        for target in targets:
            if area(module) != area(target):
                areas.setdefault(area(module), {}).setdefault(area(target), []).append(
                    f"{module} -> {target}")
    return areas


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _area_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    areas = area_graph(graph)
    kept = {a: {b for b in targets if (a, b) not in ALLOWED_BACK_EDGES}
            for a, targets in areas.items()}
    return cycles(kept)


def test_no_module_cycle() -> None:
    graph = import_graph()
    assert "looptools.inapp.monitor" in graph and "looptools.gate.evaluate" in graph
    assert [c for c in cycles(graph) if tuple(c) not in ALLOWED_MODULE_CYCLES] == []
    # An allowed cycle that is gone is taken off the list.
    assert all(list(c) in cycles(graph) for c in ALLOWED_MODULE_CYCLES)


def test_no_area_cycle_but_the_allowed_ones() -> None:
    graph = import_graph()
    areas = area_graph(graph)
    assert set(AREAS) <= {area(module) for module in graph}
    assert _area_cycles(graph) == [], {
        f"{a} -> {b}": edges for a, targets in areas.items() for b, edges in targets.items()}
    # An allowed edge that is gone is taken off the list.
    for a, b in ALLOWED_BACK_EDGES:
        assert b in areas.get(a, {}), f"{a} -> {b} is allowed but no longer imported"


def test_the_in_app_side_never_imports_the_readers() -> None:
    graph = import_graph()

    def reader(module: str) -> bool:
        return any(module == r or module.startswith(r + ".") for r in READERS)

    in_app = [m for m in graph if any(m == p or m.startswith(p + ".") for p in IN_APP)]
    assert "looptools.inapp.monitor" in in_app and "looptools.plugins.asyncio_loop" in in_app
    direct = {m: sorted(filter(reader, graph[m])) for m in in_app if any(map(reader, graph[m]))}
    assert direct == {}
    # Nor through another module (stream.py, profilers.py, settings.py, ...).
    seen, todo = set(in_app), list(in_app)
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert sorted(filter(reader, seen)) == []


def test_the_checks_see_the_cycle_that_was_removed() -> None:
    # Until the monitor added the yappi sampler itself: monitor -> live.stream (the writer
    # added the sampler) -> profilers (which asked the monitor whether it stopped) -> monitor.
    graph = import_graph()
    assert "looptools.profilers" not in graph["looptools.live.stream"]
    assert "looptools.inapp.monitor" not in graph["looptools.profilers"]
    assert "looptools.live.stream" in graph["looptools.inapp.monitor"]
    before = {**graph, "looptools.live.stream": graph["looptools.live.stream"] | {
        "looptools.profilers"}, "looptools.profilers": graph["looptools.profilers"] | {
        "looptools.inapp.monitor"}}
    assert cycles(before) == [
        ["looptools.inapp.monitor", "looptools.live.stream", "looptools.profilers"],
        *cycles(graph)]
    assert _area_cycles(before) == [["live", "profilers"]]


def test_imports_under_type_checking_do_not_count(tmp_path: Path) -> None:
    pkg = tmp_path / "looptools"
    (pkg / "inapp").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inapp" / "__init__.py").write_text("")
    (pkg / "inapp" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from looptools.inapp import b\n"
        "else:\n    from . import c\n\ndef f():\n    import looptools.settings\n")
    for name in ("b", "c"):
        (pkg / "inapp" / f"{name}.py").write_text("from .a import f\n")
    (pkg / "settings.py").write_text("")
    graph = import_graph(pkg)
    assert graph["looptools.inapp.a"] == {"looptools.inapp.c", "looptools.settings"}
    assert graph["looptools.inapp.b"] == {"looptools.inapp.a"}
    assert cycles(graph) == [["looptools.inapp.a", "looptools.inapp.c"]]
