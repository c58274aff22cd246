"""Open the venue named in params, with every safeguard, as one context manager.

``sim`` without ``sim_url`` starts the simulated exchange in-process on 127.0.0.1 (any free
port) on its persisted account file, with its clock set to ``now``; it stops on exit. ``sim``
with ``sim_url`` talks to a running ``pairlib exchange serve``. ``paper`` starts the same
in-process simulator, but over the real public market data of ``venue.exchange_id`` (read
without keys, :class:`~pairlib.venue.paper.PublicMarket`) instead of the synthetic
market: real candles, prices, rules and funding (each rate paid at the mark price the venue
settled it at), a simulated account in ``venue.sim_state``. ``demo``
and ``live`` go to the ccxt exchange named by ``venue.exchange_id``.

Live trading needs all three of: ``venue.kind: live`` in params, keys in the environment,
and ``live=True`` (``--live`` on the command line). Anything less is refused with
:class:`~pairlib.errors.LiveTradingRefused` before any network call.

Keys are for the real exchange only. A simulated venue (``sim``, in-process or at
``sim_url``, and ``paper``) never gets them: the environment is not even read for it, and
:meth:`~pairlib.venue.exchange.Exchange.from_params` ignores any keys passed for it (the
simulator signs with its fixed local pair, ``paper`` reads public data keyless). Every
command (tick, reconcile, data, pairs, demo) opens its venue here, so none can send a real
key to a simulator URL. Loopback-only URLs are checked by parsing them
(:func:`pairlib.checks.loopback_url`), never by prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from pairlib.checks import loopback_url
from pairlib.config import Secrets, VenueParams, load_secrets
from pairlib.errors import ConfigError, LiveTradingRefused

if TYPE_CHECKING:
    from pairlib.sim.source import MarketSource
    from pairlib.venue.exchange import Exchange

__all__ = ["check_live", "open_exchange", "scratch_account", "simulator_now"]

_KEYED = ("demo", "live")  # the venue kinds that talk to the real exchange with keys


def check_live(venue: VenueParams, live: bool, secrets: Secrets) -> None:
    """Refuse unless the live safeguards agree; see the module docstring.

    Raises
    ------
    LiveTradingRefused
        ``--live`` without ``venue.kind: live``, ``venue.kind: live`` without ``--live``,
        or a live/demo venue without ``PAIRLIB_API_KEY`` and ``PAIRLIB_API_SECRET``.
    """
    if live and venue.kind != "live":
        raise LiveTradingRefused(
            f"--live was given but params say venue.kind: {venue.kind}; "
            "set venue.kind: live in params to trade live"
        )
    if venue.kind == "live" and not live:
        raise LiveTradingRefused(
            "params say venue.kind: live but --live was not given; live trading needs "
            "venue.kind: live in params, keys in the environment and --live"
        )
    if venue.kind in ("live", "demo") and not secrets.present:
        raise LiveTradingRefused(
            f"venue.kind: {venue.kind} needs PAIRLIB_API_KEY and PAIRLIB_API_SECRET in the "
            "environment (or a git-ignored .env); they are never read from params"
        )


@contextmanager
def open_exchange(
    venue: VenueParams,
    now: datetime,
    *,
    live: bool = False,
    secrets: Secrets | None = None,
    public_url: str | None = None,
) -> Iterator[Exchange]:
    """Yield a ready :class:`~pairlib.venue.exchange.Exchange` for ``venue`` at time ``now``.

    Parameters
    ----------
    venue : VenueParams
        The venue section of the validated params (:class:`pairlib.config.Params`, which
        resolves ``sim_state``).
    now : datetime
        The run's time; an in-process simulator's clock is set to it.
    live : bool
        ``--live`` from the command line.
    secrets : Secrets, optional
        Credentials for ``demo`` and ``live``; default: :func:`pairlib.config.load_secrets`.
        Never read, loaded or passed on for ``sim`` and ``paper``.
    public_url : str, optional
        ``paper`` only, **tests only**: read the public data from this loopback
        Binance-compatible venue (a second simulator) instead of the real exchange. Must
        pass :func:`pairlib.checks.loopback_url` (:class:`~pairlib.errors.ConfigError`
        otherwise). Not a params key on purpose: a paper venue configured from params always
        reads the real exchange.

    Raises
    ------
    LiveTradingRefused
        See :func:`check_live`.
    ConfigError
        A bad ``public_url``, or ``sim`` (in-process) or ``paper`` without ``sim_state``.
    """
    from pairlib.venue.exchange import Exchange

    if venue.kind in _KEYED:
        secrets = secrets if secrets is not None else load_secrets()
    else:
        secrets = Secrets()  # a simulated venue: real keys are never loaded nor passed on
    check_live(venue, live, secrets)
    if public_url is not None:
        if venue.kind != "paper":
            raise ConfigError(f"public_url is for venue.kind: paper only, not {venue.kind}")
        try:
            public_url = loopback_url("public_url", public_url)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    with ExitStack() as stack:
        if venue.kind == "paper":
            # Public prices from the real venue (keyless), account on the simulator.
            from pairlib.venue.paper import PaperExchange, PublicMarket, public_exchange

            public = stack.enter_context(public_exchange(venue, public_url))
            # Funding is paid at the venue's rate and the mark price it sends with it.
            source: MarketSource = PublicMarket(
                public, now, funding_history=public.fetch_funding_rate_history
            )
            connect: Callable[..., Exchange] = partial(
                PaperExchange.connect, venue, data_key=public.venue_key
            )
        elif venue.kind == "sim" and venue.sim_url is None:
            from pairlib.sim.market import Market, MarketSpec

            # A small universe (venue.sim_symbols allows 4) holds fewer planted pairs: the
            # market needs two symbols per pair and two more.
            n_pairs = min(MarketSpec.n_pairs, (venue.sim_symbols - 2) // 2)
            source = Market(MarketSpec(seed=venue.sim_seed, n_symbols=venue.sim_symbols,
                                       n_pairs=n_pairs))
            connect = partial(Exchange.from_params, venue)
        else:  # a running simulator at sim_url, or a ccxt venue
            yield stack.enter_context(
                Exchange.from_params(venue, secrets=secrets, sim_url=venue.sim_url)
            )
            return
        from pairlib.sim.server import SimServer

        if venue.sim_state is None:
            raise ConfigError(
                f"venue.sim_state is not set: the {venue.kind} venue keeps its account in that "
                "file; open the venue section of a loaded params tree (pairlib.config.Params "
                "sets it to <state_dir>/sim_account.json) or set venue.sim_state"
            )
        venue.sim_state.parent.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(SimServer(
            source, state_path=venue.sim_state, now=now, slippage_bps=venue.sim_slippage_bps
        ))
        yield stack.enter_context(connect(sim_url=server.url))


def simulator_now(venue: VenueParams) -> datetime:
    """The present of the running simulator at ``venue.sim_url`` (``GET /sim/clock``): a run
    against it is late, or on time, exactly as it would be against a real venue.

    Raises
    ------
    ExchangeUnavailable
        The simulator's clock cannot be read.
    """
    import json
    import urllib.request

    from pairlib.clock import parse_time
    from pairlib.errors import ExchangeUnavailable

    if venue.sim_url is None:
        raise ConfigError("simulator_now needs venue.sim_url")
    url = f"{venue.sim_url}/sim/clock"
    try:
        with urllib.request.urlopen(url, timeout=venue.timeout_ms / 1000) as r:
            return parse_time(json.loads(r.read())["now"])
    except (OSError, ValueError, KeyError) as e:
        raise ExchangeUnavailable(f"cannot read the simulator's clock at {url}: {e}") \
            from None


def scratch_account(venue: VenueParams, stack: ExitStack) -> VenueParams:
    """``venue`` with an in-process simulator's account file replaced by a temporary copy
    (removed when ``stack`` closes), for runs that must change no venue state (a preview, a
    backtest). Any other venue is returned as it is."""
    import shutil
    import tempfile
    from pathlib import Path

    if venue.kind not in ("sim", "paper") or venue.sim_url is not None or venue.sim_state is None:
        return venue
    copy = Path(stack.enter_context(tempfile.TemporaryDirectory())) / venue.sim_state.name
    if venue.sim_state.exists():
        shutil.copyfile(venue.sim_state, copy)
    return venue.model_copy(update={"sim_state": copy})
