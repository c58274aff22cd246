"""The package's layers show and hold: each module imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pairlib"
FOUNDATION = {"pairlib", "pairlib.errors", "pairlib.clock", "pairlib.config", "pairlib.checks",
              "pairlib.failpoints"}
RANK = {"foundation": 0, "core": 1, "sim": 1, "venue": 2, "edges": 3, "engine": 4,
        "report": 5, "app": 6}


def _layer(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    if module == "pairlib.__main__":  # ``python -m pairlib``: the command line
        return "app"
    part = module.split(".")[1]
    if part not in RANK:
        raise AssertionError(f"{module} is in no layer; put it in one of {sorted(RANK)}")
    return part


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pairlib"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pairlib"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    mods = _modules()
    return {m for m in found if m in mods}


def _allowed(src: str, dst: str) -> str | None:
    """Why ``src`` may not import ``dst`` (None when it may)."""
    a, b = _layer(src), _layer(dst)
    if a == "sim" and b not in ("sim", "foundation"):
        return "sim/ imports only the foundation"
    if a == "core" and (b not in ("core", "foundation") or dst == "pairlib.clock"):
        return "the core imports nothing but the core and the foundation (never the clock)"
    if a == "foundation" and b != "foundation":
        return "the foundation imports nothing above it"
    if RANK[b] > RANK[a]:
        return f"{a} may not import the {b} layer above it"
    return None


MODULES = _modules()


def test_every_module_is_in_a_layer() -> None:
    for m in MODULES:
        _layer(m)
    assert len({_layer(m) for m in MODULES}) == len(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    bad = {dst: why for dst in _imports(MODULES[module]) if (why := _allowed(module, dst))}
    assert not bad, f"{module}: {bad}"


def test_the_checker_catches_an_upward_import() -> None:
    assert _allowed("pairlib.core.strategy", "pairlib.edges.store")
    assert _allowed("pairlib.core.risk", "pairlib.clock")
    assert _allowed("pairlib.sim.market", "pairlib.venue.exchange")
    assert _allowed("pairlib.engine.tick", "pairlib.app.cli")
    assert _allowed("pairlib.engine.tick", "pairlib.edges.store") is None
