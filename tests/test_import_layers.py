"""The import graph: data flows one way through flowcheck's layers, and no package imports in a circle.

The layers and the report's forbidden imports are import-linter contracts in pyproject.toml
(``[tool.importlinter]``: data -> models -> engine -> analyses -> claims -> record -> report -> plugin, never
upward); the first test runs them with ``lint-imports``. The second builds the graph with grimp and finds
cycles between the children of every package (``flowcheck.claims`` <-> ``flowcheck.analyses``,
``flowcheck.engine.fast`` <-> ``flowcheck.engine.scoring``, ...), which the layers contract does not see
inside one layer or one subpackage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict, deque
from itertools import pairwise
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "flowcheck"

Edge = tuple[str, str]


def broken_contracts_section(output: str) -> str:
    """The part of lint-imports' output that names the broken contracts and their imports (all of it if absent)."""
    marker = "Broken contracts"
    return output[output.index(marker) :] if marker in output else output


def test_import_layer_contracts_hold():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run(
        [sys.executable, "-c", command, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(
            "flowcheck's import layers are broken (contracts: [tool.importlinter] in pyproject.toml). Move the "
            "import down a layer (or the shared code into a lower module), or, if the design changed, change the "
            "contract. lint-imports says:\n" + broken_contracts_section(done.stdout + done.stderr),
            pytrace=False,
        )


def package_graph() -> grimp.ImportGraph:
    """The import graph of the flowcheck package this test file belongs to (imports inside functions included)."""
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph(PACKAGE, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    return graph


def child_edges(graph: grimp.ImportGraph, package: str) -> dict[Edge, list[str]]:
    """Imports between the children of `package`, each child standing for itself and its descendants:
    {(child a, child b): ["importer:line -> imported", ...]}."""
    children = graph.find_children(package)

    def owner(module: str) -> str | None:
        return next((c for c in children if module == c or module.startswith(c + ".")), None)

    edges: dict[Edge, list[str]] = defaultdict(list)
    for importer in graph.modules:
        a = owner(importer)
        if a is None:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            b = owner(imported)
            if b is not None and b != a:
                for detail in graph.get_import_details(importer=importer, imported=imported) or [{}]:
                    edges[(a, b)].append(f"{importer}:{detail.get('line_number', '?')} -> {imported}")
    return {edge: sorted(imports) for edge, imports in edges.items()}


def shortest_cycles(edges: dict[Edge, list[str]]) -> list[list[str]]:
    """A shortest cycle through each node that lies on one, one per set of nodes, each starting at its smallest
    node: [[a, b, ..., a], ...], sorted."""
    successors: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        successors[a].add(b)
    cycles: dict[frozenset[str], list[str]] = {}
    for start in sorted(successors):
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in successors[node]:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                ring = [start, *reversed(path[:-1])]
                first = ring.index(min(ring))
                ring = ring[first:] + ring[:first]
                cycles.setdefault(frozenset(ring), [*ring, ring[0]])
                break
            for nxt in sorted(successors[node]):
                if nxt not in previous and nxt != start:
                    previous[nxt] = node
                    queue.append(nxt)
    return sorted(cycles.values())


def describe(cycle: list[str], edges: dict[Edge, list[str]]) -> str:
    steps = []
    for a, b in pairwise(cycle):
        shown = edges[(a, b)][:3]
        more = len(edges[(a, b)]) - len(shown)
        steps.append(f"  {a} -> {b}: " + ", ".join(shown) + (f" (+{more} more)" if more > 0 else ""))
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_cycle_finder_on_a_hand_made_graph():
    edges = {("a", "b"): ["a.x:1 -> b"], ("b", "a"): ["b:2 -> a.y"], ("b", "c"): ["b:3 -> c"], ("c", "d"): ["c:4 -> d"]}
    assert shortest_cycles(edges) == [["a", "b", "a"]]
    edges[("d", "b")] = ["d:5 -> b"]
    assert shortest_cycles(edges) == [["a", "b", "a"], ["b", "c", "d", "b"]]
    assert describe(["a", "b", "a"], edges) == "a -> b -> a\n  a -> b: a.x:1 -> b\n  b -> a: b:2 -> a.y"


def test_no_package_imports_its_siblings_in_a_circle():
    graph = package_graph()
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    found = []
    for package in packages:
        edges = child_edges(graph, package)
        found += [f"in {package}: {describe(cycle, edges)}" for cycle in shortest_cycles(edges)]
    if found:
        pytest.fail(
            "import cycles between flowcheck modules (make each one-way: move what both need into a lower "
            "module):\n" + "\n".join(found),
            pytrace=False,
        )
