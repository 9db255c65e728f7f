"""The import graph holds the layers: every import goes down, none goes round.

Every ``import`` of the two packages counts, at module level or inside a function, except those
under ``if TYPE_CHECKING:`` (they never run). Layers, bottom to top (``README.md``, Layout)::

    landscape.engine
    landscape.data, landscape.models, landscape.store
    landscape.train
    probes
    landscape.surfaces
    landscape.plot
    landscape.report
    landscape.sweep
    landscape.cli

A module may import its own package (siblings, without cycles) and any lower layer. ``probes``
imports nothing of the file format or the application layer, although the store sits lower:
probes return records; writing them is the caller's business.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ("landscape.engine",),
    ("landscape.data", "landscape.models", "landscape.store"),
    ("landscape.train",),
    ("probes",),
    ("landscape.surfaces",),
    ("landscape.plot",),
    ("landscape.report",),
    ("landscape.sweep",),
    ("landscape.cli",),
]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}
FORBIDDEN = {
    "probes": (
        "landscape.store",
        "landscape.surfaces",
        "landscape.plot",
        "landscape.report",
        "landscape.sweep",
        "landscape.cli",
    )
}


def modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name."""
    out = {}
    for pkg in ("landscape", "probes"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that ``name`` imports (the nearest known module of each)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                if path.name != "__init__.py":
                    parts = parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                found.add(target)
    return found


def unit(name: str) -> str | None:
    """The layer unit a module belongs to (None for the packages' roots)."""
    if name == "landscape.__main__":
        return "landscape.cli"
    for u in sorted(RANK, key=len, reverse=True):
        if name == u or name.startswith(u + "."):
            return u
    return None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    lost = [m for m in modules() if m not in ("landscape", "probes") and unit(m) is None]
    assert not lost, f"modules outside every layer (add them to LAYERS): {lost}"


def test_no_import_goes_up():
    bad = []
    for src, targets in graph().items():
        for dst in targets:
            a, b = unit(src), unit(dst)
            if a is None or b is None or a == b:
                continue
            if RANK[b] >= RANK[a]:
                bad.append(f"{src} -> {dst}")
    assert not bad, "imports that go up or sideways:\n" + "\n".join(sorted(bad))


def test_probes_import_nothing_of_the_file_or_the_application():
    bad = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        if unit(src) == "probes"
        for dst in targets
        if dst.startswith(FORBIDDEN["probes"])
    ]
    assert not bad, "\n".join(sorted(bad))


def test_no_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_what_it_must(tmp_path):
    # the graph's own machinery on a known case: a function-level import counts, one under
    # TYPE_CHECKING does not, a relative import resolves, and a cycle is found
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from landscape.cli import main\n"
        "def f():\n    from .objective import Objective\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(src)
    known = {
        "landscape.engine.mod": path,
        "landscape.engine.objective": path,
        "landscape.cli": path,
    }
    assert imports("landscape.engine.mod", path, known) == {"landscape.engine.objective"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("pkg", ["landscape", "probes"])
def test_top_level_stays_small(pkg):
    top = [
        p.name
        for p in (ROOT / pkg).iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p.is_dir() and (p / "__init__.py").exists())
    ]
    assert len(top) <= 12, f"{pkg}/ holds {len(top)} modules and packages: {sorted(top)}"
