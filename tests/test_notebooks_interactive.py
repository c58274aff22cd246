"""The source notebooks as an analyst opens them in JupyterLab: run top to bottom with no
injected parameter, the kernel in ``notebooks/``, paths resolved from the project root; the
tick notebook only previews unless told to trade; headings are Markdown cells and the code
cells hold no logic.

The runs are hermetic: each executes a copy of ``notebooks/`` inside a temporary project
(``params/``, ``notebooks/`` and a ``pyproject.toml`` marker), which is then the project
root, so nothing is written into this repository's ``.state/`` or ``outputs/``.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from tick_fixtures import BAR, GRT_RUNE, START, planted_pairs

from pairlib.app.runner import run_notebook
from pairlib.clock import iso
from pairlib.core.portfolio import pair_id
from pairlib.edges.store import PairSetMeta, Store
from pairlib.sim import Market, SimServer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("tick.ipynb", "generate_pairs.ipynb", "backtest.ipynb")
ENTRY = START + 7 * BAR  # GRT~RUNE enters short at this close
DISPLAY_CALLS = {"show", "display", "print"}


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders``: ``{path: (size, mtime_ns)}``."""
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns)
            for folder in folders if folder.exists()
            for f in folder.rglob("*") if f.is_file()}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A temporary project (``params/``, ``notebooks/``, ``pyproject.toml``); the test fails
    if anything was written into this repository's ``.state/``, ``outputs/`` or
    ``notebooks/`` meanwhile."""
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copytree(ROOT / "params", proj / "params")
    shutil.copytree(ROOT / "notebooks", proj / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (proj / "pyproject.toml").write_text('[project]\nname = "analyst-scratch"\n')
    repo = (ROOT / ".state", ROOT / "outputs", ROOT / "notebooks")
    before = _snapshot(*repo)
    yield proj
    assert _snapshot(*repo) == before, "a notebook run wrote into the repository"


def _tables(db: Store) -> dict[str, pd.DataFrame]:
    names = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")["name"]
    return {t: db.query(f"SELECT * FROM {t}") for t in names}


def _injected(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"]
            if "injected-parameters" in c.get("metadata", {}).get("tags", [])]


def _outputs(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
def test_tick_notebook_opened_without_parameters_only_previews(
    project: Path, sim_market: Market, tmp_path: Path
) -> None:
    """Run as JupyterLab runs it (kernel in ``notebooks/``, no parameter): it finds the
    project's params and store, shows the orders the tick would send, and sends none and
    writes nothing."""
    server = SimServer(sim_market, tmp_path / "venue.json", now=ENTRY, weight_limit=10**9)
    url = server.start()
    try:
        params_file = project / "params" / "pairlib.yaml"
        raw = yaml.safe_load(params_file.read_text())
        raw["venue"]["sim_url"] = url  # the tick takes the running simulator's clock
        params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert raw["state_dir"] == ".state"  # relative: resolved against the project root
        rows = [r for r in planted_pairs(sim_market) if pair_id(r["y"], r["x"]) == GRT_RUNE]
        meta = PairSetMeta(venue_kind="sim", venue_key="sim-s7-n48",
                           timeframe=raw["data"]["timeframe"],
                           lookback=raw["strategy"]["lookback"], code_version="test",
                           data_start=iso(START - timedelta(days=100)),
                           data_end=iso(START - timedelta(days=1)))
        with Store.at(project / ".state") as db:
            db.save_pair_set(START - timedelta(days=1), "test", pd.DataFrame(rows), None,
                             START - timedelta(days=1), meta=meta)
            before = _tables(db)

        out = tmp_path / "report.ipynb"
        res = run_notebook(project / "notebooks" / "tick.ipynb", out, {},
                           cwd=project / "notebooks")
        assert res.ok, res.error
        assert _injected(out) == []  # nothing was passed: the notebook's own defaults ran
        assert res.scraps["status"] == "preview", res.scraps.get("error")
        assert res.scraps["as_of"] == iso(ENTRY)  # found the project's params (sim_url)
        planned = res.scraps["orders"]
        assert res.scraps["n_orders"] == len(planned) == 2  # both legs of the entry...
        assert set(planned["pair_id"]) == {GRT_RUNE}
        assert server.account.orders() == []  # ...and none of them sent
        with Store.at(project / ".state") as db:
            after = _tables(db)
        assert before.keys() == after.keys()
        for table in before:
            pd.testing.assert_frame_equal(before[table], after[table], check_dtype=False,
                                          obj=table)
        assert not (project / "notebooks" / ".state").exists()  # not relative to the kernel
        banner = "".join(_outputs(out)[0]["data"]["text/html"])
        assert "status <b>preview</b>" in banner
        text = out.read_text()
        assert "would send these 2 order(s); none was sent" in text
    finally:
        server.stop()


@pytest.mark.slow
def test_pairs_notebook_opened_without_parameters_runs(project: Path, tmp_path: Path) -> None:
    """Pair generation run as JupyterLab runs it: the shipped params (in-process simulator,
    last closed candle), its pair set stored in the project's store."""
    out = tmp_path / "pairs.ipynb"
    res = run_notebook(project / "notebooks" / "generate_pairs.ipynb", out, {},
                       cwd=project / "notebooks")
    assert res.ok, res.error
    assert _injected(out) == []
    assert not (project / "notebooks" / ".state").exists()
    assert any((project / ".data").rglob("*.parquet"))  # the cache under the root too
    with Store.at(project / ".state") as db:
        pair_set = db.latest_pair_set()
    assert pair_set is not None and pair_set.id == res.scraps["pair_set_id"]
    assert len(pair_set.pairs) == len(res.scraps["chosen_pairs"])
    assert "**Data quality:**" in out.read_text()


def _cells(name: str) -> list[nbformat.NotebookNode]:
    return list(nbformat.read(ROOT / "notebooks" / name, as_version=4).cells)


def _headings(name: str) -> list[str]:
    return [line.lstrip("#").strip() for c in _cells(name) if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_headings_are_markdown_cells(name: str) -> None:
    """JupyterLab's table of contents lists Markdown headings only: none is printed from a
    code cell."""
    assert len(_headings(name)) >= 6
    for cell in _cells(name):
        if cell.cell_type == "code":
            assert "Markdown(\"#" not in cell.source and "Markdown('#" not in cell.source, (
                f"{name}: a heading printed from code:\n{cell.source}")


def test_reports_lead_with_what_a_reader_looks_for() -> None:
    """The tick: status (the first output), actions, orders, positions; the detail and the
    full log last. Pair generation: the chosen pairs and their spreads first, the quality of
    every symbol last (only the symbols to look at before)."""
    tick = _headings("tick.ipynb")
    assert tick[1:4] == ["Actions", "Orders and fills", "Positions and account"]
    assert tick[-3:] == ["All pairs", "Log", "Full log"]
    pairs = _headings("generate_pairs.ipynb")
    assert pairs[1] == "Chosen pairs" and pairs[2].startswith("Each chosen pair")
    assert pairs[3] == "Data quality: symbols to look at"
    assert pairs[-1] == "Data quality: every symbol"


def _logic(tree: ast.AST) -> list[str]:
    """What a notebook cell may not hold: definitions, and loops or branches that do more
    than show or display one thing."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
                      | ast.While | ast.With | ast.Try | ast.ListComp | ast.DictComp
                      | ast.SetComp | ast.GeneratorExp):
            found.append(type(node).__name__)
        elif isinstance(node, ast.For | ast.If):
            body_ok = (len(node.body) == 1 and not node.orelse
                       and isinstance(node.body[0], ast.Expr)
                       and isinstance(node.body[0].value, ast.Call)
                       and isinstance(node.body[0].value.func, ast.Name)
                       and node.body[0].value.func.id in DISPLAY_CALLS)
            if not body_ok:
                found.append(f"{type(node).__name__} doing more than one display")
    return found


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_hold_no_logic(name: str) -> None:
    for cell in _cells(name):
        if cell.cell_type == "code":
            assert _logic(ast.parse(cell.source)) == [], f"{name}: logic in\n{cell.source}"
    assert _logic(ast.parse("def f():\n    pass")) == ["FunctionDef"]  # the check can fail
    assert _logic(ast.parse("for x in y:\n    a = x\n    show(a)")) != []


def test_ruff_passes_on_the_notebooks() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    res = subprocess.run([str(ruff), "check", "--no-cache", str(ROOT / "notebooks")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_tick_notebook_trades_only_when_told() -> None:
    """The parameters cell defaults to a preview; the tick is called with
    ``preview=not trade``."""
    cells = _cells("tick.ipynb")
    params = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "trade = False" in params.source
    calls = [c.source for c in cells if c.cell_type == "code" and "tick.run(" in c.source]
    assert len(calls) == 1 and "preview=not trade" in calls[0]


def test_quality_issues_list_only_the_symbols_to_look_at() -> None:
    from types import SimpleNamespace

    from pairlib.edges.data import QUALITY_COLUMNS
    from pairlib.report import pair_charts

    clean = {c: 0 for c in QUALITY_COLUMNS} | {"rows": 600, "ok": True, "stale": False,
                                                "too_short": False, "reason": "", "notes": "",
                                                "max_abs_log_return": 0.05}
    quality = pd.DataFrame.from_dict({
        "BTC/USDT:USDT": clean,
        "SOL/USDT:USDT": clean | {"jumps": 1, "notes": "1 one-bar move with |log return| > 0.2"},
        "ETH/USDT:USDT": clean | {"masked": 2, "notes": "2 candles older than the window"},
        "DOGE/USDT:USDT": clean | {"ok": False, "stale": True, "lag_bars": 3,
                                   "reason": "stale"},
        "ADA/USDT:USDT": clean | {"gaps": 1},
        "XRP/USDT:USDT": clean,
    }, orient="index")[list(QUALITY_COLUMNS)]
    issues = pair_charts.quality_issues(quality)
    assert list(issues.index) == ["SOL/USDT:USDT", "ETH/USDT:USDT", "DOGE/USDT:USDT",
                                  "ADA/USDT:USDT"]
    assert list(issues.columns) == list(QUALITY_COLUMNS)
    assert pair_charts.quality_issues(quality.loc[["BTC/USDT:USDT"]]).empty
    result = SimpleNamespace(data=SimpleNamespace(quality=quality,
                                                  dropped={"DOGE/USDT:USDT": "stale"}))
    assert pair_charts.quality_line(result) == (  # type: ignore[arg-type]
        "**Data quality:** 2 of 6 symbols clean; 4 with something to note, 1 of them dropped "
        "(the full table is at the end).")
    rejected = pd.DataFrame({"symbol": [None] * 5, "y": list("abcde"), "x": list("fghij"),
                             "stage": ["EG+FDR"] * 4 + ["OOS"], "reason": ["p"] * 5})
    assert pair_charts.rejection_counts(rejected)["rejected"].to_dict() == {"EG+FDR": 4,
                                                                           "OOS": 1}
    assert list(pair_charts.rejection_examples(rejected, 3)["y"]) == ["a", "b", "c", "e"]
