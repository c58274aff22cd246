"""Secrets scan: with distinctive fake keys and notification URLs in the environment, nothing
written or sent anywhere carries them, except each token to the receiver it belongs to.

One project folder runs the real command line with the secrets in its environment: a pair
generation; an entry tick and an exit tick of a pair set known to trade (the market's planted
pairs, stored over the generated set: INJ~SOL enters at ``start`` and exits at the next bar,
as at ``tick_fixtures.START``); a refused tick (``--live`` against a simulator); a failing
tick (the venue unreachable); a backtest; reconcile; status; a tick of the bar before the
present, whose after-job step pings the heartbeat (``pairlib tick``); ``pairlib schedule
--once`` with the simulator's clock at the present, whose tick pings it again and which logs
to ``schedule.log_file``; ``status --check`` and ``--json``; ``notify test``/``notify
deliver``; ``report``. The venue is a simulator on 127.0.0.1 behind a recording proxy;
notifications go to a capture server on 127.0.0.1 and the heartbeat to another.

Then every file of the project folder (the notebooks and their rendered HTML, the state
folder with the SQLite store and its WAL as raw bytes, the scheduler's log, the candle cache),
every captured request, every command output and every record of :data:`LOGGERS` logged in the
test process (at DEBUG) is searched for every secret, raw and in the encodings it could travel
in (base64, URL-quoted).

Each kind of secret path goes through at least one real ``python -m pairlib`` subprocess:
``schedule --once`` (its tick signs venue requests with the API keys in its environment, pings
the heartbeat URL, delivers notifications and writes the scheduler's log) and ``notify test``
(the notification URLs). The other commands run in-process through typer's ``CliRunner``,
which runs the same command functions, notebooks and kernels without a fresh interpreter per
command. ``PAIRLIB_SOAK=1`` (``make soak``) runs every command as a subprocess, lets the
scheduler generate its own pair set, and adds ``tick --preview``, the dashboard notebook, and
reconcile and ``notify test`` once more in-process (for their DEBUG records).

The market is the default one with its genesis moved so that ``start`` is 300 days before the
present: the market is a function of the bar index since genesis, so the trades at ``start``
and the bars near the present are the same whatever the date.

The live guard is tested flag by flag: live trading starts only with ``venue.kind: live``,
``--live`` and both keys.

The counts of what was scanned go into ``docs/RELIABILITY.md`` (section ``secrets``, or
``secrets-soak``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pandas as pd
import pytest
import yaml
from filelock import FileLock
from reliability_doc import write_section
from test_secrets_venue import Recorder, Seen, _proxy_handler
from tick_fixtures import INJ_SOL, START, planted_pairs, unthrottle

from pairlib.clock import SystemClock, iso, last_close, parse_time
from pairlib.config import SIM_API_KEY, Secrets, VenueParams, load_params
from pairlib.edges.store import Store
from pairlib.engine.execution import client_order_id
from pairlib.errors import LiveTradingRefused
from pairlib.sim import GENESIS, Market, SimServer
from pairlib.sim.market import MarketSpec
from pairlib.venue.open import check_live

SOAK = os.environ.get("PAIRLIB_SOAK") == "1"
API_KEY = "fakeKEY-4c1d9e77-secrets-scan"
API_SECRET = "fakeSECRET-8b2a6f03-secrets-scan"
NOTIFY_USER = "hookuser"
NOTIFY_TOKEN = "notifyTOKEN-5e9c2b71"
NOTIFY_PATH_TOKEN = "pathTOKEN-a3f60d18"
HEARTBEAT_TOKEN = "heartbeatTOKEN-71d4c9e2"
PAIRLIB = [sys.executable, "-m", "pairlib"]
LOGGERS = ("pairlib", "ccxt", "urllib3", "requests", "apprise", "papermill", "traitlets",
           "nbconvert", "filelock", "apscheduler", "asyncio")
"""Loggers whose records in the test process (every in-process command) are scanned, at
DEBUG: the venue client, HTTP, notifications, notebooks and the scheduler."""
BAR = timedelta(hours=4)


def _forms(secret: str) -> set[str]:
    """The secret as it could appear: raw, URL-quoted, base64 (alone and as basic auth)."""
    out = {secret, quote(secret, safe="")}
    for blob in (secret, f"{NOTIFY_USER}:{secret}"):
        out.add(base64.b64encode(blob.encode()).decode().rstrip("="))
    return out


API_SECRETS = {"PAIRLIB_API_KEY": API_KEY, "PAIRLIB_API_SECRET": API_SECRET}
NOTIFY_SECRETS = {"notify token": NOTIFY_TOKEN, "notify path token": NOTIFY_PATH_TOKEN}
HEARTBEAT_SECRETS = {"heartbeat token": HEARTBEAT_TOKEN}
ALL_SECRETS = {**API_SECRETS, **NOTIFY_SECRETS, **HEARTBEAT_SECRETS}


def _found(blob: bytes | str, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets any form of which occurs in ``blob``."""
    data = blob.encode() if isinstance(blob, str) else blob
    return [name for name, s in secrets.items() if any(f.encode() in data for f in _forms(s))]


# ----------------------------------------------------------------------------- receivers


@dataclass
class Capture:
    """A capture HTTP server on 127.0.0.1: every request as raw text, answered 200 ``{}``."""

    url: str = ""
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)


def _capture_handler(cap: Capture) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _take(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode(errors="replace") if n else ""
            with cap.lock:
                cap.seen.append(f"{self.command} {self.path}\n{self.headers}\n{body}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = _take  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@contextmanager
def _receivers() -> Iterator[tuple[Capture, Capture]]:
    """The notification receiver and the heartbeat receiver, running for the block."""
    servers, caps = [], []
    for _ in range(2):
        cap = Capture()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _capture_handler(cap))
        cap.url = f"127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(httpd)
        caps.append(cap)
    try:
        yield caps[0], caps[1]
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


@contextmanager
def _recording(names: tuple[str, ...]) -> Iterator[_Records]:
    """Every record of the loggers ``names`` (at DEBUG) goes to the yielded handler, and only
    there (not to pytest's own log capture) while the block runs."""
    records = _Records()
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in names}
    for name in names:
        lg = logging.getLogger(name)
        lg.addHandler(records)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    try:
        yield records
    finally:
        for name, (level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.removeHandler(records)
            lg.setLevel(level)
            lg.propagate = propagate


class _Records(logging.Handler):
    """Every log record of the test process, formatted with its logger's name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a malformed record is still not a leak
            self.lines.append(f"{record.name} {record.levelname} {record.msg!r}")


# ----------------------------------------------------------------------------- the runs


@dataclass
class Ran:
    """One command: how it ran, its exit code and output, and what it sent."""

    name: str
    how: str  # "subprocess" or "in-process"
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float  # of this process and every process it waited for (kernels too)
    requests: list[Seen] = field(default_factory=list)  # what it sent to the venue
    heartbeats: int = 0  # requests it made to the heartbeat receiver

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def orders(self) -> list[Seen]:
        return _order_requests(self.requests)

    @property
    def signed(self) -> list[Seen]:
        return [s for s in self.requests if "signature=" in s.path + s.body]


@dataclass
class Runs:
    """What the runs left and sent: plain data, saved as JSON for other xdist workers."""

    project: Path
    start: datetime  # the entry tick's candle close (tick_fixtures' START, moved)
    wire_seen: list[Seen]  # every request to the simulator
    notify_seen: list[str]  # every request to the notification receiver
    heartbeat_seen: list[str]  # every request to the heartbeat receiver
    commands: dict[str, Ran]
    skipped: list[str]
    log_lines: list[str]
    log_file: Path
    seconds: float
    cpu_seconds: float

    @property
    def wire(self) -> Recorder:
        """The simulator's requests, with :class:`Recorder`'s views of them."""
        return Recorder("", seen=list(self.wire_seen))

    def save(self, path: Path) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["commands"] = {k: asdict(v) for k, v in self.commands.items()}
        data["wire_seen"] = [asdict(s) for s in self.wire_seen]
        path.write_text(json.dumps(data, default=str))

    @classmethod
    def load(cls, path: Path) -> Runs:
        data = json.loads(path.read_text())
        data["commands"] = {k: Ran(**{**v, "requests": [Seen(**s) for s in v["requests"]]})
                            for k, v in data["commands"].items()}
        data["wire_seen"] = [Seen(**s) for s in data["wire_seen"]]
        return cls(**{**data, "project": Path(data["project"]), "start": parse_time(
            data["start"]), "log_file": Path(data["log_file"])})


def _order_requests(seen: list[Seen]) -> list[Seen]:
    """The order placements among ``seen`` (``POST /fapi/v1/order``)."""
    return [s for s in seen if s.method == "POST" and urlsplit(s.path).path == "/fapi/v1/order"]


def _client_id(s: Seen) -> str:
    """The ``newClientOrderId`` an order request carried (query or form body)."""
    fields = {**parse_qs(urlsplit(s.path).query), **parse_qs(s.body)}
    return fields.get("newClientOrderId", [""])[0]


def _cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (their own waited-for
    children included: notebook kernels, subprocesses): a figure that does not grow with
    the machine's load, unlike wall time."""
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _commands_available() -> set[str]:
    import typer

    from pairlib.app.cli import app

    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _save_planted(project_params: Path, market: Market, as_of: datetime) -> None:
    """Store the market's planted pairs as the newest pair set at ``as_of`` (a set whose
    entries and exits are known: see ``tick_fixtures``)."""
    params = load_params(project_params)
    with Store.at(params.state_dir) as db:
        db.save_pair_set(as_of, "planted", pd.DataFrame(planted_pairs(market)), None, as_of)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every command run once in one project folder with the secrets in the environment;
    once per session also under pytest-xdist (the first worker runs them, the others read
    what it saved)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return _run_all(tmp_path_factory)
    shared = tmp_path_factory.getbasetemp().parent / "secrets-scan-runs.json"  # the session's
    with FileLock(str(shared) + ".lock"):
        if shared.is_file():
            return Runs.load(shared)
        done = _run_all(tmp_path_factory)
        done.save(shared)
        return done


def _run_all(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Run every command of the plan (see the module docstring); the simulator, the proxy
    and the receivers are stopped before this returns."""
    with ExitStack() as stack:
        return _run_plan(tmp_path_factory, stack)


def _run_plan(tmp_path_factory: pytest.TempPathFactory, stack: ExitStack) -> Runs:
    """:func:`_run_all`'s work; every server and patch is undone by ``stack``."""
    from typer.testing import CliRunner

    from pairlib.app.cli import app

    t_start, cpu_start = time.perf_counter(), _cpu_seconds()
    mp = pytest.MonkeyPatch()
    stack.callback(mp.undo)
    unthrottle(mp)
    project = tmp_path_factory.mktemp("project")
    present = last_close(SystemClock().now(), "4h")  # the wall clock's bar
    # tick_fixtures' scenario (INJ~SOL enters at START, exits at the next bar) 300 days
    # before the present: the market is a function of the bar index since its genesis, so
    # the same trades happen at ``start``, and the present stays inside the market's history
    # whatever the date.
    start = present.replace(hour=0) - timedelta(days=300)
    market = Market(MarketSpec(genesis=start - (START - GENESIS)))
    server = SimServer(market, project / "sim_server_state.json", now=start,
                       weight_limit=10**9)
    server.start()
    stack.callback(server.stop)
    wire = Recorder(server.url)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(wire))
    wire.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    stack.callback(httpd.server_close)
    stack.callback(httpd.shutdown)
    notify, heartbeat = stack.enter_context(_receivers())
    symbols = sorted({s for r in planted_pairs(market) for s in (r["y"], r["x"])})
    raw = {"venue": {"kind": "sim", "sim_url": wire.url, "max_retries": 1},
           "data": {"universe": symbols},
           "risk": {"risk_per_trade": 0.005, "max_positions": 8, "max_gross_leverage": 6.0},
           # The heartbeat is pinged after the job-path tick of the bar before the present
           # and after the scheduler's tick of the present bar: both must be fresh by the
           # wall clock, so the grace covers a second bar.
           "schedule": {"stale_grace_seconds": 4 * 3600.0}}
    (project / "params").mkdir()
    params_file = project / "params" / "pairlib.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    dead = {**raw, "venue": {**raw["venue"], "sim_url": "http://127.0.0.1:9", "max_retries": 0}}
    (project / "params" / "unreachable.yaml").write_text(yaml.safe_dump(dead))
    for name in [k for k in os.environ if k.startswith("PAIRLIB_")]:
        mp.delenv(name)
    for name, value in {
        **API_SECRETS,
        "PAIRLIB_NOTIFY_URLS": (f"json://{NOTIFY_USER}:{NOTIFY_TOKEN}@{notify.url}/"
                                f"hook/{NOTIFY_PATH_TOKEN}"),
        "PAIRLIB_HEARTBEAT_URL": f"http://{heartbeat.url}/ping/{HEARTBEAT_TOKEN}",
    }.items():
        mp.setenv(name, value)
    mp.chdir(project)
    records = stack.enter_context(_recording(LOGGERS))

    params = load_params(params_file)
    delay = timedelta(seconds=params.schedule.tick_delay_seconds)

    def at(when: datetime) -> Callable[[], None]:
        return lambda: server.set_now(when)

    def then_planted(as_of: datetime) -> Callable[[], None]:
        return lambda: _save_planted(params_file, market, as_of)

    # (name, args, a real subprocess?, before, after)
    Step = tuple[str, list[str], bool, Callable[[], None] | None, Callable[[], None] | None]
    plan: list[Step] = [
        ("pairs", ["pairs", "--as-of", iso(start - BAR)], SOAK, None,
         then_planted(start - BAR)),
        ("tick entry", ["tick", "--as-of", iso(start)], SOAK, None, None),
        ("tick refused (--live on a simulator)", ["tick", "--as-of", iso(start), "--live"],
         SOAK, None, None),
        ("tick exit", ["tick", "--as-of", iso(start + BAR)], SOAK, at(start + BAR), None),
        ("tick failing (venue unreachable)",
         ["tick", "--as-of", iso(start + 2 * BAR), "--params", "params/unreachable.yaml",
          "--wait", "0"], SOAK, None, None),
        ("backtest", ["backtest", "--start", iso(start - timedelta(days=2)),
                      "--end", iso(start)], SOAK, None, None),
        ("reconcile", ["reconcile", "--as-of", iso(start + BAR)], SOAK, None, None),
        ("status", ["status"], SOAK, None, None),
        ("tick near the present (heartbeat)", ["tick", "--as-of", iso(present - BAR)], SOAK,
         at(present - BAR + timedelta(seconds=10)),
         # The scheduler's own pair generation runs only in the soak version; here a pair
         # set of the present bar is already stored, so it skips that job.
         None if SOAK else then_planted(present)),
        ("tick --preview", ["tick", "--as-of", iso(present - BAR), "--preview"], SOAK, None,
         None),
        ("schedule --once", ["schedule", "--once", "--wait", "60"], True,
         at(present + delay + timedelta(seconds=5)), None),
        ("status --check", ["status", "--check"], SOAK, None, None),
        ("status --json", ["status", "--json"], SOAK, None, None),
        ("notify test", ["notify", "test"], True, None, None),
        ("notify deliver", ["notify", "deliver"], SOAK, None, None),
        ("dashboard notebook", [], SOAK, None, None),
        ("report", ["report"], SOAK, None, None),
        # The soak version runs every command above as a subprocess; these two again in
        # this process, so that the venue client's and apprise's DEBUG records are scanned.
        ("reconcile (in-process)", ["reconcile", "--as-of", iso(present)], False, None, None),
        ("notify test (in-process)", ["notify", "test"], False, None, None),
    ]
    if not SOAK:  # the soak version's extra runs
        plan = [s for s in plan if s[0] not in ("tick --preview", "dashboard notebook",
                                                "reconcile (in-process)",
                                                "notify test (in-process)")]
    available = _commands_available()
    commands: dict[str, Ran] = {}
    skipped: list[str] = []
    runner = CliRunner()
    for name, args, real, before, after in plan:
        if args and args[0] not in available:
            skipped.append(name)
            continue
        if before is not None:
            before()
        n_seen, n_beats = len(wire.seen), heartbeat.count()
        t0, c0 = time.perf_counter(), _cpu_seconds()
        if not args:  # the dashboard notebook, as an operator runs it
            code, out, err, how = _dashboard(project, real)
        elif real:
            proc = subprocess.run([*PAIRLIB, *args], cwd=project, env=dict(os.environ),
                                  capture_output=True, text=True, timeout=300)
            code, out, err, how = proc.returncode, proc.stdout, proc.stderr, "subprocess"
        else:
            res = runner.invoke(app, args)
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                raise res.exception
            code, out, err, how = res.exit_code, res.stdout, res.stderr, "in-process"
        commands[name] = Ran(name, how, code, out, err, time.perf_counter() - t0,
                             _cpu_seconds() - c0, wire.seen[n_seen:],
                             heartbeat.count() - n_beats)
        if after is not None:
            after()
    log_file = project / (params.schedule.log_file  # relative to the project root
                          or Path(params.state_dir) / "scheduler.log")
    return Runs(project, start, list(wire.seen), list(notify.seen), list(heartbeat.seen),
                commands, skipped, records.lines, log_file, time.perf_counter() - t_start,
                _cpu_seconds() - cpu_start)


def _dashboard(project: Path, real: bool) -> tuple[int, str, str, str]:
    """Run ``notebooks/dashboard.ipynb`` into ``outputs/dashboard/`` (in a subprocess with
    ``real``), as the operator does; ``(exit code, stdout, stderr, how)``."""
    from pairlib.app.jobs import NOTEBOOKS

    out = project / "outputs" / "dashboard" / "dashboard.ipynb"
    if real:
        code = ("import sys; from pairlib.app.runner import run_notebook; "
                f"r = run_notebook({str(NOTEBOOKS / 'dashboard.ipynb')!r}, {str(out)!r}, {{}}, "
                f"cwd={str(project)!r}); print(r.path); sys.exit(0 if r.ok else 1)")
        proc = subprocess.run([sys.executable, "-c", code], cwd=project, env=dict(os.environ),
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr, "subprocess"
    from pairlib.app.runner import run_notebook

    res = run_notebook(NOTEBOOKS / "dashboard.ipynb", out, {}, cwd=project)
    return (0 if res.ok else 1), str(res.path), res.error or "", "in-process"


def test_the_commands_did_what_they_are_for(runs: Runs) -> None:
    """The scan means something only if the runs worked: a pair set was generated, the
    ticks traded, the refused and failing ticks were refused and failed, the scheduler ran
    its tick, the store matched the venue, the reports exist."""
    c = runs.commands
    assert not runs.skipped, runs.skipped
    for name in ("pairs", "tick entry", "tick exit", "backtest", "reconcile", "status",
                 "tick near the present (heartbeat)", "schedule --once", "status --check",
                 "status --json", "notify test", "notify deliver", "report",
                 *(("dashboard notebook", "tick --preview", "reconcile (in-process)",
                    "notify test (in-process)") if SOAK else ())):
        assert c[name].returncode == 0, (name, c[name].output)
    assert c["tick refused (--live on a simulator)"].returncode == 2
    assert "--live was given" in c["tick refused (--live on a simulator)"].stderr
    assert c["tick failing (venue unreachable)"].returncode == 1, \
        c["tick failing (venue unreachable)"].output
    assert "store matches venue" in c["reconcile"].stdout
    assert "tick " in c["schedule --once"].stdout and " ok " in c["schedule --once"].stdout
    assert c["status --check"].stdout.startswith("ok"), c["status --check"].stdout
    assert json.loads(c["status --json"].stdout)  # the JSON form was produced and scanned
    notebooks = list((runs.project / "outputs").rglob("*.ipynb"))
    assert len(notebooks) >= 7, notebooks
    assert (runs.project / "outputs" / "index.html").is_file()
    if SOAK:
        assert (runs.project / "outputs" / "dashboard" / "dashboard.html").is_file()
    hows = {r.how for r in c.values()}
    assert "subprocess" in hows, hows


def test_orders_were_sent_and_carried_only_the_simulators_key(runs: Runs) -> None:
    """The pair set trades while the fake keys are in the environment: the entry tick sends
    both legs of an entry, the next tick both legs of its exit, and every order request
    carries the simulator's own key, signed, and nothing of the environment's keys."""
    entry_ids = {_client_id(s) for s in runs.commands["tick entry"].orders}
    exit_ids = {_client_id(s) for s in runs.commands["tick exit"].orders}
    # INJ~SOL enters long at ``start`` and exits at the next bar (tick_fixtures' START).
    start = runs.start
    assert {client_order_id(start, INJ_SOL, leg, "enter_long") for leg in "yx"} <= entry_ids
    assert {client_order_id(start + BAR, INJ_SOL, leg, "exit") for leg in "yx"} <= exit_ids
    orders = _order_requests(runs.wire.seen)
    for s in orders:
        keys = {v for k, v in s.headers.items() if k.lower() == "x-mbx-apikey"}
        assert keys == {SIM_API_KEY}, (s.path, keys)
        assert "signature=" in s.path + s.body
        assert s.status == 200, (s.status, s.answer)
        assert _found(f"{s.path} {s.headers!r} {s.body}", ALL_SECRETS) == []


def _project_files(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.is_file()]


def test_no_file_of_the_project_holds_a_secret(runs: Runs) -> None:
    files = _project_files(runs.project)
    kinds = {p.suffix for p in files}
    assert {".ipynb", ".db", ".parquet", ".html", ".log"} <= kinds, kinds
    leaks = {str(p.relative_to(runs.project)): hit for p in files
             if (hit := _found(p.read_bytes(), ALL_SECRETS))}
    assert not leaks, leaks


def test_the_scheduler_log_records_the_run_and_no_secret(runs: Runs) -> None:
    """``schedule --once`` logs to ``schedule.log_file``: its tick and the heartbeat it sent
    are there, the heartbeat's destination redacted."""
    text = runs.log_file.read_text()
    assert "running tick for" in text, text
    assert "heartbeat http://127.0.0.1:***: HTTP 200" in text, text
    assert _found(text, ALL_SECRETS) == []


def test_no_command_output_holds_a_secret(runs: Runs) -> None:
    leaks = {name: hit for name, ran in runs.commands.items()
             if (hit := _found(ran.output, ALL_SECRETS))}
    assert not leaks, leaks


def test_no_log_record_holds_a_secret(runs: Runs) -> None:
    """Every record logged in the test process by the in-process commands (:data:`LOGGERS`
    at DEBUG: the ccxt client with its requests and responses, urllib3, apprise, papermill
    with the cells' outputs, pairlib) is free of every secret."""
    text = "\n".join(runs.log_lines)
    assert "ccxt.base.exchange DEBUG" in text and "apprise" in text  # the loud ones were on
    leaks = [line for line in runs.log_lines if _found(line, ALL_SECRETS)]
    assert not leaks, leaks[:5]


def test_the_venue_gets_only_its_own_key(runs: Runs) -> None:
    """The simulator signs with its fixed local key: the environment's key never reaches
    it, and no notification token does either. A real ``pairlib`` process (the
    scheduler's tick) signed requests too, with the keys in its own environment."""
    text = runs.wire.text()
    assert _found(text, ALL_SECRETS) == []
    assert runs.wire.keys_sent() == {SIM_API_KEY}
    assert runs.wire.signed()
    real = [r for r in runs.commands.values() if r.how == "subprocess" and r.signed]
    assert real, "no subprocess signed a request to the venue"


def test_the_heartbeat_is_pinged_with_its_token_and_only_there(runs: Runs) -> None:
    """An ok tick near the present pings the heartbeat through ``pairlib tick``'s job path
    and again through the scheduler's; the ping carries the heartbeat token, the receiver
    sees nothing else secret, and no other destination sees that token."""
    c = runs.commands
    assert c["tick near the present (heartbeat)"].heartbeats == 1
    assert c["schedule --once"].heartbeats == 1
    assert c["tick entry"].heartbeats == 0  # 300 days old: not fresh by the wall clock
    assert runs.heartbeat_seen
    for request in runs.heartbeat_seen:
        assert request.startswith(f"GET /ping/{HEARTBEAT_TOKEN}"), request
        assert _found(request, {**API_SECRETS, **NOTIFY_SECRETS}) == []
    assert _found("\n".join(runs.notify_seen), HEARTBEAT_SECRETS) == []
    assert _found(runs.wire.text(), HEARTBEAT_SECRETS) == []


def test_notification_tokens_go_only_to_their_receiver(runs: Runs) -> None:
    """Each receiver sees at most its own token, never an API key; the venue sees none."""
    seen_notify = "\n".join(runs.notify_seen)
    assert _found(seen_notify, {**API_SECRETS, **HEARTBEAT_SECRETS}) == []
    assert runs.notify_seen, "notify test delivered nothing to the receiver"
    assert NOTIFY_PATH_TOKEN in seen_notify  # the URL's own path: it does go there
    assert any("test message" in s for s in runs.notify_seen)


@pytest.mark.parametrize(("kind", "live", "key", "secret", "missing"), [
    ("live", False, API_KEY, API_SECRET, "--live"),
    ("sim", True, API_KEY, API_SECRET, "venue.kind: live"),
    ("paper", True, API_KEY, API_SECRET, "venue.kind: live"),
    ("live", True, None, API_SECRET, "PAIRLIB_API_KEY"),
    ("live", True, API_KEY, None, "PAIRLIB_API_SECRET"),
    ("live", True, None, None, "both keys"),
    ("demo", False, None, None, "keys for demo"),
])
def test_live_trading_refuses_without_every_flag(kind: str, live: bool, key: str | None,
                                                 secret: str | None, missing: str) -> None:
    venue = VenueParams(kind=kind)  # type: ignore[arg-type]
    with pytest.raises(LiveTradingRefused) as info:
        check_live(venue, live, Secrets(api_key=key, api_secret=secret))
    msg = str(info.value)
    assert _found(msg, API_SECRETS) == []
    assert "live" in msg or "PAIRLIB_API_KEY" in msg


def test_live_guard_passes_only_with_all_flags() -> None:
    check_live(VenueParams(kind="live"), True, Secrets(api_key=API_KEY, api_secret=API_SECRET))


def test_write_the_secrets_section(runs: Runs) -> None:
    files = _project_files(runs.project)
    by_kind: dict[str, int] = {}
    for p in files:
        by_kind[p.suffix or p.name] = by_kind.get(p.suffix or p.name, 0) + 1
    total = sum(p.stat().st_size for p in files)
    outputs = sum(len(r.output) for r in runs.commands.values())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    orders = _order_requests(runs.wire.seen)
    by_how: dict[str, list[str]] = {}
    for r in runs.commands.values():
        by_how.setdefault(r.how, []).append(f"`{r.name}` ({r.cpu_seconds:.1f} s CPU)")
    md = [
        f"### Secrets scan ({'`make soak`' if SOAK else '`make test`'})",
        "",
        "`tests/test_secrets_scan.py` runs the commands below in one project folder with "
        "distinctive fake `PAIRLIB_API_KEY`/`PAIRLIB_API_SECRET`, a `PAIRLIB_NOTIFY_URLS` "
        "holding a user token and a path token, and a `PAIRLIB_HEARTBEAT_URL` token in the "
        "environment, then searches every file, request, command output and log record for "
        "each secret (raw, URL-quoted, base64). The pair set is the market's planted pairs, "
        "so the ticks place real entry and exit orders; a tick of the bar before the present "
        "(`pairlib tick`) and the scheduler's tick of the present bar (`pairlib schedule "
        "--once`, simulator clock set to the present) ping the heartbeat.",
        "",
        f"- version: {'exhaustive (`PAIRLIB_SOAK=1`)' if SOAK else '`make test`'}; all "
        f"commands {runs.seconds:.0f} s wall on this machine (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), {runs.cpu_seconds:.0f} s of CPU "
        "(the test process, its subprocesses and their notebook kernels)",
        *(f"- run {how}: {', '.join(names)}" for how, names in sorted(by_how.items())),
        f"- not run (command absent): {', '.join(runs.skipped) or 'none'}",
        f"- files scanned: {len(files)} ({total:,} bytes): {kinds}",
        f"- scheduler log scanned: {runs.log_file.stat().st_size:,} bytes; log records of "
        f"the test process scanned: {len(runs.log_lines):,} (ccxt, urllib3, apprise, "
        "papermill, pairlib and others at DEBUG)",
        f"- command output scanned: {outputs:,} characters",
        f"- requests captured: {len(runs.wire.seen)} to the simulator ({len(orders)} orders, "
        f"{len(runs.wire.signed())} signed requests, every one with the simulator's own key), "
        f"{len(runs.notify_seen)} to the notification receiver, "
        f"{len(runs.heartbeat_seen)} to the heartbeat receiver (each with its token only)",
        "- secrets found where they do not belong: 0",
        "- live trading refused without each of: `venue.kind: live`, `--live`, "
        "`PAIRLIB_API_KEY`, `PAIRLIB_API_SECRET` (7 combinations)",
    ]
    assert json.dumps(md)  # plain text only
    write_section("secrets" + ("-soak" if SOAK else ""), "\n".join(md))
