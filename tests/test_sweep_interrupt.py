"""Ctrl-C keeps a sweep's finished results: the engine checkpoints the finished rows into
its results folder and saves what finished when interrupted, and ``pairlib sweep`` on the
command line hands SIGINT to the kernel (which runs in its own session, out of the
terminal's reach), so the notebook saves and reports the partial result and the command
exits 130."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from tick_fixtures import panel_rules, signal_when, sim_panel

from pairlib.config import Params
from pairlib.engine import sweep as sw
from pairlib.sim import GENESIS

ROOT = Path(__file__).resolve().parents[1]
BAR = timedelta(hours=4)
START = GENESIS + timedelta(days=400)  # 2025-02-04, a 4h close
END = START + 200 * BAR
GRID = {"entry": [1.0, 1.5, 2.0], "exit": [0.0, 0.5], "lookback": [60, 80]}


@pytest.fixture(scope="module")
def panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    return sim_panel(START, END)


def _params() -> Params:
    return Params.model_validate({"risk": {"risk_per_trade": 0.01}})


def test_the_sweep_checkpoints_finished_rows_and_saves_what_finished(
    panel: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path,
) -> None:
    """While the sweep runs, its results folder holds the finished rows (a checkpoint in
    :meth:`SweepResult.save`'s format, ``interrupted: true``, no statistics yet); Ctrl-C
    leaves the finished rows there as the final result."""
    closes, qv = panel
    out = tmp_path / "results"
    seen: list[tuple[int, pd.DataFrame, dict[str, object]]] = []

    def progress(done: int, total: int) -> None:
        if done and done < total:
            seen.append((done, pd.read_csv(out / "table.csv"),
                         json.loads((out / "summary.json").read_text())))
        if done >= 6:
            raise KeyboardInterrupt

    r = sw.sweep(_params(), closes, START, END, GRID, panel_rules(closes), quote_volume=qv,
                 shortlist=2, chunk_size=3, progress=progress, results_dir=out,
                 checkpoint_every_s=0.0)
    assert [d for d, _, _ in seen] == [3, 6]
    for done, table, summary in seen:  # the checkpoint written before progress was told
        assert len(table) == done and summary["interrupted"] is True
        assert summary["deflated_sharpe"] is None and summary["pbo"] is None
    assert r.interrupted and len(r.table) == 6
    final = json.loads((out / "summary.json").read_text())
    assert final["interrupted"] is True and final["n_trials"] == 6
    pd.testing.assert_frame_equal(pd.read_csv(out / "table.csv"),
                                  r.table.astype({"max_loss_multiple": float}),
                                  check_dtype=False)
    assert not list(out.glob(".*.tmp"))  # every file was renamed into place


def test_a_finished_sweep_saves_its_full_result(
    panel: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path,
) -> None:
    closes, qv = panel
    out = tmp_path / "results"
    r = sw.sweep(_params(), closes, START, END, GRID, panel_rules(closes), quote_volume=qv,
                 shortlist=1, chunk_size=3, results_dir=out, checkpoint_every_s=3600.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["n_trials"] == len(r.table) == 12
    assert summary["pbo"] is not None and summary["shortlisted"] == 1
    assert len(pd.read_csv(out / "shortlist.csv")) == 1
    assert len(pd.read_csv(out / "returns.csv", index_col=0).columns) == 12


@pytest.mark.slow
def test_ctrl_c_in_pairlib_sweep_keeps_the_finished_results(tmp_path: Path) -> None:
    """A real ``pairlib sweep`` process sent SIGINT mid-run (as a terminal's Ctrl-C reaches
    it, not the kernel): the kernel is interrupted, the notebook saves and reports what
    finished, and the command exits 130 naming the results folder."""
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copytree(ROOT / "params", proj / "params")
    shutil.copytree(ROOT / "notebooks", proj / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (proj / "pyproject.toml").write_text('[project]\nname = "analyst-scratch"\n')
    (proj / "grid.yaml").write_text(
        "entry: [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]\nexit: [0.0, 0.25, 0.5, 0.75]\n"
        "stop: [3.0, 3.5, 4.0, 4.5]\nlookback: [60, 80]\n")
    shortlist = 12  # full-portfolio backtests after level 1: seconds of work to interrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "pairlib", "sweep", "--start", "2025-02-04", "--end",
         "2025-03-06", "--grid", "../grid.yaml", "--shortlist", str(shortlist),
         "--outputs", "outputs"],
        cwd=proj / "notebooks", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweeps = proj / "outputs" / "sweeps"
    out, err = signal_when(proc, lambda: bool(list(sweeps.glob("*/summary.json"))),
                           signal.SIGINT, waiting_for="the first checkpoint (mid-run)")
    assert proc.returncode == 130, (out, err)
    report = Path(out.splitlines()[0])
    results = report.with_suffix("")
    assert report.parent == sweeps and report.is_file()
    assert "interrupted" in out.splitlines()[1]  # the summary line says so
    assert "interrupting the notebook's kernel" in err
    assert f"the finished results are in {results}" in err
    summary = json.loads((results / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["shortlisted"] < shortlist
    table = pd.read_csv(results / "table.csv")
    assert len(table) > 0 and len(table) == summary["n_trials"]
    assert len(pd.read_csv(results / "shortlist.csv")) == summary["shortlisted"]
    assert "interrupted:" in report.read_text()  # the report's notes say what finished
    assert "Traceback" not in err
