"""The sweep report: ``notebooks/sweep.ipynb`` is thin and stored without outputs, and runs
headless offline from ``notebooks/`` with papermill through ``run_sweep_job`` (a small grid
on a short window), gluing the table, the deflated Sharpe ratio and the PBO; bad input is
refused before any kernel starts."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from test_notebooks_interactive import _logic

from pairlib.app.cli_sweep import summary_line
from pairlib.app.sweep_job import load_grid, run_sweep_job
from pairlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "sweep.ipynb"


def test_the_notebook_is_thin_and_stored_clean() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for c in code:
        assert c.outputs == [] and c.execution_count is None
        assert _logic(ast.parse(c.source)) == [], c.source
    assert sum(c.cell_type == "markdown" and c.source.startswith("## ") for c in nb.cells) >= 5


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    proj = tmp_path_factory.mktemp("sweep") / "project"
    proj.mkdir()
    shutil.copytree(ROOT / "params", proj / "params")
    shutil.copytree(ROOT / "notebooks", proj / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (proj / "pyproject.toml").write_text('[project]\nname = "analyst-scratch"\n')
    yield proj


@pytest.mark.slow
def test_the_notebook_runs_headless_and_glues_table_dsr_and_pbo(
    project: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project / "notebooks")
    r = run_sweep_job("params/pairlib.yaml", "2025-02-04", "2025-03-06", "outputs",
                      grid={"entry": [1.0, 1.5], "exit": [0.0, 0.5, 1.2], "lookback": [60]},
                      shortlist=1)
    assert r.ok, r.error
    assert r.path.parent == project / "outputs" / "sweeps"
    table = r.scraps["table"]
    assert len(table) == 5 and list(table.columns[:3]) == ["combo", "entry", "exit"]
    assert len(r.scraps["skipped"]) == 1  # exit 1.2 >= entry 1.0
    over = r.scraps["overfitting"]
    assert over["n_trials"] == 5
    assert 0.0 <= over["deflated_sharpe"] <= 1.0 and 0.0 <= over["pbo"] <= 1.0
    assert len(r.scraps["shortlist"]) == 1 and r.scraps["interrupted"] is False
    line = summary_line(r.scraps, r.duration_s)
    assert "5 combinations (1 skipped)" in line and "DSR" in line and "PBO" in line
    text = r.path.read_text()
    assert "Sweep: 6/6 combinations (100%)" in text  # the progress display's final state


def test_bad_input_is_refused_before_any_kernel(project: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError, match="'speed'.*allowed"):
        run_sweep_job("params/pairlib.yaml", grid={"speed": [1]}, outputs=tmp_path)
    with pytest.raises(ConfigError, match="workers or dask_address, not both"):
        run_sweep_job("params/pairlib.yaml", workers=2, dask_address="tcp://127.0.0.1:1",
                      outputs=tmp_path)
    bad = tmp_path / "grid.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of axis to values"):
        load_grid(bad)
    assert not any(tmp_path.rglob("*.ipynb"))  # nothing reserved, nothing run


@pytest.mark.slow
def test_reports_run_one_backtest_report_per_shortlisted_cell(
    project: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pairlib sweep --reports``: each shortlisted cell gets its own params file and a
    papermill backtest report on the sweep's window, whose metrics are the shortlist's
    (level 2 is the backtest, on the same history)."""
    import yaml

    from pairlib.app.sweep_job import run_shortlist_reports, sweep_results_dir

    monkeypatch.chdir(project / "notebooks")
    r = run_sweep_job("params/pairlib.yaml", "2025-02-04", "2025-03-06", "outputs",
                      grid={"entry": [1.5, 2.0], "exit": [0.5], "lookback": [80]},
                      shortlist=1)
    assert r.ok, r.error
    row = r.scraps["shortlist"].iloc[0]
    reports = run_shortlist_reports(r, "outputs")
    assert len(reports) == 1 and reports[0].ok, reports[0].error
    bt = reports[0]
    assert bt.path.parent == project / "outputs" / "backtests"
    written = yaml.safe_load(
        (sweep_results_dir(r.path) / f"params-combo-{int(row['combo'])}.yaml").read_text())
    assert written["strategy"]["entry"] == row["entry"]
    assert written["strategy"]["lookback"] == row["lookback"]
    m = bt.scraps["metrics"]
    assert m["sharpe"] == pytest.approx(row["sharpe"], rel=1e-9)
    assert m["total_return"] == pytest.approx(row["total_return"], rel=1e-9, abs=1e-12)
    assert bt.scraps["n_trades"] == row["trades"]
