"""The parts depend on each other one way: no import cycle between them.

Units: ``tracker.<module>`` (``tracker.body``, ``tracker.fitter``, ``tracker.server``, ...),
``engines``, ``calibration`` and ``trainer``. Every import counts, including those inside
functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tracker", "engines", "calibration", "trainer")


def unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tracker" and len(parts) > 1 else parts[0]


def import_graph() -> dict[str, dict[str, str]]:
    """``{unit: {imported unit: a file that imports it}}``."""
    graph: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for part in PARTS:
        for f in (ROOT / part).rglob("*.py"):
            mod = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    if n.split(".")[0] in PARTS and unit(n) not in (unit(mod), "tracker"):
                        graph[unit(mod)].setdefault(unit(n), str(f.relative_to(ROOT)))
    return graph


def find_cycle(graph) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(u, path):
        state[u] = 1
        for v in graph.get(u, {}):
            if state.get(v) == 1:
                return [*path[path.index(v):], v]
            if v not in state and (c := visit(v, [*path, v])):
                return c
        state[u] = 2
        return None

    for u in list(graph):
        if u not in state and (c := visit(u, [u])):
            return c
    return None


def test_no_import_cycle_between_the_parts():
    graph = import_graph()
    assert "engines" in graph and "tracker.server" in graph  # the scan sees the code
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(
        f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)) + f" -> {cycle[-1]}"


def test_the_wire_and_the_fitter_stay_below_the_shells():
    graph = import_graph()
    for low in ("tracker.protocol", "tracker.geometry", "tracker.body", "tracker.signals",
                "tracker.fitter", "engines"):
        above = {"tracker.server", "tracker.viewer", "tracker.commands", "tracker.cli",
                 "calibration", "trainer", "tracker.stream"}
        assert not set(graph.get(low, {})) & above, (low, graph.get(low))
