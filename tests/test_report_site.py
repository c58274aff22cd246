"""The offline report site: every executed notebook rendered beside itself, one index of runs,
incremental, skipping notebooks still being written, offline (no remote script)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from typer.testing import CliRunner

from pairlib.app.cli import app
from pairlib.report import site
from pairlib.report.notebook import figure_output, scrap_output

ROOT = Path(__file__).resolve().parents[1]
REMOTE_SRC = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?"
                        r"(?:https?:)?//", re.IGNORECASE)
SECRET_CODE = "this_code_line_stays_hidden = 1"


def _scrap(name: str, value: Any, encoder: str | None = None) -> Any:
    data, metadata = scrap_output(name, value, encoder)
    return new_output("display_data", data=data, metadata=metadata)


def _figure(title: str) -> Any:
    spec = {"data": [{"type": "scatter", "x": [1, 2, 3], "y": [1.0, 3.0, 2.0]}],
            "layout": {"title": {"text": title}}}
    return new_output("display_data", data=figure_output(spec))


def _write(path: Path, outputs: list[Any], *, start: str, duration: float = 2.5,
           exception: bool = False, parameters: dict[str, Any] | None = None) -> Path:
    """An executed notebook as papermill leaves it: a code cell with ``outputs``, papermill's
    metadata, and (for a failed run) its error banner and an error output."""
    cells = [new_markdown_cell("# A report\nSome words."),
             new_code_cell(SECRET_CODE, outputs=outputs, execution_count=1)]
    if exception:
        cells.insert(0, new_markdown_cell(
            '<span style="color:red;">An Exception was encountered at '
            "'<a href=\"#papermill-error-cell\">In [2]</a>'.</span>"))
        cells.append(new_code_cell("raise ValueError('boom')", execution_count=2, outputs=[
            new_output("error", ename="ValueError", evalue="boom",
                       traceback=["ValueError: boom"])]))
    nb = new_notebook(cells=cells)
    end = pd.Timestamp(start) + pd.Timedelta(seconds=duration)
    nb.metadata["papermill"] = {
        "start_time": start, "end_time": end.isoformat(), "duration": duration,
        "exception": True if exception else None, "parameters": parameters or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _tick(out: Path, hour: int, equity: float, *, status: str = "ok", orders: int = 0,
          signals: tuple[int, ...] = (0,), actions: tuple[str, ...] = ("none",),
          preview: bool = False) -> Path:
    as_of = f"2026-06-01T{hour:02d}:00:00Z"
    table = pd.DataFrame({"pair_id": [f"P{i}~Q" for i in range(len(signals))],
                          "signal": list(signals), "action": list(actions)})
    name = f"2026-06-01T{hour:02d}00Z-tick{'-preview' if preview else ''}.ipynb"
    return _write(out / "ticks" / "2026" / "06" / name, [
        _scrap("status", "preview" if preview else status), _scrap("as_of", as_of),
        _scrap("equity", equity), _scrap("n_orders", orders), _scrap("mode", "normal"),
        _scrap("signals", table, "pandas"), _figure(f"z at {hour}")],
        start=f"2026-11-30T{hour:02d}:00:05+00:00", exception=status in ("degraded",),
        parameters={"as_of": as_of})


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """An outputs folder with every kind of run: a pair generation, three ticks (one with
    two orders), a preview, a backtest, a failed backtest, two sweeps (one without the sweep's
    summary scrap) and a folder of its own."""
    out = tmp_path / "outputs"
    _write(out / "pairs" / "2026-06-01T0000Z-generate_pairs.ipynb", [
        _scrap("chosen_pairs", pd.DataFrame({"pair_id": ["A~B", "C~D"]}), "pandas"),
        _scrap("pair_set_id", 3), _scrap("as_of", "2026-06-01T00:00:00+00:00"),
        _figure("funnel")], start="2026-11-30T00:00:01+00:00")
    _tick(out, 4, 10_000.0, orders=2, signals=(1, 0), actions=("enter_long", "none"))
    _tick(out, 8, 10_050.0, signals=(1, 0), actions=("hold", "none"))
    _tick(out, 12, 9_990.0, signals=(0, 0), actions=("exit", "none"), orders=2)
    _tick(out, 16, 1.0, preview=True)
    _write(out / "backtests" / "2025-02-04T0000Z-2025-03-04T0000Z-backtest.ipynb", [
        _scrap("metrics", {"sharpe": 1.5, "max_drawdown": -0.05, "total_return": 0.1}),
        _scrap("n_trades", 7), _scrap("initial_equity", 10_000.0),
        _scrap("start", "2025-02-04T00:00:00Z"), _scrap("end", "2025-03-04T00:00:00Z"),
        _scrap("equity", pd.DataFrame({"equity": [10_000.0, 11_000.0]}), "pandas"),
        _figure("Equity"), _figure("Monthly returns (%)")],
        start="2026-11-30T13:00:00+00:00")
    _write(out / "backtests" / "2030-01-01T0000Z-2030-02-01T0000Z-backtest.ipynb", [],
           start="2026-11-30T14:00:00+00:00", exception=True,
           parameters={"start": "2030-01-01T00:00:00+00:00", "end": "2030-02-01T00:00:00+00:00"})
    _write(out / "sweeps" / "2025-02-04T0000Z-sweep.ipynb", [
        _scrap("n_combos", 12), _scrap("dsr", 0.91), _figure("Sharpe heat map")],
        start="2026-11-30T15:00:00+00:00", parameters={"end": "2025-03-04T00:00:00Z"})
    _write(out / "sweeps" / "2025-02-04T0000Z-2025-03-04T0000Z-sweep.ipynb", [
        _scrap("summary", {"combinations": 12, "skipped": 2, "interrupted": False,
                           "best": {"entry": 2.0, "sharpe": 1.25}, "deflated_sharpe": 0.97,
                           "pbo": 0.1, "n_trials": 10})],
        start="2026-11-30T15:30:00+00:00", parameters={"end": "2025-03-04T00:00:00+00:00"})
    _write(out / "research" / "idea.ipynb", [_scrap("answer", 42)],
           start="2026-11-30T16:00:00+00:00")
    return out


def _plotly_outputs(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text())
    return sum(site.PLOTLY_MIME in o.get("data", {}) for c in nb["cells"]
               for o in c.get("outputs", []))


def test_every_kind_is_rendered_beside_its_notebook_offline(outputs: Path) -> None:
    build = site.update_site(outputs)
    notebooks = sorted(outputs.rglob("*.ipynb"))
    assert len(notebooks) == 10 and sorted(build.rendered) == notebooks
    assert build.unchanged == 0 and build.skipped == []
    js = outputs / site.PLOTLY_JS_NAME
    from plotly.offline import get_plotlyjs

    assert js.read_text() == get_plotlyjs()  # one shared copy, the installed plotly's
    for nb_path in notebooks:
        page = nb_path.with_suffix(".html").read_text()
        assert not REMOTE_SRC.search(page), f"{nb_path.name} loads a remote script"
        assert "require.js" not in page and "MathJax.Hub" not in page
        assert SECRET_CODE not in page  # code cells are hidden
        assert "Some words." in page  # Markdown kept
        n_plots = _plotly_outputs(nb_path)
        assert page.count('<script type="application/vnd.plotly.v1+json">') == n_plots
        src = re.findall(r'<script src="([^"]+)"', page)
        if n_plots:  # the shared plotly.js by a path relative to this page's folder
            assert len(src) == 1 and (nb_path.parent / src[0]).resolve() == js.resolve()
        else:
            assert src == []
        back = re.search(r'<a href="([^"]+)">\S+ all runs</a>', page)
        assert back and (nb_path.parent / back.group(1)).resolve() == build.index.resolve()
    tick_page = (outputs / "ticks/2026/06/2026-06-01T0400Z-tick.html").read_text()
    assert '<script src="../../../plotly.min.js">' in tick_page
    assert '<script src="../plotly.min.js">' in (
        outputs / "pairs/2026-06-01T0000Z-generate_pairs.html").read_text()


def test_index_lists_every_run_newest_first_with_what_each_kind_glues(outputs: Path) -> None:
    build = site.update_site(outputs)
    by_name = {Path(e.notebook).name: e for e in build.entries}
    assert [e.started for e in build.entries] == sorted(
        (e.started for e in build.entries), key=lambda s: s or "", reverse=True)
    t4, t8, t12 = (by_name[f"2026-06-01T{h:02d}00Z-tick.ipynb"] for h in (4, 8, 12))
    assert (t4.kind, t4.status, t4.orders, t4.signals, t4.equity) == ("tick", "ok", 2, 1,
                                                                       10_000.0)
    assert t4.actions == ["P0~Q enter_long"] and t4.duration_s == 2.5
    assert t4.pnl is None and t8.pnl == pytest.approx(50.0) and t12.pnl == pytest.approx(-60.0)
    preview = by_name["2026-06-01T1600Z-tick-preview.ipynb"]
    assert preview.status == "preview" and preview.pnl is None  # not in the equity chain
    pairs = by_name["2026-06-01T0000Z-generate_pairs.ipynb"]
    assert (pairs.kind, pairs.status, pairs.detail) == ("pairs", "ok",
                                                        "2 pairs chosen (pair set #3)")
    bt = by_name["2025-02-04T0000Z-2025-03-04T0000Z-backtest.ipynb"]
    assert (bt.kind, bt.trades, bt.equity, bt.pnl) == ("backtest", 7, 11_000.0, 1_000.0)
    assert "Sharpe 1.50" in bt.detail and bt.as_of == "2025-03-04T00:00:00Z"
    failed = by_name["2030-01-01T0000Z-2030-02-01T0000Z-backtest.ipynb"]
    assert failed.status == "failed" and failed.error == "ValueError: boom"
    sweep = by_name["2025-02-04T0000Z-sweep.ipynb"]
    assert sweep.kind == "sweep" and "n_combos 12" in sweep.detail and "dsr 0.91" in sweep.detail
    real = by_name["2025-02-04T0000Z-2025-03-04T0000Z-sweep.ipynb"]
    assert real.detail == "12 combinations (2 skipped), best Sharpe 1.25, DSR 0.97, PBO 0.10"
    assert real.as_of == "2025-03-04T00:00:00+00:00"
    assert by_name["idea.ipynb"].kind == "research"

    page = build.index.read_text()
    assert not REMOTE_SRC.search(page) and '<script src="plotly.min.js">' in page
    rows = re.findall(r'<tr data-kind="([^"]+)" data-status="([^"]+)">.*?<a href="([^"]+)">',
                      page)
    assert [href for _, _, href in rows] == [e.report for e in build.entries]
    assert ("backtest", "failed", "backtests/2030-01-01T0000Z-2030-02-01T0000Z-backtest.html"
            ) in rows
    for kind in ("tick", "pairs", "backtest", "sweep", "research"):
        assert f'<option value="{kind}">' in page
    for status in ("ok", "failed", "preview"):
        assert f'<option value="{status}">' in page
    spec = json.loads(re.search(r'<script type="application/json" id="equity-spec">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert spec["data"][0]["y"] == [10_000.0, 10_050.0, 9_990.0]  # trading ticks, in order
    assert "ValueError: boom" in page


def test_a_failed_run_shows_its_error_banner(outputs: Path) -> None:
    site.update_site(outputs)
    page = (outputs / "backtests/2030-01-01T0000Z-2030-02-01T0000Z-backtest.html").read_text()
    assert "An Exception was encountered" in page and "ValueError" in page and "boom" in page


def test_rebuild_renders_only_what_changed(outputs: Path) -> None:
    first = site.update_site(outputs)
    html = outputs / "ticks/2026/06/2026-06-01T0800Z-tick.html"
    before = {p: p.stat().st_mtime_ns for p in outputs.rglob("*.html")}
    again = site.update_site(outputs)
    assert again.rendered == [] and again.unchanged == 10 and again.skipped == []
    assert again.entries == first.entries
    assert {p: p.stat().st_mtime_ns for p in outputs.rglob("*.html")
            if p.name != site.INDEX_NAME} == {p: t for p, t in before.items()
                                              if p.name != site.INDEX_NAME}
    # A notebook written again after its report was rendered is rendered again, alone.
    nb = html.with_suffix(".ipynb")
    later = html.stat().st_mtime_ns + 1_000_000_000
    os.utime(nb, ns=(later, later))
    third = site.update_site(outputs)
    assert third.rendered == [nb] and third.unchanged == 9
    # Without a manifest, a report newer than its notebook is kept; its entry is re-read.
    (outputs / site.MANIFEST_NAME).unlink()
    fourth = site.update_site(outputs)
    assert fourth.rendered == [] and fourth.unchanged == 10
    assert fourth.entries == first.entries
    assert len(site.update_site(outputs, force=True).rendered) == 10


def test_notebooks_still_being_written_are_skipped_then_picked_up(outputs: Path) -> None:
    reserved = outputs / "ticks/2026/06/2026-06-01T2000Z-tick.ipynb"
    reserved.touch()  # the empty file a run reserves before papermill writes it
    whole = _tick(outputs, 0, 1.0)
    cut = outputs / "ticks/2026/06/2026-06-02T0000Z-tick.ipynb"
    cut.write_text(whole.read_text()[: len(whole.read_text()) // 2])  # cut off mid-write
    whole.unlink()
    build = site.update_site(outputs)
    assert sorted(build.skipped) == sorted([reserved, cut])
    assert "2 skipped" in build.summary() and not reserved.with_suffix(".html").exists()
    assert all(Path(e.notebook).name not in (reserved.name, cut.name) for e in build.entries)
    _tick(outputs, 20, 10_100.0)  # the run finished writing its report
    later = site.update_site(outputs)
    assert later.rendered == [reserved] and reserved.with_suffix(".html").is_file()
    assert later.skipped == [cut]


def test_a_plotly_spec_cannot_end_its_script_element(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    evil = "</script><script>window.pwned = 1</script>"
    _write(out / "ticks" / "t.ipynb", [_figure(evil)], start="2026-11-30T00:00:00+00:00")
    site.update_site(out)
    page = (out / "ticks" / "t.html").read_text()
    assert "</script><script>window.pwned" not in page
    blob = re.search(r'<script type="application/vnd.plotly.v1\+json">(.*?)</script>', page,
                     re.S)
    assert blob and json.loads(blob.group(1))["layout"]["title"]["text"] == evil


def test_a_build_with_nothing_new_does_not_import_nbconvert(outputs: Path) -> None:
    site.update_site(outputs)
    code = ("import sys; from pathlib import Path; from pairlib.report.site import update_site;"
            f"b = update_site(Path({str(outputs)!r})); "
            "print(len(b.rendered), 'nbconvert' in sys.modules, 'scrapbook' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["0", "False", "False"]


def test_missing_outputs_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"outputs folder .*nowhere does not exist"):
        site.build_site(tmp_path / "nowhere")


def test_read_entries_writes_nothing(outputs: Path) -> None:
    before = sorted(p.relative_to(outputs) for p in outputs.rglob("*"))
    entries = site.read_entries(outputs)
    assert sorted(e.notebook for e in entries) == sorted(
        p.relative_to(outputs).as_posix() for p in outputs.rglob("*.ipynb"))
    assert sorted(p.relative_to(outputs) for p in outputs.rglob("*")) == before
    assert site.read_entries(outputs / "missing") == []


def test_report_command_prints_the_index_and_a_summary(
    outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(outputs.parent)
    res = CliRunner().invoke(app, ["report", "--outputs", str(outputs)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [str(outputs / "index.html"),
                                       "rendered 10 new, 0 unchanged, 0 skipped"]
    res = CliRunner().invoke(app, ["report", "--outputs", str(outputs)])
    assert res.output.splitlines()[-1] == "rendered 0 new, 10 unchanged, 0 skipped"
    res = CliRunner().invoke(app, ["report", "--outputs", str(outputs), "--force"])
    assert res.output.splitlines()[-1] == "rendered 10 new, 0 unchanged, 0 skipped"
    res = CliRunner().invoke(app, ["report", "--outputs", str(outputs.parent / "none")])
    assert res.exit_code == 2 and "is not a folder" in res.output
    res = CliRunner().invoke(app, ["report", "--params", "nope.yaml", "--outputs", str(outputs)])
    assert res.exit_code == 1 and "nope.yaml" in res.output and "not found" in res.output


def test_a_run_without_end_time_is_incomplete_and_rendered_again_when_done(
    tmp_path: Path,
) -> None:
    """papermill writes the notebook while it runs (no end time yet; a killed kernel leaves
    it so): the run is listed ``incomplete``, and rendered again once the notebook is
    rewritten."""
    out = tmp_path / "outputs"
    nb_path = _write(out / "pairs" / "p.ipynb", [], start="2026-11-30T00:00:00+00:00")
    nb = json.loads(nb_path.read_text())
    nb["metadata"]["papermill"]["end_time"] = None
    nb_path.write_text(json.dumps(nb))
    first = site.update_site(out)
    assert [e.status for e in first.entries] == ["incomplete"] and first.rendered == [nb_path]
    _write(nb_path, [_scrap("pair_set_id", 1)], start="2026-11-30T00:00:00+00:00")
    later = nb_path.stat().st_mtime_ns + 1_000_000_000
    os.utime(nb_path, ns=(later, later))
    second = site.update_site(out)
    assert [e.status for e in second.entries] == ["ok"] and second.rendered == [nb_path]


def test_a_notebook_nbconvert_cannot_render_is_listed_not_fatal(
    outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = site._render

    def render(exporter: Any, nb: Any, nb_path: Path, root: Path, js: Path) -> str:
        if nb_path.name.startswith("2025-02-04T0000Z-sweep"):
            raise KeyError("a broken output")
        return real(exporter, nb, nb_path, root, js)

    monkeypatch.setattr(site, "_render", render)
    build = site.update_site(outputs)
    assert len(build.rendered) == 9 and [p.name for p in build.skipped] == [
        "2025-02-04T0000Z-sweep.ipynb"]
    sweep = next(e for e in build.entries if e.notebook.endswith("Z-sweep.ipynb")
                 and "combinations" not in e.detail)
    assert sweep.report == sweep.notebook  # linked to the notebook itself
    assert sweep.detail.startswith("report not rendered (KeyError: 'a broken output')")
    assert "not renderable: 2025-02-04T0000Z-sweep.ipynb" in build.summary()
    monkeypatch.setattr(site, "_render", real)
    assert [p.name for p in site.update_site(outputs).rendered] == [
        "2025-02-04T0000Z-sweep.ipynb"]  # tried again by the next build
