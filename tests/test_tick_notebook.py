"""The tick notebook and ``pairlib tick``: executed by papermill against the simulator, with
charts and scraps; failures keep the report and exit non-zero."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
import yaml
from tick_fixtures import BAR, GRT_RUNE, START, TickEnv, make_env
from typer.testing import CliRunner

from pairlib.app.cli import app
from pairlib.app.runner import read_scraps, run_notebook
from pairlib.sim import Market

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tick.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch)


def _params_file(env: TickEnv, **venue: object) -> Path:
    raw = env.params.model_dump(mode="json")
    raw["venue"].update(venue)
    path = env.tmp / "trading.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _outputs(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
def test_tick_notebook_runs_against_the_simulator(env: TickEnv) -> None:
    env.save_pairs()
    when = START + 7 * BAR
    env.at(when)
    params = _params_file(env)
    out = env.tmp / "outputs" / "tick.ipynb"
    res = run_notebook(NOTEBOOK, out, {"as_of": when.isoformat(), "params_file": str(params),
                                       "trade": True, "live": False,
                                       "notebook_path": str(out)},
                       cwd=env.tmp)
    assert res.ok, res.error
    scraps = read_scraps(out)
    assert scraps["status"] == "ok" and scraps["mode"] == "normal"
    assert isinstance(scraps["duration_s"], float) and scraps["equity"] > 0
    signals = scraps["signals"]
    assert isinstance(signals, pd.DataFrame) and len(signals) == 8
    assert {"pair_id", "z", "signal", "action", "reason"} <= set(signals.columns)
    assert len(scraps["orders"]) > 0 and len(scraps["positions"]) > 0
    outputs = _outputs(out)
    assert sum(PLOTLY in o.get("data", {}) for o in outputs) >= 1
    banner = outputs[0]["data"]["text/html"]
    assert "status <b>ok</b>" in "".join(banner)
    row = env.store.tick_row(when)
    assert row["status"] == "ok" and row["notebook_path"] == str(out)


@pytest.mark.slow
def test_pairlib_tick_command(env: TickEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pairlib tick`` prints the report's path; a re-run reports already_ran into a new
    file; a failed tick keeps its report (error in red at the top) and exits non-zero."""
    env.save_pairs()
    when = START + 7 * BAR
    env.at(when)
    params = _params_file(env)
    monkeypatch.chdir(env.tmp)
    runner = CliRunner()
    args = ["tick", "--params", str(params), "--as-of", when.isoformat(), "--outputs", "out"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    path = Path(first.output.splitlines()[0])
    assert path.exists() and path.name == "2025-02-05T0400Z-tick.ipynb"
    assert path.parts[-4:-1] == ("ticks", "2025", "02")
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already_ran" in again.output
    assert Path(again.output.splitlines()[0]).name == "2025-02-05T0400Z-tick-2.ipynb"

    dead = _params_file(env, sim_url="http://127.0.0.1:9", max_retries=0)
    later = when + BAR
    env.at(later)
    failed = runner.invoke(app, ["tick", "--params", str(dead), "--as-of", later.isoformat(),
                                 "--outputs", "out"])
    assert failed.exit_code == 1
    kept = Path(failed.output.splitlines()[0])
    assert kept.exists()
    assert read_scraps(kept)["status"] == "failed"
    banner = "".join(_outputs(kept)[0]["data"]["text/html"])
    assert "#b00020" in banner and "ERROR" in banner and "ExchangeUnavailable" in banner
    assert env.store.tick_row(later)["status"] == "failed"

    refused = runner.invoke(app, ["tick", "--params", str(params), "--live"])
    assert refused.exit_code != 0 and "--live" in refused.output


def _tables(env: TickEnv) -> dict[str, pd.DataFrame]:
    names = env.store.query("SELECT name FROM sqlite_master WHERE type = 'table'")["name"]
    return {t: env.store.query(f"SELECT * FROM {t}") for t in names}


@pytest.mark.slow
def test_pairlib_tick_preview_sends_nothing_and_the_tick_sends_what_it_showed(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pairlib tick --preview`` runs the real notebook with ``trade=False``: exit 0, a
    ``-tick-preview`` report listing the planned orders, no order at the venue, the store
    unchanged. ``pairlib tick`` then sends exactly those orders."""
    env.save_pairs([GRT_RUNE])
    when = START + 7 * BAR
    env.at(when)
    params = _params_file(env)
    monkeypatch.chdir(env.tmp)
    before = _tables(env)
    args = ["tick", "--params", str(params), "--as-of", when.isoformat(), "--outputs", "out"]
    shown = CliRunner().invoke(app, [*args, "--preview"])
    assert shown.exit_code == 0, shown.output
    report = Path(shown.output.splitlines()[0])
    assert report.name == "2025-02-05T0400Z-tick-preview.ipynb"
    assert "tick preview (normal): no order sent, nothing recorded; 2 order(s) planned" in (
        shown.output)
    planned = read_scraps(report)["orders"].set_index("leg")
    assert env.venue_orders() == []
    after = _tables(env)
    for table in before:
        pd.testing.assert_frame_equal(before[table], after[table], check_dtype=False,
                                      obj=table)
    traded = CliRunner().invoke(app, args)
    assert traded.exit_code == 0 and "tick ok" in traded.output, traded.output
    assert Path(traded.output.splitlines()[0]).name == "2025-02-05T0400Z-tick.ipynb"
    sent = env.store.orders(tick_as_of=when).set_index("leg")
    assert len(env.venue_orders()) == len(sent) == 2
    for leg in ("y", "x"):
        assert sent.loc[leg, "side"] == planned.loc[leg, "side"]
        assert float(sent.loc[leg, "amount"]) == pytest.approx(planned.loc[leg, "amount"])


def _result(status: str = "ok", error: str | None = None) -> object:
    from pairlib.engine.tick import SIGNAL_COLUMNS, TickResult

    idx = pd.date_range("2025-02-01", periods=5, freq="4h", tz="UTC", name="close_time")
    signals = pd.DataFrame(
        [("A~B", "A", "B", 1.2, -1, "enter_short", "z=1.20 >= entry", -1,
          "2025-02-01T16:00:00Z", 1.2),
         ("C~D", "C", "D", 0.1, 0, "none", "stay flat", 0, None, None),
         ("E~F", "E", "F", -0.2, 0, "exit", "reverted", 0, "2025-02-01T00:00:00Z", -1.5)],
        columns=list(SIGNAL_COLUMNS))
    z = pd.DataFrame({"A~B": [0.1, 0.5, 0.9, 1.0, 1.2], "C~D": [0.0] * 5,
                      "E~F": [-1.5, -1.0, -0.8, -0.6, -0.2]}, index=idx)
    return TickResult(as_of=idx[-1].to_pydatetime(), status=status, mode="normal",
                      signals=signals, z_history=z, orders=pd.DataFrame(), fills=pd.DataFrame(),
                      positions=pd.DataFrame(), equity=10_000.0, error=error,
                      thresholds=(1.0, 0.5, 3.5), venue="sim")


def test_report_helpers() -> None:
    from pairlib.engine.tick import TickFailed
    from pairlib.report import tick_charts

    ok = _result()
    assert tick_charts.reported_pairs(ok) == ["A~B", "E~F"]  # open or acted on
    specs = tick_charts.z_figures(ok)
    assert len(specs) == 2
    figs = [go.Figure(spec) for spec in specs]  # plotly validates the specs (raises if not)
    names = [t.name for t in figs[0].data]
    assert names == ["z", "entry (short)", "enter_short"]
    assert list(figs[0].data[0].y) == [0.1, 0.5, 0.9, 1.0, 1.2]
    assert figs[0].data[1].x == ("2025-02-01T16:00:00+00:00",)  # the entry marker
    assert figs[0].data[2].text == ("enter_short",) and figs[0].data[2].y == (1.2,)
    assert sorted(s.y0 for s in figs[0].layout.shapes) == [-3.5, -1, -0.5, 0, 0.5, 1, 3.5]
    assert figs[1].layout.title.text == "E~F: exit (position 0)"
    equity = tick_charts.equity_figure(pd.DataFrame(
        {"tick_as_of": ["2025-02-01T00:00:00Z", "2025-02-01T04:00:00Z"],
         "equity": [10_000.0, float("nan")]}))
    assert go.Figure(equity).data[0].y == (10_000.0, None)  # NaN is a gap, not invalid JSON
    assert "#1b5e20" in tick_charts.status_banner(ok)
    ok.raise_for_status()
    summary = ok.scraps()
    assert summary["status"] == "ok" and summary["equity"] == 10_000.0
    assert all(isinstance(v, str | int | float | type(None)) for v in summary.values())

    assert tick_charts.account_line(ok) == "no account data"
    assert list(tick_charts.incidents_frame(ok).columns) == ["kind", "symbol", "detail"]

    actions = tick_charts.actions_frame(ok)
    assert list(actions["pair_id"]) == ["A~B", "E~F"]  # acted on; C~D stayed flat
    assert list(actions.columns) == ["pair_id", "z", "signal", "action", "position", "reason"]
    assert tick_charts.actions_line(ok) == ("**Actions:** enter_short 1, exit 1 · 1 pair(s) "
                                            "open after the tick · 3 pair(s) evaluated.")
    assert tick_charts.orders_line(ok) == "**0 order(s)** and **0 fill(s)** this tick."
    planned = dataclasses.replace(_result("preview"), orders=pd.DataFrame(
        {"pair_id": ["A~B", "A~B"], "leg": ["y", "x"], "side": ["sell", "buy"]}))
    assert "would send these 2 order(s); none was sent" in tick_charts.orders_line(planned)
    assert tick_charts.actions_line(planned).startswith("**Actions this preview would take:** "
                                                        "enter_short 1, exit 1 · 1 pair(s) "
                                                        "would be open")
    log = ("2025-02-01 04:00:00,001 INFO pairlib.engine.tick: fine\n"
           "2025-02-01 04:00:00,002 WARNING pairlib.edges.data: jump\n  detail line\n"
           "2025-02-01 04:00:00,003 INFO pairlib.engine.tick: fine again\n"
           "2025-02-01 04:00:00,004 ERROR pairlib.engine.tick: failed\n")
    assert tick_charts.log_problems(log) == (
        "2025-02-01 04:00:00,002 WARNING pairlib.edges.data: jump\n  detail line\n"
        "2025-02-01 04:00:00,004 ERROR pairlib.engine.tick: failed\n")
    assert tick_charts.log_problems(log.splitlines(keepends=True)[0]) == ""

    bad = _result("failed", "ExchangeUnavailable: <down> & out")
    banner = tick_charts.status_banner(bad)
    assert "#b00020" in banner and "&lt;down&gt; &amp; out" in banner
    with pytest.raises(TickFailed, match="ExchangeUnavailable"):
        bad.raise_for_status()


def test_glue_result_glues_the_summary_its_known_values_and_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import IPython.display

    from pairlib.report import tick_charts

    shown: list[tuple[str, str]] = []

    def fake_display(data: dict, metadata: dict | None = None, raw: bool = False) -> None:
        (mime,) = data
        shown.append((metadata["scrapbook"]["name"], mime.split(".")[-1]))

    monkeypatch.setattr(IPython.display, "display", fake_display)
    result = dataclasses.replace(_result("failed", "boom"), equity=float("nan"))
    tick_charts.glue_result(result)
    names = [n for n, _ in shown]
    assert names[0] == "summary" and "error" in names and "status" in names
    assert "as_of" in names and "equity" not in names  # an unknown equity is not glued
    assert [s for s in shown if s[1] == "pandas+json"] == [
        ("signals", "pandas+json"), ("orders", "pandas+json"), ("fills", "pandas+json"),
        ("positions", "pandas+json")]
    assert result.scraps()["equity"] is None  # ...but stays in the summary as null
