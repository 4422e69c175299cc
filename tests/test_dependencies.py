"""Dependencies run one way, and no code reaches into another object's private names.

Read statically (``ast``, nothing imported): every ``import`` of the source under ``tracker/``,
``engines/``, ``trainer/`` and ``calibration/``, at module level and inside functions, gives an
edge between *units*: ``tracker.<subpackage or module>`` (``tracker.server``,
``tracker.protocol``, ...), ``engines``, ``calibration`` and ``trainer``, whose command-line
modules (``trainer.cli``, ``trainer.commands``, ``trainer.options``) are units of their own as
``tracker``'s are. The units form no cycle, and each imports only its own layer or lower ones
(``LAYERS``: wire -> geometry, body, signals -> fitter -> engines -> stream session -> I/O
shells -> command line).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tracker", "engines", "trainer", "calibration")
TRAINER_CLI = ("cli", "commands", "options")

# low to high; a unit may import units of its own layer (no cycles) and lower ones
LAYERS = (
    ("wire", {"tracker", "tracker.errors", "tracker.protocol"}),
    ("geometry, body, signals", {"tracker.geometry", "tracker.body", "tracker.signals",
                                 "tracker.motion"}),
    ("fitter", {"tracker.fitter"}),
    ("engines", {"engines"}),
    ("stream session", {"tracker.stream"}),
    ("I/O shells, training", {"tracker.server", "tracker.recording", "tracker.viewer",
                              "tracker.vmc", "tracker.openxr_source", "calibration",
                              "trainer"}),
    ("command line", {"tracker.cli", "tracker.options", "tracker.commands", "trainer.cli",
                      "trainer.commands", "trainer.options"}),
)
LAYER = {u: i for i, (_, units) in enumerate(LAYERS) for u in units}

# ``_``-prefixed names of other objects that are a library's documented entry point
ALLOWED_PRIVATE = {
    ("engines/inductor.py", "torch._inductor"),  # AOTInductor's API: aoti_compile_and_package
    # the call spec of a loaded package, read as torch's own AOTICompiledModel reads it
    ("engines/inductor.py", "from torch.utils import _pytree"),
}


@cache
def modules() -> dict[str, Path]:
    """``{dotted module name: file}`` for every source file of ``PACKAGES``."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "tracker" and len(parts) > 1:
        return f"tracker.{parts[1]}"
    if parts[0] == "trainer" and len(parts) > 1 and parts[1] in TRAINER_CLI:
        return f"trainer.{parts[1]}"
    return parts[0]


def imports(module: str, path: Path):
    """``(imported module, line)`` for every import in the file, wherever it stands."""
    known = modules()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name, node.lineno
            for alias in node.names:  # ``from tracker import stream`` imports tracker.stream
                if f"{name}.{alias.name}" in known:
                    yield f"{name}.{alias.name}", node.lineno


@cache
def unit_graph() -> dict[tuple[str, str], list[str]]:
    """``{(unit, imported unit): ["module:line -> imported", ...]}`` between distinct units."""
    edges = defaultdict(list)
    for module, path in modules().items():
        for target, line in imports(module, path):
            if target.split(".")[0] not in PACKAGES:
                continue
            a, b = unit(module), unit(target)
            if a != b:
                edges[a, b].append(f"{module}:{line} -> {target}")
    return dict(edges)


def find_cycle(edges) -> list[str] | None:
    """A cycle ``[u, ..., u]`` of the directed graph ``edges``, or ``None``."""
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(u):
        state[u] = 1
        path.append(u)
        for v in sorted(succ[u]):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        path.pop()
        state[u] = 2
        return None

    for u in sorted(succ):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_the_graph_is_read():
    edges = unit_graph()
    assert ("tracker.stream", "engines") in edges  # a module-level import
    assert ("tracker.commands", "tracker.server") in edges  # imports inside functions
    assert ("engines", "tracker.fitter") in edges


def test_find_cycle():
    assert find_cycle({("a", "b"): [], ("b", "c"): []}) is None
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("c", "b"): []}) == ["b", "c", "b"]


def test_no_cycle_between_units():
    edges = unit_graph()
    cycle = find_cycle(edges)
    if cycle:
        steps = [f"  {a} -> {b}: {edges[a, b][0]}" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(steps))


def test_units_import_only_their_layer_and_lower():
    edges = unit_graph()
    units = {u for edge in edges for u in edge} | {unit(m) for m in modules()}
    unplaced = sorted(units - set(LAYER))
    assert not unplaced, f"units missing from LAYERS (place them): {unplaced}"
    upward = [f"{a} ({LAYERS[LAYER[a]][0]}) imports {b} ({LAYERS[LAYER[b]][0]}): {how[0]}"
              for (a, b), how in sorted(edges.items()) if LAYER[b] > LAYER[a]]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_protocol_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import tracker.protocol"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def private_reaches(path: Path):
    """``(line, text)`` where ``path`` uses a ``_``-prefixed, non-dunder name of another
    object: ``obj._x`` (but ``self._x``, ``cls._x``, ``super()._x``), ``getattr(obj, "_x")``
    and friends, ``from module import _x``."""

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            own = (isinstance(owner, ast.Name) and owner.id in ("self", "cls")) or (
                isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                and owner.func.id == "super")
            if not own:
                yield node.lineno, ast.unparse(node)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and private(node.args[1].value)
              and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"


def test_private_reaches_are_found(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("import argparse\n"
                   "class A:\n"
                   "    def f(self, parser, w):\n"
                   "        self._ok = super()._ok = cls._ok = __name__ = w.__dict__\n"
                   "        parser._actions.clear()\n"
                   "        getattr(w, '_thread', None)\n"
                   "        from m import _helper\n")
    assert sorted(line for line, _ in private_reaches(src)) == [5, 6, 7]


def test_no_reaching_into_private_names():
    found = []
    for path in modules().values():
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel}:{line}: {text}" for line, text in private_reaches(path)
                  if (rel, text.split("(")[0]) not in ALLOWED_PRIVATE]
    assert not found, "private names of other objects:\n" + "\n".join(found)
