"""The layout rules of issue 14: no import cycle, kernels/ below harness/, suites apart, short modules.

The oracle is the source itself: every import statement (module-level and function-local) of
every module under harness/ and kernels/, parsed with ast.
"""
import ast
from pathlib import Path

from tests.conftest import REPO

MAX_LINES = 600
SUITES = ("harness.bench.loss", "harness.bench.train", "harness.bench.counting", "harness.bench.smoothing",
          "harness.bench.static")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("harness", "kernels"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def owner(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph = {name: set() for name in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                dep = owner(target)
                # a package's __init__ imported on the way to its own submodule is not an edge back
                if dep and dep != name and not name.startswith(dep + "."):
                    graph[name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_kernels_import_nothing_of_harness():
    graph = import_graph()
    assert {(m, d) for m, deps in graph.items() if m.startswith("kernels") for d in deps if d.startswith("harness")} == set()


def test_no_suite_imports_another():
    graph = import_graph()
    assert {(m, d) for m in SUITES if m in graph for d in graph[m] if d in SUITES} == set()


def test_no_module_over_the_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
