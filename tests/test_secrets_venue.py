"""Real keys never reach a simulated venue, loopback URLs are parsed, and no error or log
quotes a signed request's query (``pairlib.venue.open``, ``pairlib.venue.exchange``,
``pairlib.checks``).

Requests are observed on the wire by a small recording proxy on 127.0.0.1 in front of a real
simulator: every header, path, query and body the adapter sends is kept.
"""

from __future__ import annotations

import http.client
import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt
import pytest
import yaml
from tick_fixtures import START, TickEnv, trading_params, unthrottle
from typer.testing import CliRunner

from pairlib import errors
from pairlib.app.cli import app
from pairlib.checks import loopback_url
from pairlib.clock import SettableClock, iso
from pairlib.config import (
    SIM_API_KEY,
    SIM_API_SECRET,
    Secrets,
    TradingParams,
    VenueParams,
    validate_params,
)
from pairlib.edges.store import Store
from pairlib.engine import reconcile
from pairlib.sim import Market, SimServer
from pairlib.venue.exchange import Exchange, _scrub, translate_error
from pairlib.venue.open import open_exchange

ENV_KEY = "envKEY-7f3a9c1e-do-not-send"
ENV_SECRET = "envSECRET-b2d4e6f8-do-not-send"
ETH = "ETH/USDT:USDT"

BAD_URLS = [
    "http://127.0.0.1@evil.example:8765",
    "http://127.0.0.1.evil.example",
    "http://localhost:x@evil.example",
    "http://[::1]@evil.example",
    "http://user:pw@127.0.0.1:8765",
    "https://127.0.0.1:8765",
    "http://10.0.0.1:80",
    "http://localhost.evil.example:8765",
    "http://[::ffff:127.0.0.1]:8765",
    "http://127.0.0.1:8765?x=1",
    "http://127.0.0.1\\@evil.example",
    "127.0.0.1:8765",
]
GOOD_URLS = [
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
    ("http://127.9.8.7:1", "http://127.9.8.7:1"),
    ("http://LOCALHOST:8765/", "http://localhost:8765"),
    ("http://[::1]:8765", "http://[::1]:8765"),
]


# ----------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class Seen:
    """One request as it reached the wire, and the upstream's answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: str
    status: int
    answer: str


@dataclass
class Recorder:
    """A recording HTTP proxy on 127.0.0.1 in front of ``upstream``."""

    upstream: str
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self) -> str:
        """Everything sent: methods, paths with queries, headers and bodies."""
        with self.lock:
            return "\n".join(
                f"{s.method} {s.path} {s.headers!r} {s.body}" for s in self.seen
            )

    def keys_sent(self) -> set[str]:
        """Every X-MBX-APIKEY header value sent."""
        with self.lock:
            return {v for s in self.seen for k, v in s.headers.items()
                    if k.lower() == "x-mbx-apikey"}

    def signed(self) -> list[Seen]:
        """Requests carrying a signature (in the query or the body)."""
        with self.lock:
            return [s for s in self.seen if "signature=" in s.path + s.body]


def _proxy_handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(rec.upstream)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection", "content-length")}
            conn = http.client.HTTPConnection(up.hostname or "", up.port, timeout=10)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status, out_headers = resp.status, resp.getheaders()
            finally:
                conn.close()
            with rec.lock:
                rec.seen.append(Seen(self.command, self.path, dict(self.headers.items()),
                                     body.decode(errors="replace"), status,
                                     data.decode(errors="replace")))
            self.send_response(status)
            for k, v in out_headers:
                if k.lower() not in ("connection", "transfer-encoding", "content-length",
                                     "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _forward  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def sim(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[SimServer]:
    """A simulator at START (weight limit out of the way)."""
    unthrottle(monkeypatch)
    server = SimServer(sim_market, tmp_path / "sim_state.json", now=START, weight_limit=10**9)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def wire(sim: SimServer) -> Iterator[Recorder]:
    """The recording proxy in front of ``sim``."""
    rec = Recorder(sim.url)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(rec))
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def env_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Distinctive real-looking keys in the environment (and no .env in the cwd)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIRLIB_API_KEY", ENV_KEY)
    monkeypatch.setenv("PAIRLIB_API_SECRET", ENV_SECRET)


_AUTH_CODES = ('"code":-2014', '"code":-2015', '"code":-1022')  # bad key, key, signature


def _assert_only_sim_key(rec: Recorder, min_signed: int = 1) -> None:
    """Nothing the proxy saw carries the environment's key or secret; the signed requests
    that did go out carried the simulator's key and none was refused for its key or
    signature (so they were signed with the simulator's secret)."""
    text = rec.text()
    assert ENV_KEY not in text and ENV_SECRET not in text
    assert rec.keys_sent() <= {SIM_API_KEY}
    signed = rec.signed()
    assert len(signed) >= min_signed
    assert all(s.headers.get("X-MBX-APIKEY") == SIM_API_KEY for s in signed)
    refused = [(s.path, s.answer) for s in signed
               if any(c in s.answer.replace(" ", "") for c in _AUTH_CODES)]
    assert not refused, refused
    assert any(s.status == 200 for s in signed)


# ----------------------------------------------------------------------------- loopback URLs


@pytest.mark.parametrize("url", BAD_URLS)
def test_non_loopback_urls_are_refused_everywhere(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback") as direct:
        loopback_url("sim_url", url)
    assert "sim_url must be an http:// URL" in str(direct.value)
    assert "pw" not in str(direct.value)  # user info is masked, never echoed
    with pytest.raises(errors.ConfigError, match=r"venue\.sim_url"):
        validate_params({"venue": {"sim_url": url}}, TradingParams)
    with pytest.raises(errors.ConfigError, match="sim_url must be an http:// URL"):
        Exchange.from_params(VenueParams(kind="sim"), sim_url=url)
    paper = VenueParams(kind="paper", sim_state=tmp_path / "paper.json")
    with pytest.raises(errors.ConfigError, match="public_url must be an http:// URL"), \
            open_exchange(paper, START, public_url=url):
        pass


@pytest.mark.parametrize(("url", "canonical"), GOOD_URLS)
def test_loopback_urls_are_accepted_in_canonical_form(url: str, canonical: str) -> None:
    assert loopback_url("sim_url", url) == canonical
    assert VenueParams(sim_url=url).sim_url == canonical
    with Exchange.from_params(VenueParams(kind="sim"), sim_url=url) as ex:  # no network
        assert f"url={canonical!r}" in repr(ex)


def test_refusal_names_the_value_and_what_is_allowed() -> None:
    with pytest.raises(ValueError) as info:
        loopback_url("public_url", "http://127.0.0.1.evil.example")
    msg = str(info.value)
    assert msg.startswith("public_url must be an http:// URL whose host is a loopback IP "
                          "(127.0.0.0/8 or ::1) or localhost")
    assert "'http://127.0.0.1.evil.example'" in msg
    assert "the host '127.0.0.1.evil.example' is not a loopback IP or localhost" in msg


# ----------------------------------------------------------------------------- keys


def test_reconcile_report_and_snapshot_never_send_the_environment_key(
    env_keys: None, wire: Recorder, tmp_path: Path
) -> None:
    params = trading_params(tmp_path, wire.url)
    snap = reconcile.snapshot(params, START)
    assert snap.positions == {} and snap.steps  # it did read the account and the markets
    frame = reconcile.report(params, START)
    assert list(frame.columns) == list(reconcile.REPORT_COLUMNS)
    _assert_only_sim_key(wire, min_signed=4)  # positions and open orders, twice


def test_reconcile_cli_never_sends_the_environment_key(
    env_keys: None, wire: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "trading.yaml"
    path.write_text(yaml.safe_dump(trading_params(tmp_path, wire.url).model_dump(mode="json")))
    result = CliRunner().invoke(
        app,
        ["reconcile", "--params", str(path), "--as-of", iso(START)],
    )
    assert result.exit_code == 0, result.output
    assert "store matches venue" in result.output
    _assert_only_sim_key(wire, min_signed=2)


def test_tick_never_sends_the_environment_key(
    env_keys: None, wire: Recorder, sim: SimServer, sim_market: Market, tmp_path: Path
) -> None:
    params = trading_params(tmp_path, wire.url)
    with Store.at(params.state_dir) as store:
        env = TickEnv(sim_market, sim, params, store, SettableClock(START), tmp_path)
        env.save_pairs()
        result = env.run(START)
        assert result.status == "ok", result.error
        assert len(result.orders) > 0  # orders went out through the recorded wire
    assert any(s.method == "POST" and s.path.startswith("/fapi/v1/order") for s in wire.seen)
    _assert_only_sim_key(wire, min_signed=3)


def test_explicit_real_keys_are_not_given_to_a_simulator(
    env_keys: None, wire: Recorder, tmp_path: Path
) -> None:
    """Even a caller that loads the real keys and passes them on cannot send them: every
    route (open_exchange with or without secrets, Exchange.from_params) signs with the
    simulator's pair."""
    real = Secrets(api_key=ENV_KEY, api_secret=ENV_SECRET)
    venue = VenueParams(sim_url=wire.url, max_retries=0)
    with open_exchange(venue, START, secrets=real) as ex:
        ex.fetch_balance()
    with open_exchange(venue, START) as ex:  # secrets loaded by default: not for a sim
        ex.fetch_positions()
    with Exchange.from_params(venue, real) as ex:
        ex.fetch_open_orders()
        assert "keys=set" in repr(ex)  # signed, with the simulator's own pair
    _assert_only_sim_key(wire, min_signed=3)


def test_in_process_simulated_venues_get_no_real_keys(
    env_keys: None, wire: Recorder, tmp_path: Path
) -> None:
    """The in-process simulator (sim without sim_url) and paper (its public reads and its
    simulated account) never hold the environment's key."""
    real = Secrets(api_key=ENV_KEY, api_secret=ENV_SECRET)
    sim_venue = VenueParams(sim_state=tmp_path / "inproc.json", sim_symbols=20)
    with open_exchange(sim_venue, START, secrets=real) as ex:
        assert ex.fetch_balance().equity > 0
        assert ex._client.apiKey == SIM_API_KEY and ex._client.secret == SIM_API_SECRET
    paper = VenueParams(kind="paper", sim_state=tmp_path / "paper.json", max_retries=1)
    with open_exchange(paper, START, secrets=real, public_url=wire.url) as ex:
        assert ex.fetch_balance().equity > 0
        assert ex._client.apiKey == SIM_API_KEY
    text = wire.text()  # the public stand-in saw the paper venue's public reads, keyless
    assert wire.seen and ENV_KEY not in text and not wire.keys_sent() and not wire.signed()


@pytest.mark.parametrize("bad", ["key", "secret"])
def test_a_simulator_expecting_other_keys_gives_authentication_failed(
    sim_market: Market, bad: str
) -> None:
    """The adapter signs with the simulator's fixed pair; a simulator started with another
    pair rejects it as Binance rejects a wrong key (-2015) or signature (-1022)."""
    other = {"api_key": ENV_KEY if bad == "key" else SIM_API_KEY,
             "api_secret": ENV_SECRET if bad == "secret" else SIM_API_SECRET}
    with SimServer(sim_market, None, now=START, **other) as server, \
            Exchange.from_params(VenueParams(max_retries=0), sim_url=server.url) as ex, \
            pytest.raises(errors.AuthenticationFailed) as info:
        ex.fetch_balance()
    assert isinstance(info.value.__cause__, ccxt.AuthenticationError)
    assert SIM_API_KEY not in str(info.value) and SIM_API_SECRET not in str(info.value)


# ----------------------------------------------------------------------------- signed queries

SIGNED_URL = ("https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&origClientOrderId=pl-1"
              "&timestamp=1700000000000&recvWindow=5000&signature=" + "ab12" * 16)


def _clean(text: str) -> bool:
    low = text.lower()
    return not any(p in low for p in ("signature=", "timestamp=", "recvwindow=", "ab12ab12"))


@pytest.mark.parametrize("text", [
    f"binanceusdm GET {SIGNED_URL} 503 Service Unavailable",
    "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
    "/fapi/v2/balance?timestamp=1700000000000&recvWindow=5000&signature=" + "ab12" * 16,
    "body symbol=BTCUSDT&side=BUY&timestamp=1700000000000&signature=" + "ab12" * 16,
    f"503 Server Error: Service Unavailable for url: {SIGNED_URL}.",
])
def test_scrub_drops_signed_queries(text: str) -> None:
    got = _scrub(text, ("pk_KEY",))
    assert _clean(got), got
    assert _scrub(got) == got  # idempotent
    if "://" in text:
        assert "https://fapi.binance.com/fapi/v1/order?<query removed>" in got
    assert _scrub("GET /fapi/v1/order pk_KEY failed", ("pk_KEY",)) == (
        "GET /fapi/v1/order *** failed")
    headers = "Request: {'X-MBX-APIKEY': 'pk_live_123', 'Accept': '*/*'}"
    assert _scrub(headers) == "Request: {'X-MBX-APIKEY': '***', 'Accept': '*/*'}"


def test_translate_error_scrubs_the_message_and_the_chain() -> None:
    try:
        try:
            raise RuntimeError(f"503 Server Error for url: {SIGNED_URL}")
        except RuntimeError as inner:
            raise ccxt.ExchangeNotAvailable(f"binanceusdm GET {SIGNED_URL} 503") from inner
    except ccxt.ExchangeNotAvailable as e:
        err = translate_error(e, "fetch_order BTC/USDT:USDT", ("pk_KEY",))
        try:
            raise err from e
        except errors.ExchangeUnavailable as raised:
            text = "".join(traceback.format_exception(raised))
    assert isinstance(err, errors.ExchangeUnavailable)
    assert "fetch_order BTC/USDT:USDT: ExchangeNotAvailable: binanceusdm GET " in str(err)
    assert "/fapi/v1/order?<query removed>" in str(err)
    assert _clean(text), text


def test_real_simulator_error_quotes_no_signed_query(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An order lookup that 5xx's (retried once, then given up) leaves neither the signature
    nor the timestamp in the error, its traceback or the logs."""
    caplog.set_level(logging.DEBUG)
    with Exchange.from_params(VenueParams(max_retries=1), sim_url=sim.url,
                              retry_base_delay=0.001) as ex:
        ex.markets()
        sim.faults.fail_next(2, status=503, path="/fapi/v1/order")
        with pytest.raises(errors.ExchangeUnavailable) as info:
            ex.fetch_order_by_client_id(ETH, "pl-lookup-1")
        sim.faults.clear()
    err = info.value
    assert isinstance(err.__cause__, ccxt.ExchangeNotAvailable)
    assert "/fapi/v1/order?<query removed> 503" in str(err)  # still says what failed
    text = "".join(traceback.format_exception(err))
    assert _clean(str(err)) and _clean(str(err.__cause__)) and _clean(text), text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retry 1/1" in logged and _clean(logged), logged
    # ccxt's own DEBUG log of the request is kept, without its query or key header
    assert "/fapi/v1/order?<query removed>, Request: {'X-MBX-APIKEY': '***'" in logged
    assert SIM_API_KEY not in text + logged
