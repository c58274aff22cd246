"""Secrets scan: with distinctive fake keys and notification URLs in the environment, nothing
written or sent anywhere carries them, except each token to the receiver it belongs to.

One project folder runs, through the real command line (a subprocess each, the secrets in
its environment): a pair generation, a normal tick, a refused tick (``--live`` against a
simulator), a failing tick (the venue unreachable), a backtest, reconcile, status (and
``status --check``), ``notify test``/``notify deliver`` and ``report`` where those commands
exist. The venue is a simulator on 127.0.0.1 behind a recording proxy; notifications go to a
capture server on 127.0.0.1 and the heartbeat to another. Then every file of the project
folder (outputs, the state folder with the SQLite store and its WAL as raw bytes, logs,
rendered HTML, the candle cache) and every captured request and command output is searched
for every secret, raw and in the encodings it could travel in (base64, URL-quoted).

The live guard is tested flag by flag: live trading starts only with ``venue.kind: live``,
``--live`` and both keys.

The counts of what was scanned go into ``docs/RELIABILITY.md`` (section ``secrets``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from reliability_doc import write_section
from test_secrets_venue import Recorder, _proxy_handler
from tick_fixtures import START, planted_pairs, unthrottle

from pairlib.clock import iso
from pairlib.config import Secrets, VenueParams
from pairlib.errors import LiveTradingRefused
from pairlib.sim import Market, SimServer
from pairlib.venue.open import check_live

API_KEY = "fakeKEY-4c1d9e77-secrets-scan"
API_SECRET = "fakeSECRET-8b2a6f03-secrets-scan"
NOTIFY_USER = "hookuser"
NOTIFY_TOKEN = "notifyTOKEN-5e9c2b71"
NOTIFY_PATH_TOKEN = "pathTOKEN-a3f60d18"
HEARTBEAT_TOKEN = "heartbeatTOKEN-71d4c9e2"
PAIRLIB = [sys.executable, "-m", "pairlib"]


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


@pytest.fixture(scope="module")
def captures() -> Iterator[tuple[Capture, Capture]]:
    """The notification receiver and the heartbeat receiver."""
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


# ----------------------------------------------------------------------------- the runs


@dataclass
class Runs:
    project: Path
    wire: Recorder
    notify: Capture
    heartbeat: Capture
    commands: dict[str, subprocess.CompletedProcess[str]]
    skipped: list[str]


def _commands_available() -> set[str]:
    out = subprocess.run([*PAIRLIB, "--help"], capture_output=True, text=True, timeout=60)
    return {line.split()[1] for line in out.stdout.splitlines()
            if line.startswith("│ ") and len(line.split()) > 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, captures: tuple[Capture, Capture]
         ) -> Iterator[Runs]:
    """Every command run once in one project folder with the secrets in the environment."""
    mp = pytest.MonkeyPatch()
    unthrottle(mp)
    project = tmp_path_factory.mktemp("project")
    market = Market()
    server = SimServer(market, project / "sim_server_state.json", now=START,
                       weight_limit=10**9)
    server.start()
    wire = Recorder(server.url)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(wire))
    wire.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    notify, heartbeat = captures
    symbols = sorted({s for r in planted_pairs(market) for s in (r["y"], r["x"])})
    raw = {"venue": {"kind": "sim", "sim_url": wire.url, "max_retries": 1},
           "data": {"universe": symbols},
           "risk": {"risk_per_trade": 0.005, "max_positions": 8, "max_gross_leverage": 6.0}}
    (project / "params").mkdir()
    (project / "params" / "pairlib.yaml").write_text(yaml.safe_dump(raw))
    dead = {**raw, "venue": {**raw["venue"], "sim_url": "http://127.0.0.1:9", "max_retries": 0}}
    (project / "params" / "unreachable.yaml").write_text(yaml.safe_dump(dead))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PAIRLIB_")},
           **API_SECRETS,
           "PAIRLIB_NOTIFY_URLS": (f"json://{NOTIFY_USER}:{NOTIFY_TOKEN}@{notify.url}/"
                                   f"hook/{NOTIFY_PATH_TOKEN}"),
           "PAIRLIB_HEARTBEAT_URL": f"http://{heartbeat.url}/ping/{HEARTBEAT_TOKEN}"}
    available = _commands_available()
    after = START + timedelta(hours=4)
    plan: list[tuple[str, list[str]]] = [
        ("pairs", ["pairs", "--as-of", iso(START - timedelta(hours=4))]),
        ("tick", ["tick", "--as-of", iso(START)]),
        ("tick refused (--live on a simulator)", ["tick", "--as-of", iso(START), "--live"]),
        ("tick failing (venue unreachable)",
         ["tick", "--as-of", iso(after), "--params", "params/unreachable.yaml", "--wait", "0"]),
        ("backtest", ["backtest", "--start", iso(START - timedelta(days=4)),
                      "--end", iso(START)]),
        ("reconcile", ["reconcile", "--as-of", iso(START)]),
        ("status", ["status"]),
        ("status --check", ["status", "--check"]),
        ("notify test", ["notify", "test"]),
        ("notify deliver", ["notify", "deliver"]),
        ("report", ["report"]),
    ]
    commands: dict[str, subprocess.CompletedProcess[str]] = {}
    skipped: list[str] = []
    try:
        for name, args in plan:
            if args[0] not in available:
                skipped.append(name)
                continue
            commands[name] = subprocess.run([*PAIRLIB, *args], cwd=project, env=env,
                                            capture_output=True, text=True, timeout=300)
        yield Runs(project, wire, notify, heartbeat, commands, skipped)
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.stop()
        mp.undo()


def test_the_commands_did_what_they_are_for(runs: Runs) -> None:
    """The scan means something only if the runs worked: a pair set was generated, the tick
    traded, the refused and failing ticks were refused and failed, the reports exist."""
    c = runs.commands
    assert c["pairs"].returncode == 0, c["pairs"].stderr
    assert c["tick"].returncode == 0, c["tick"].stdout + c["tick"].stderr
    assert c["tick refused (--live on a simulator)"].returncode == 2
    assert "--live was given" in c["tick refused (--live on a simulator)"].stderr
    assert c["tick failing (venue unreachable)"].returncode == 1, \
        c["tick failing (venue unreachable)"].stderr
    assert c["backtest"].returncode == 0, c["backtest"].stderr
    assert c["reconcile"].returncode == 0, c["reconcile"].stdout + c["reconcile"].stderr
    assert len(runs.wire.signed()) >= 4  # the account was read with a signed key: proof
    notebooks = list((runs.project / "outputs").rglob("*.ipynb"))
    assert len(notebooks) >= 4, notebooks


def _project_files(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.is_file()]


def test_no_file_of_the_project_holds_a_secret(runs: Runs) -> None:
    files = _project_files(runs.project)
    kinds = {p.suffix for p in files}
    assert {".ipynb", ".db", ".parquet"} <= kinds, kinds  # notebooks, the store, the cache
    leaks = {str(p.relative_to(runs.project)): hit for p in files
             if (hit := _found(p.read_bytes(), ALL_SECRETS))}
    assert not leaks, leaks


def test_no_command_output_holds_a_secret(runs: Runs) -> None:
    leaks = {name: hit for name, proc in runs.commands.items()
             if (hit := _found(proc.stdout + proc.stderr, ALL_SECRETS))}
    assert not leaks, leaks


def test_the_venue_gets_only_its_own_key(runs: Runs) -> None:
    """The simulator signs with its fixed local key: the environment's key never reaches
    it, and no notification token does either."""
    text = runs.wire.text()
    assert _found(text, ALL_SECRETS) == []
    assert runs.wire.keys_sent() <= {"pairlib-sim-key"}
    assert runs.wire.signed()


def test_notification_tokens_go_only_to_their_receiver(runs: Runs) -> None:
    """Each receiver sees at most its own token, never an API key; the venue sees none."""
    seen_notify = "\n".join(runs.notify.seen)
    seen_heartbeat = "\n".join(runs.heartbeat.seen)
    assert _found(seen_notify, {**API_SECRETS, **HEARTBEAT_SECRETS}) == []
    assert _found(seen_heartbeat, {**API_SECRETS, **NOTIFY_SECRETS}) == []
    if "notify test" in runs.commands:
        assert runs.notify.seen, "notify test delivered nothing to the receiver"
        assert NOTIFY_PATH_TOKEN in seen_notify  # the URL's own path: it does go there


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
    outputs = sum(len(p.stdout) + len(p.stderr) for p in runs.commands.values())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    md = [
        "## Secrets",
        "",
        "`tests/test_secrets_scan.py` runs every command below in one project folder with "
        "distinctive fake `PAIRLIB_API_KEY`/`PAIRLIB_API_SECRET`, a `PAIRLIB_NOTIFY_URLS` "
        "holding a user token and a path token, and a `PAIRLIB_HEARTBEAT_URL` token in the "
        "environment, then searches everything for each secret (raw, URL-quoted, base64).",
        "",
        f"- commands run: {', '.join(f'`{n}`' for n in runs.commands)}",
        f"- not run (command absent): {', '.join(runs.skipped) or 'none'}",
        f"- files scanned: {len(files)} ({total:,} bytes): {kinds}",
        f"- command output scanned: {outputs:,} characters",
        f"- requests captured: {len(runs.wire.seen)} to the simulator "
        f"({sum(1 for s in runs.wire.seen if s.method == 'POST')} orders or other POSTs, "
        f"{len(runs.wire.signed())} signed, all with the simulator's own key), "
        f"{len(runs.notify.seen)} to the notification receiver, "
        f"{len(runs.heartbeat.seen)} to the heartbeat receiver",
        "- secrets found where they do not belong: 0",
        "- live trading refused without each of: `venue.kind: live`, `--live`, "
        "`PAIRLIB_API_KEY`, `PAIRLIB_API_SECRET` (7 combinations)",
    ]
    assert json.dumps(md)  # plain text only
    write_section("secrets", "\n".join(md))
