"""``pairlib tick`` as cron sees it: ``--as-of`` checked before any kernel, exit codes by the
tick's status (0 ok/already_ran, 1 failed, 2 rejected, 3 degraded), the tick job's lock, the
store's word when the report notebook stops early, and one line (never a traceback) for any
pairlib error in every command."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from click.testing import Result
from tick_fixtures import BAR, START, trading_params
from typer.testing import CliRunner

from pairlib.app import jobs
from pairlib.app.cli import TICK_EXIT_CODES, app
from pairlib.app.jobs import JobLocked, run_tick_job, tick_as_of, tick_job_lock
from pairlib.app.runner import RunResult
from pairlib.clock import iso
from pairlib.edges.store import Store
from pairlib.errors import StoreError
from pairlib.sim import SimServer

WHEN = START + BAR  # 2025-02-04T04:00Z, a 4h close


@pytest.fixture
def params_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trading params on the in-process simulator, state and outputs under ``tmp_path``
    (also the working directory)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trading.yaml"
    path.write_text(yaml.safe_dump(trading_params(tmp_path, None).model_dump(mode="json")))
    return path


def _tick(params_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["tick", "--params", str(params_file), "--outputs", "out",
                                    *args])


def _clean_exit(res: Result) -> None:
    """The command ended on purpose (typer.Exit), not on an exception's traceback."""
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output


class FakeNotebook:
    """Stands in for :func:`pairlib.app.runner.run_notebook` in the tick job: records the call
    and returns the scraps a tick notebook would glue (or none)."""

    def __init__(self, scraps: Mapping[str, Any] | None, ok: bool = True,
                 error: str | None = None) -> None:
        self.scraps = dict(scraps or {})
        self.ok, self.error = ok, error
        self.calls: list[dict[str, Any]] = []

    def __call__(self, notebook: Path, output: Path, parameters: Mapping[str, Any],
                 cwd: Path | None = None, timeout_s: int = 1800, kernel: str = "pairlib",
                 kernel_fds: Sequence[int] = ()) -> RunResult:
        self.calls.append({"output": Path(output), "parameters": dict(parameters),
                           "fds": tuple(kernel_fds), "reserved": Path(output).is_file()})
        return RunResult(Path(output), self.ok, 0.25, self.error, dict(self.scraps))


def _no_kernel(*args: object, **kwargs: object) -> RunResult:
    raise AssertionError("a kernel was started for a command that had to be rejected")


# ------------------------------------------------------------------ --as-of


@pytest.mark.parametrize(("as_of", "says"), [
    ("2025-02-04T04:00", ["'2025-02-04T04:00'", "no timezone", "2026-01-31T20:00Z"]),
    ("2025-02-04 04:00:00", ["no timezone", "Z or an offset"]),
    ("2025-02-04T05:00Z", ["'2025-02-04T05:00Z'", "not a 4h candle close",
                           "2025-02-04T04:00Z", "2025-02-04T08:00Z"]),
    ("2025-02-04T04:00:01+00:00", ["not a 4h candle close"]),
    ("2025-02-04T06:00+01:00", ["not a 4h candle close", "2025-02-04T04:00Z"]),
    ("yesterday", ["'yesterday'", "not an ISO-8601 time", "2026-01-31T20:00Z"]),
])
def test_a_bad_as_of_exits_2_before_any_kernel(params_file: Path, as_of: str,
                                               says: list[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "run_notebook", _no_kernel)
    res = _tick(params_file, "--as-of", as_of)
    _clean_exit(res)
    assert res.exit_code == 2, res.output
    for text in says:
        assert text in res.output
    assert not (params_file.parent / "out").exists()  # no report reserved either


def test_as_of_with_an_offset_on_a_boundary_is_accepted() -> None:
    assert tick_as_of("2025-02-04T06:00+02:00", "4h") == WHEN
    assert tick_as_of("2025-02-04T04:00Z", "4h") == WHEN
    with pytest.raises(ValueError, match="no timezone"):
        tick_as_of(datetime(2025, 2, 4, 4), "4h")


def test_a_future_as_of_is_refused_for_a_real_market(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has not closed yet"):
        tick_as_of("2099-01-01T00:00Z", "4h", venue_kind="paper")
    assert tick_as_of("2099-01-01T00:00Z", "4h", venue_kind="sim").year == 2099


# ------------------------------------------------------------------ exit codes


@pytest.mark.parametrize(("status", "code"), [("ok", 0), ("already_ran", 0), ("degraded", 3),
                                              ("failed", 1), ("refused", 2),
                                              ("something new", 1)])
def test_exit_code_follows_the_ticks_status(params_file: Path, status: str, code: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    error = {"degraded": "naked leg: SOL/USDT:USDT short 12 without its INJ leg",
             "failed": "ExchangeUnavailable: venue down",
             "refused": "ConfigError: as_of is after the last closed candle"}.get(status)
    fake = FakeNotebook({"status": status, "mode": "normal", "duration_s": 1.5,
                         **({"error": error} if error else {})},
                        ok=status in ("ok", "already_ran"),
                        error=None if status in ("ok", "already_ran") else f"TickFailed: {error}")
    monkeypatch.setattr(jobs, "run_notebook", fake)
    res = _tick(params_file, "--as-of", iso(WHEN))
    _clean_exit(res)
    assert res.exit_code == code == TICK_EXIT_CODES.get(status, 1), res.output
    (call,) = fake.calls
    assert res.output.splitlines()[0] == str(call["output"])
    assert call["reserved"] and call["fds"]  # path reserved, kernel holds the job lock
    assert call["parameters"]["as_of"] == WHEN.isoformat()
    assert call["parameters"]["trade"] is True  # pairlib tick trades; only it does
    if code == 0:
        assert f"tick {status} (normal) in 1.50 s" in res.output
        assert "incomplete" not in res.output
    else:
        assert f"tick {status}" in res.output and str(error) in res.output


def test_degraded_says_what_is_exposed(params_file: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    exposed = "EXPOSED: naked leg SOL/USDT:USDT short 12 (its pair's other leg did not fill)"
    monkeypatch.setattr(jobs, "run_notebook", FakeNotebook(
        {"status": "degraded", "mode": "normal", "error": exposed}, ok=False,
        error=f"TickFailed: tick degraded: {exposed}"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    assert res.exit_code == 3
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("tick ")]
    assert line == f"tick degraded: {exposed}"


def test_live_guard_and_bad_params_exit_2(params_file: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "run_notebook", _no_kernel)
    res = _tick(params_file, "--live")
    _clean_exit(res)
    assert res.exit_code == 2 and "--live" in res.output
    bad = params_file.parent / "bad.yaml"
    bad.write_text("risk: {risk_per_trade: 5}\n")
    res = _tick(bad)
    _clean_exit(res)
    assert res.exit_code == 2 and "risk.risk_per_trade" in res.output


def test_a_secret_in_the_parameters_is_refused_and_leaves_no_report(
    params_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENUE_TOKEN", str(params_file))  # the params path is "a secret" here
    res = _tick(params_file, "--as-of", iso(WHEN))
    _clean_exit(res)
    assert res.exit_code == 2, res.output
    assert "'params_file'" in res.output and "VENUE_TOKEN" in res.output
    assert str(params_file) not in res.output
    assert not list((params_file.parent / "out").rglob("*.ipynb"))  # reservation given back


def test_preview_runs_the_notebook_with_trade_false_and_exits_0(
    params_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pairlib tick --preview``: the notebook gets ``trade=False``, its report is named as a
    preview, and the command says what was planned and that nothing was sent."""
    fake = FakeNotebook({"status": "preview", "duration_s": 0.4, "n_orders": 2,
                         "mode": "preview (normal): no order sent, nothing recorded"})
    monkeypatch.setattr(jobs, "run_notebook", fake)
    res = _tick(params_file, "--as-of", iso(WHEN), "--preview")
    _clean_exit(res)
    assert res.exit_code == 0, res.output
    (call,) = fake.calls
    assert call["parameters"]["trade"] is False
    assert call["output"].name == "2025-02-04T0400Z-tick-preview.ipynb"
    assert res.output.splitlines()[0] == str(call["output"])
    assert ("tick preview (normal): no order sent, nothing recorded; 2 order(s) planned, "
            "in 0.40 s") in res.output


def test_a_preview_that_stops_early_failed(params_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview records nothing, so the store cannot stand in for its missing scraps: an
    earlier ok run of the same tick does not make the preview ``already_ran``."""
    _row(params_file.parent / "state", "ok", "out/ticks/2025/02/earlier.ipynb")
    monkeypatch.setattr(jobs, "run_notebook", FakeNotebook(None, ok=False,
                                                           error="DeadKernelError: died"))
    res = _tick(params_file, "--as-of", iso(WHEN), "--preview")
    _clean_exit(res)
    assert res.exit_code == 1, res.output
    assert "before the preview finished" in res.output and "already_ran" not in res.output
    assert "what the tick recorded" not in res.output


def test_outputs_are_relative_to_the_project_root(params_file: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder inside the project, the reports still go to ``<root>/out``."""
    root = params_file.parent
    (root / "pyproject.toml").write_text("")
    (root / "notebooks").mkdir()
    monkeypatch.chdir(root / "notebooks")
    fake = FakeNotebook({"status": "ok", "mode": "normal", "duration_s": 0.1})
    monkeypatch.setattr(jobs, "run_notebook", fake)
    res = _tick(params_file, "--as-of", iso(WHEN))
    assert res.exit_code == 0, res.output
    (call,) = fake.calls
    assert call["output"] == root / "out" / "ticks" / "2025" / "02" / "2025-02-04T0400Z-tick.ipynb"
    assert not (root / "notebooks" / "out").exists()


def test_help_documents_the_exit_codes() -> None:
    res = CliRunner().invoke(app, ["tick", "--help"], terminal_width=100)
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for line in ("0 ok or already_ran", "1 failed", "2 rejected before any network call",
                 "3 degraded"):
        assert line in text


# ------------------------------------------------------------------ the job lock


def test_a_second_tick_job_names_the_holder(params_file: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(jobs, "run_notebook", _no_kernel)
    state = params_file.parent / "state"
    with tick_job_lock(state, WHEN - BAR):
        with pytest.raises(JobLocked) as err:
            run_tick_job(params_file, iso(WHEN), "out", lock_timeout_s=0.3)
        message = str(err.value)
        assert f"pid {os.getpid()}" in message and "as_of 2025-02-04T00:00Z" in message
        assert "started 20" in message and "tick-job.lock" in message
        res = _tick(params_file, "--as-of", iso(WHEN), "--wait", "0.3")
        _clean_exit(res)
        assert res.exit_code == 2
        assert "waiting up to 0 s" in res.output and f"pid {os.getpid()}" in res.output
    fake = FakeNotebook({"status": "ok", "mode": "normal", "duration_s": 0.1})
    monkeypatch.setattr(jobs, "run_notebook", fake)
    assert _tick(params_file, "--as-of", iso(WHEN), "--wait", "0").exit_code == 0


def test_a_dead_holder_is_named_as_such(tmp_path: Path) -> None:
    holder = tmp_path / "tick-job.lock.holder.json"
    holder.write_text('{"pid": 999999999, "as_of": "2025-02-04T00:00Z", '
                      '"started_at": "2025-02-04T00:01:00Z"}')
    assert "has exited, so a kernel it started still runs" in jobs._describe_holder(holder)


# ------------------------------------------------------------------ the store's word


def _row(state: Path, status: str | None, notebook_path: str, message: str | None = None,
         when: datetime = WHEN) -> None:
    with Store.at(state) as db:
        db.start_tick(when, when, "normal", None, notebook_path)
        if status is not None:
            db.finish_tick(when, status, when, 0.5, mode="normal", message=message,
                           notebook_path=notebook_path)


@pytest.mark.parametrize(("stored", "code", "says"), [
    ("ok", 0, "tick ok"),
    (None, 1, "during the tick"),  # started, never finished: the kernel died mid-tick
    ("failed", 1, "venue down"),
    ("degraded", 3, "tick degraded"),
])
def test_without_scraps_the_store_says_how_the_tick_went(
    params_file: Path, stored: str | None, code: int, says: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = params_file.parent / "state"

    class DiesAfterTheTick(FakeNotebook):
        def __call__(self, notebook: Path, output: Path, *args: Any, **kw: Any) -> RunResult:
            _row(state, stored, str(output), "ExchangeUnavailable: venue down")
            return super().__call__(notebook, output, *args, **kw)

    monkeypatch.setattr(jobs, "run_notebook", DiesAfterTheTick(
        None, ok=False, error="DeadKernelError: Kernel died"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    _clean_exit(res)
    assert res.exit_code == code, res.output
    assert "report notebook is incomplete (DeadKernelError: Kernel died)" in res.output
    assert says in res.output


def test_without_scraps_an_earlier_ok_run_means_already_ran(
    params_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _row(params_file.parent / "state", "ok", "out/ticks/2025/02/earlier.ipynb")
    monkeypatch.setattr(jobs, "run_notebook", FakeNotebook(None, ok=False,
                                                           error="DeadKernelError: died"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    assert res.exit_code == 0 and "tick already_ran" in res.output


def test_without_scraps_or_a_row_the_tick_failed(params_file: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "run_notebook", FakeNotebook(None, ok=False,
                                                           error="NoSuchKernel: pairlib"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    assert res.exit_code == 1 and "before the tick recorded anything" in res.output


def test_without_scraps_and_a_corrupt_store_one_line(params_file: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    state = params_file.parent / "state"
    state.mkdir()
    (state / "pairlib.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setattr(jobs, "run_notebook", FakeNotebook(None, ok=False,
                                                           error="DeadKernelError: died"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    _clean_exit(res)
    assert res.exit_code == 1 and "the store could not be read" in res.output


def _dying_tick_notebook(folder: Path) -> Path:
    """A stand-in ``tick.ipynb`` with the real one's parameters: it records the tick in the
    store as the tick does (finished ``ok`` unless a ``no-finish`` file is next to the
    params), then its kernel dies before any scrap is glued."""
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "as_of = None\nparams_file = 'params/pairlib.yaml'\ntrade = False\nlive = False\n"
        "notebook_path = None")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os\n"
        "from pathlib import Path\n"
        "from pairlib.clock import parse_time\n"
        "from pairlib.config import load_params\n"
        "from pairlib.edges.store import Store\n"
        "p = load_params(params_file)\n"
        "when = parse_time(as_of)\n"
        "with Store.at(p.state_dir) as db:\n"
        "    db.start_tick(when, when, 'normal', None, notebook_path)\n"
        "    if not Path(params_file).with_name('no-finish').exists():\n"
        "        db.finish_tick(when, 'ok', when, 0.5, mode='normal',\n"
        "                       notebook_path=notebook_path)\n"
        "os._exit(1)")
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "pairlib", "display_name": "pairlib",
                                 "language": "python"}
    nbformat.write(nb, folder / "tick.ipynb")
    return folder


@pytest.mark.slow
def test_a_kernel_dying_after_the_tick_reports_the_stores_outcome(
    params_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real job path (lock, reserved report, papermill, a kernel that really dies):
    the command reports the store's ``ok`` and exits 0, saying the report is incomplete; a
    kernel that died mid-tick is a failure."""
    monkeypatch.setattr(jobs, "NOTEBOOKS", _dying_tick_notebook(params_file.parent / "nb"))
    res = _tick(params_file, "--as-of", iso(WHEN))
    _clean_exit(res)
    assert res.exit_code == 0, res.output
    assert "tick ok" in res.output and "report notebook is incomplete" in res.output
    assert "DeadKernelError" in res.output
    report = Path(res.output.splitlines()[0])
    assert report.is_file() and report.stat().st_size > 0  # the partial report is kept

    (params_file.parent / "no-finish").touch()
    res = _tick(params_file, "--as-of", iso(WHEN + BAR))
    assert res.exit_code == 1, res.output
    assert "tick failed" in res.output and "store still says running" in res.output


# ------------------------------------------------------------------ E16: one line


@pytest.mark.parametrize(("argv", "target"), [
    (["tick", "--as-of", iso(WHEN)], "pairlib.app.jobs.run_tick_job"),
    (["pairs", "--as-of", iso(WHEN)], "pairlib.app.jobs.run_pairs_job"),
    (["data", "--as-of", iso(WHEN)], "pairlib.app.demo.data_summary"),
    (["demo"], "pairlib.app.demo.run_demo"),
    (["reconcile", "--as-of", iso(WHEN)], "pairlib.engine.reconcile.report"),
    (["reconcile", "--as-of", iso(WHEN), "--accept", "SOL/USDT:USDT", "--reason", "x"],
     "pairlib.engine.reconcile.snapshot"),
    (["exchange", "serve", "--port", "0"], "pairlib.sim.account.Account.saved_clock"),
])
@pytest.mark.parametrize("error", [
    StoreError(".state/pairlib.db: database disk image is malformed"),
    sqlite3.OperationalError("database is locked"),
    PermissionError(13, "Permission denied", ".state/tick.lock"),
])
def test_every_command_prints_one_line_for_a_store_error(
    params_file: Path, argv: list[str], target: str, error: Exception,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(target, boom)
    if argv[0] in ("tick", "reconcile", "data"):
        argv = [*argv, "--params", str(params_file)]
    if argv[0] == "exchange":
        argv = [*argv, "--state", str(params_file.parent / "sim.json")]
    res = CliRunner().invoke(app, argv)
    _clean_exit(res)
    assert res.exit_code in (1, 2), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert str(error).split(":")[0].strip() in lines[0] or "Permission denied" in lines[0]


def test_reconcile_on_a_corrupt_store_prints_one_line(
    sim_server: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = trading_params(tmp_path, sim_server.url)
    path = tmp_path / "trading.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    state = tmp_path / "state"
    state.mkdir()
    (state / "pairlib.db").write_bytes(b"\x00garbage, not SQLite\x00" * 200)
    for extra in ([], ["--accept", "SOL/USDT:USDT", "--reason", "hedge"]):
        res = CliRunner().invoke(app, ["reconcile", "--params", str(path), "--as-of",
                                       iso(START), *extra])
        _clean_exit(res)
        assert res.exit_code == 1, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "database" in lines[0]
