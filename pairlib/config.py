"""Frozen, validated params: what analysts edit in ``params/pairlib.yaml``.

One file, one tree (:class:`Params`): ``venue``, ``data``, ``strategy``, ``risk`` and
``selection`` sections plus the top-level ``state_dir`` and ``missed_tick_entries``. Every
command, job, notebook and the demo read the same file (:data:`PARAMS_FILE` by default), so
no key is written twice and nothing has to be kept equal by hand: pair selection takes its
z-score window from ``strategy.lookback``, pair generation fetches
:attr:`Params.history_bars` (``selection.formation_bars + strategy.lookback``) closed
candles, and the state files follow ``state_dir`` unless set explicitly
(``venue.sim_state`` = ``<state_dir>/sim_account.json``, ``risk.kill_switch_file`` =
``<state_dir>/KILL``). The candle cache ``data.cache_dir`` is market data, not state: it
does not follow ``state_dir`` (a new or reset state folder reuses the cached candles).

The file loads into a frozen pydantic model that forbids unknown keys. Any problem -- an
unknown or repeated key, a wrong type, a non-finite number (``.inf``, ``-.inf``, ``.nan``),
an inverted threshold, a non-positive lookback, a risk fraction outside (0, 0.1], an unknown
or sub-minute timeframe, an empty or malformed universe, a half-life range the z-score window
leaves empty -- raises one :class:`ConfigError` naming the file, the key, the value and what
is allowed, before any network call or order.

Relative paths -- the params file's own path and, inside it, ``state_dir``,
``data.cache_dir``, ``venue.sim_state`` and ``risk.kill_switch_file`` -- are relative to the
project root (:func:`project_root`: the nearest folder, walking up from the working directory,
that holds ``params/pairlib.yaml`` or ``pyproject.toml``), so a notebook whose kernel starts in
``notebooks/`` reads and writes the same files as ``pairlib`` run from the root. Absolute
paths stay as given.

Secrets never live here: API keys come from the environment (``PAIRLIB_API_KEY``,
``PAIRLIB_API_SECRET``) or a git-ignored ``.env`` file, via :func:`load_secrets`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from pairlib.errors import ConfigError

__all__ = [
    "PARAMS_FILE",
    "PROJECT_MARKERS",
    "SECTIONS",
    "SIM_API_KEY",
    "SIM_API_SECRET",
    "TIMEFRAMES",
    "KILL_FILE_NAME",
    "SCHEDULER_LOG_NAME",
    "SIM_ACCOUNT_NAME",
    "NotifyParams",
    "ScheduleParams",
    "DataParams",
    "PairsParams",
    "Params",
    "RiskParams",
    "Secrets",
    "SelectionParams",
    "StrategyParams",
    "TradingParams",
    "VenueParams",
    "apply_overrides",
    "load_params",
    "load_secrets",
    "notebook_overrides",
    "params_hash",
    "project_path",
    "project_root",
    "timeframe_ms",
    "validate_params",
]

PARAMS_FILE = Path("params/pairlib.yaml")
"""The params file every command, job, notebook and the demo read by default (relative to
the project root, see :func:`project_root`)."""

PROJECT_MARKERS: tuple[str, ...] = ("params/pairlib.yaml", "pyproject.toml")
"""A folder holding any of these is a project root (:func:`project_root`)."""
_PATH_KEYS: tuple[str, ...] = ("state_dir", "data.cache_dir", "venue.sim_state",
                               "risk.kill_switch_file")
"""The params keys that hold paths (dotted), resolved against the project root."""

SIM_ACCOUNT_NAME = "sim_account.json"
"""``venue.sim_state`` when not set: ``<state_dir>/sim_account.json``."""
KILL_FILE_NAME = "KILL"
SCHEDULER_LOG_NAME = "scheduler.log"
"""``risk.kill_switch_file`` when not set: ``<state_dir>/KILL``."""

# The embedded simulator's fixed local key pair (documented in the README; not secrets: the
# simulator only listens on loopback and holds no real money).
SIM_API_KEY = "pairlib-sim-key"
SIM_API_SECRET = "pairlib-sim-secret"

# Timeframes ccxt's binanceusdm knows (a test keeps this in sync with ccxt itself, so this
# module need not import ccxt).
TIMEFRAMES: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,
}


# Params refuse timeframes below one minute: client order ids carry the tick's minute.
_MIN_TIMEFRAME_MS = 60_000

# A universe entry: a unified symbol (BASE/QUOTE:SETTLE, optionally with a -suffix such as
# a delivery date) or a venue id (no slash, colon or space).
_SYMBOL_FORM = re.compile(r"[^\s/:]+/[^\s/:]+:[^\s/:]+|[^\s/:]+")


def project_root(start: str | Path | None = None) -> Path:
    """The project root: the nearest folder, from ``start`` (default: the working directory)
    up, that holds ``params/pairlib.yaml`` or ``pyproject.toml``; ``start`` itself when no
    folder above it does.

    Every relative path of the project resolves against it (:func:`project_path`), so a
    notebook whose kernel starts in ``notebooks/`` finds ``params/pairlib.yaml`` and the
    state folder where ``pairlib`` run from the root does. Without a project above the
    working directory, relative paths keep meaning what they mean there.
    """
    here = Path.cwd() if start is None else Path(start).absolute()
    for folder in (here, *here.parents):
        if any((folder / marker).is_file() for marker in PROJECT_MARKERS):
            return folder
    return here


def project_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` resolved against the project root.

    Parameters
    ----------
    path : str or Path
        An absolute path (returned as given) or one relative to the project root.
    root : str or Path, optional
        The project root; default :func:`project_root` of the working directory.

    Returns
    -------
    Path
        Absolute (``root / path``) when the working directory is not the root; as given when
        it is (the path already points there, and stays as short as it was written).
    """
    p = Path(path)
    if p.is_absolute():
        return p
    base = project_root() if root is None else Path(root)
    if base.absolute() == Path.cwd():
        return p
    return base / p


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle in milliseconds.

    Raises
    ------
    ConfigError
        If the timeframe is not one ccxt knows.
    """
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ConfigError(
            f"timeframe {timeframe!r} is not known; allowed: {', '.join(TIMEFRAMES)}"
        ) from None


class _Frozen(BaseModel):
    """Base of every params model: frozen, no unknown keys, and every number finite.

    ``allow_inf_nan=False`` covers every float field of every model: YAML reads ``.inf``
    and ``.nan`` as floats, and a bound such as ``gt=0`` lets ``.inf`` through.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        """Refuse ``true``/``false`` for a number: pydantic would read them as 1 and 0, so
        ``max_positions: true`` would silently mean one position and ``entry: true`` a
        threshold of 1.0."""
        if isinstance(v, bool) and info.field_name in cls.model_fields:
            kinds = _scalar_types(cls.model_fields[info.field_name].annotation)
            if bool not in kinds and kinds & {int, float}:
                raise ValueError("must be a number, not true or false")
        return v


def _scalar_types(ann: Any) -> set[Any]:
    """The types a field annotation admits, unions unpacked (``float | None`` ->
    ``{float, NoneType}``)."""
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return set().union(*(_scalar_types(a) for a in typing.get_args(ann)))
    return {ann}


class VenueParams(_Frozen):
    """Where orders and market data go.

    Notes
    -----
    ``kind``: ``sim`` (the embedded simulated exchange, default), ``paper`` (real public
    prices, simulated account), ``demo`` (the exchange's own test environment) or ``live``.
    ``live`` also needs keys in the environment and ``--live`` on the command line.

    ``sim_state``: the in-process simulator's (and ``paper``'s) account file. ``None`` (the
    default) means ``<state_dir>/sim_account.json``, filled in by :class:`Params`; a section
    validated on its own leaves it ``None``.
    """

    kind: Literal["sim", "paper", "demo", "live"] = "sim"
    exchange_id: str = Field(default="binanceusdm", min_length=1)
    sim_url: str | None = None
    sim_state: Path | None = None
    sim_seed: int = Field(default=7, ge=0)
    sim_symbols: int = Field(default=48, ge=4, le=1000)
    sim_slippage_bps: float = Field(default=2.0, ge=0.0, le=500.0)
    timeout_ms: int = Field(default=10_000, gt=0)
    recv_window_ms: int = Field(default=5_000, ge=500, le=60_000)
    max_retries: int = Field(default=4, ge=0, le=20)

    @field_validator("sim_url")
    @classmethod
    def _loopback_only(cls, v: str | None) -> str | None:
        """The parsed loopback check of :func:`pairlib.checks.loopback_url` (canonical URL)."""
        from pairlib.checks import loopback_url

        return None if v is None else loopback_url("sim_url", v)


class DataParams(_Frozen):
    """Market data: timeframe, quality gates, cache and universe.

    Notes
    -----
    How many candles a run fetches is not a key: pair generation takes
    :attr:`Params.history_bars` (its formation window plus one z lookback), the tick what its
    z-scores need. ``cache_dir`` holds market data, not state, and does not follow
    ``state_dir``.
    """

    timeframe: str = "4h"
    min_history_bars: int = Field(default=120, gt=0)
    stale_bars: int = Field(default=1, ge=0)
    cache_dir: Path = Path(".data")
    quote: str = "USDT"
    universe: tuple[str, ...] | None = None
    universe_size: int = Field(default=48, gt=1, le=1000)

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, v: str) -> str:
        """A timeframe ccxt knows, of one minute or more: client order ids are stamped to
        the minute, so two ticks within one minute would reuse each other's ids."""
        allowed = ", ".join(tf for tf, ms in TIMEFRAMES.items() if ms >= _MIN_TIMEFRAME_MS)
        if v not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe; allowed: {allowed}")
        if TIMEFRAMES[v] < _MIN_TIMEFRAME_MS:
            raise ValueError(
                "shorter than one minute (client order ids are stamped to the minute); "
                f"allowed: {allowed}"
            )
        return v

    @field_validator("universe")
    @classmethod
    def _usable_universe(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """``null`` (top ``universe_size`` by volume) or at least two well-formed symbols."""
        if v is None:
            return v
        if len(v) < 2:
            raise ValueError(
                "a pair needs at least two symbols; list two or more (e.g. "
                "[BTC/USDT:USDT, ETH/USDT:USDT]) or use null for the top universe_size "
                "by 24 h quote volume"
            )
        twice = sorted({s for s in v if v.count(s) > 1})
        if twice:
            raise ValueError(
                f"{', '.join(repr(s) for s in twice)} listed twice; list each symbol once"
            )
        bad = [s for s in v if not _SYMBOL_FORM.fullmatch(s)]
        if bad:
            raise ValueError(
                f"malformed symbol(s) {', '.join(repr(s) for s in bad)}; expected a unified "
                "perpetual symbol BASE/QUOTE:SETTLE such as 'BTC/USDT:USDT', or a venue id "
                "such as 'BTCUSDT'"
            )
        return v


class StrategyParams(_Frozen):
    """Spread z-score thresholds.

    Notes
    -----
    z is the spread's deviation from its rolling mean over ``lookback`` bars (including the
    current bar) in units of its rolling sample std (ddof=1). ``0 <= exit < entry < stop``.
    Pair selection uses the same ``lookback`` (half-life cap, the report's z).
    """

    lookback: int = Field(default=60, gt=1, le=10_000)
    entry: float = Field(default=1.0, gt=0.0)
    exit: float = Field(default=0.5, ge=0.0)
    stop: float = Field(default=3.5, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> StrategyParams:
        if self.exit >= self.entry:
            raise ValueError(
                f"exit ({self.exit}) must be less than entry ({self.entry}): 0 <= exit < entry"
            )
        if self.stop <= self.entry:
            raise ValueError(
                f"stop ({self.stop}) must be greater than entry ({self.entry}): entry < stop"
            )
        return self


class RiskParams(_Frozen):
    """Position sizing and portfolio caps.

    Notes
    -----
    Each new pair is sized so that a move of the spread from the entry z to the stop z
    loses ``risk_per_trade`` of current equity; legs are beta-weighted in notional.

    ``unevaluable_exit_bars``: how many consecutive ticks an open pair may be held while it
    cannot be evaluated (a leg's data unusable, a leg delisted); on the next such tick it is
    closed reduce-only (exit reason ``exit_no_data``). 0 closes it at once.

    ``max_loss_multiple``: an open pair whose loss at the bar's close (its legs valued from
    their entry prices) reaches this multiple of the risk budget it was sized with is closed
    reduce-only (exit reason ``loss_limit``), whatever its z. ``None`` (the default) is off.

    ``kill_switch_file``: while this file exists every tick is exits-only. ``None`` (the
    default) means ``<state_dir>/KILL``, filled in by :class:`Params`; a section validated
    on its own leaves it ``None`` (no file is checked).
    """

    risk_per_trade: float = Field(default=0.02, gt=0.0, le=0.1)
    max_positions: int = Field(default=5, ge=1, le=100)
    max_gross_leverage: float = Field(default=2.0, gt=0.0, le=20.0)
    max_leg_notional: float = Field(default=50_000.0, gt=0.0)
    unevaluable_exit_bars: int = Field(default=1, ge=0, le=1000)
    max_loss_multiple: float | None = Field(default=None, gt=0.0, le=100.0)
    kill_switch: bool = False
    kill_switch_file: Path | None = None


class SelectionParams(_Frozen):
    """The pair-selection pipeline (:func:`pairlib.core.pairs.select`).

    Notes
    -----
    Windows are in bars of ``data.timeframe``. p-value thresholds are probabilities in (0, 1).
    The z-score window the half-life is capped by is ``strategy.lookback``.
    """

    formation_bars: int = Field(default=540, ge=60, le=100_000)
    oos_fraction: float = Field(default=0.3, gt=0.0, lt=0.9)
    oos_max_pvalue: float = Field(default=0.10, gt=0.0, lt=1.0)
    min_quote_volume: float = Field(default=1_000_000.0, ge=0.0)
    min_abs_corr: float = Field(default=0.3, ge=0.0, lt=1.0)
    leg_adf_min_pvalue: float = Field(default=0.10, ge=0.0, lt=1.0)
    leg_kpss_confirm: bool = True
    eg_autolag: Literal["bic", "aic"] = "bic"
    fdr_q: float = Field(default=0.05, gt=0.0, le=1.0)
    max_pvalue: float = Field(default=0.01, gt=0.0, lt=1.0)
    half_life_min: float = Field(default=2.0, gt=0.0)
    half_life_max: float = Field(default=30.0, gt=0.0)
    min_crossings: int = Field(default=12, ge=0)
    hurst_max: float | None = Field(default=None, gt=0.0, lt=1.0)
    one_pair_per_symbol: bool = True
    top_k: int = Field(default=10, ge=1, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> SelectionParams:
        if self.half_life_min >= self.half_life_max:
            raise ValueError(
                f"half_life_min ({self.half_life_min}) must be less than "
                f"half_life_max ({self.half_life_max})"
            )
        return self


class ScheduleParams(_Frozen):
    """When ``pairlib schedule`` runs its jobs (UTC, aligned with the candles).

    Notes
    -----
    A tick runs at every close of a ``data.timeframe`` candle plus ``tick_delay_seconds``;
    pair generation runs on day ``pairs_day`` of each month, before that bar's tick (the order
    the backtest assumes). ``job_timeout_seconds`` bounds one notebook's execution.
    ``heartbeat_seconds`` is how often the scheduler re-reads the wall clock (its wait can
    overshoot after a suspend). ``stale_grace_seconds``: ``pairlib status --check`` fails when
    the last successful tick is older than one bar plus this. ``log_file`` is the scheduler's
    rotating log; ``None`` (the default) means ``<state_dir>/scheduler.log``.
    """

    tick_delay_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    pairs_day: int = Field(default=1, ge=1, le=28)
    job_timeout_seconds: float = Field(default=900.0, gt=0.0, le=86_400.0)
    heartbeat_seconds: float = Field(default=60.0, gt=0.0, le=3600.0)
    stale_grace_seconds: float = Field(default=1800.0, ge=0.0, le=86_400.0)
    log_file: Path | None = None


class NotifyParams(_Frozen):
    """How notifications are delivered. The destinations are NOT params: they are apprise URLs
    in the environment (``PAIRLIB_NOTIFY_URLS``, and ``PAIRLIB_HEARTBEAT_URL`` for the
    dead-man's-switch ping), because they carry tokens.

    Notes
    -----
    Each message waits in the store's outbox until delivered; one delivery attempt is bounded by
    ``timeout_seconds``; a failed one is retried after ``retry_base_seconds`` doubled per attempt,
    at most ``max_attempts`` times. The daily summary covers the UTC day ending at
    ``daily_summary_hour``.
    """

    timeout_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    retry_base_seconds: float = Field(default=30.0, gt=0.0, le=86_400.0)
    daily_summary_hour: int = Field(default=0, ge=0, le=23)


SECTIONS: tuple[str, ...] = ("venue", "data", "strategy", "risk", "selection", "schedule",
                             "notify")
"""The sections of :class:`Params`, in file order."""

_DERIVED_PATHS: dict[str, str] = {
    "venue.sim_state": SIM_ACCOUNT_NAME,
    "risk.kill_switch_file": KILL_FILE_NAME,
    "schedule.log_file": SCHEDULER_LOG_NAME,
}
"""Path keys that default to ``<state_dir>/<name>``."""


class Params(_Frozen):
    """Every params key of the project: the tree of ``params/pairlib.yaml``.

    Attributes
    ----------
    venue, data, strategy, risk, selection, schedule, notify
        The sections (see each class).
    state_dir : Path
        The SQLite store, locks and (unless set) the simulator's account file and the kill
        file live here.
    missed_tick_entries : bool
        Whether a tick for a candle older than the last closed one may enter new pairs.

    Notes
    -----
    Derived values are filled in at validation, so every reader sees resolved values:
    ``venue.sim_state`` (``<state_dir>/sim_account.json``) and ``risk.kill_switch_file``
    (``<state_dir>/KILL``) when unset or ``null``; an explicit value wins. ``model_dump``
    writes a path equal to its derived value as ``None``, so a dumped tree validated again
    with another ``state_dir`` (see :func:`apply_overrides`) has paths that follow it.
    ``model_copy(update=...)`` skips validation and re-derives nothing.
    """

    venue: VenueParams = VenueParams()
    data: DataParams = DataParams()
    strategy: StrategyParams = StrategyParams()
    risk: RiskParams = RiskParams()
    selection: SelectionParams = SelectionParams()
    schedule: ScheduleParams = ScheduleParams()
    notify: NotifyParams = NotifyParams()
    state_dir: Path = Path(".state")
    missed_tick_entries: bool = False

    @model_validator(mode="after")
    def _resolve(self) -> Params:
        """Check the keys that span sections, then fill in the paths derived from
        ``state_dir``."""
        sel, lookback = self.selection, self.strategy.lookback
        cap = lookback / 2.0
        if sel.half_life_min >= min(sel.half_life_max, cap):
            raise ValueError(
                f"selection.half_life_min ({sel.half_life_min:g}) must be less than the "
                f"effective half-life maximum {min(sel.half_life_max, cap):g} bars: the "
                f"smaller of selection.half_life_max ({sel.half_life_max:g}) and "
                f"strategy.lookback / 2 ({cap:g}); lower half_life_min or raise "
                "strategy.lookback"
            )
        # The model is frozen; these assignments happen once, inside validation.
        if self.venue.sim_state is None:
            object.__setattr__(self, "venue", self.venue.model_copy(
                update={"sim_state": self._derived_path("venue.sim_state")}))
        if self.risk.kill_switch_file is None:
            object.__setattr__(self, "risk", self.risk.model_copy(
                update={"kill_switch_file": self._derived_path("risk.kill_switch_file")}))
        if self.schedule.log_file is None:
            object.__setattr__(self, "schedule", self.schedule.model_copy(
                update={"log_file": self._derived_path("schedule.log_file")}))
        return self

    def _derived_path(self, dotted: str) -> Path:
        """The value of a path key that follows ``state_dir``."""
        return self.state_dir / _DERIVED_PATHS[dotted]

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The tree as written in a params file: a path equal to its ``state_dir``-derived
        value is written as ``None`` (so it keeps following ``state_dir``)."""
        out: dict[str, Any] = handler(self)
        for dotted in self.derived:
            section, key = dotted.split(".")
            node = out.get(section)
            if isinstance(node, dict) and key in node:
                node[key] = None
        return out

    @property
    def derived(self) -> frozenset[str]:
        """Dotted keys whose value is the one derived from ``state_dir``."""
        out = set()
        for dotted in _DERIVED_PATHS:
            section, key = dotted.split(".")
            if getattr(getattr(self, section), key) == self._derived_path(dotted):
                out.add(dotted)
        return frozenset(out)

    @property
    def history_bars(self) -> int:
        """Closed candles per symbol pair generation (and ``pairlib data``) fetches:
        ``selection.formation_bars`` plus ``strategy.lookback``, the formation window and
        the warm-up of the rolling z the report draws over it."""
        return self.selection.formation_bars + self.strategy.lookback


TradingParams = Params
"""The tick's params: the one tree (:class:`Params`)."""

PairsParams = Params
"""Pair selection's params: the one tree (:class:`Params`)."""


class Secrets(_Frozen):
    """API credentials, from the environment only. ``repr`` never shows them."""

    api_key: str | None = Field(default=None, repr=False)
    api_secret: str | None = Field(default=None, repr=False)

    @property
    def present(self) -> bool:
        """True when both key and secret are set."""
        return bool(self.api_key) and bool(self.api_secret)


M = TypeVar("M", bound=BaseModel)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) if loc else "(top level)"


def _allowed_hint(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected', '?')}"
    if kind == "finite_number":
        return "must be a finite number; .inf, -.inf and .nan are not allowed"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return str(err.get("msg", ""))
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return str(err.get("msg", ""))


def _resolve_allowed(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """Allowed keys at the parent of ``loc`` (for unknown-key messages)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return ""
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return ", ".join(fields) if fields else ""


class _DuplicateKeys(yaml.YAMLError):
    """Keys repeated within one mapping; ``lines`` has one ``  key: line a and line b`` each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("duplicate keys")
        self.lines = lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """A :class:`yaml.SafeLoader` that refuses a key repeated in the same mapping, at any
    depth (plain YAML loading keeps the last value silently). Merge keys (``<<``) may still
    be overridden, as YAML intends."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        dups = _duplicate_keys(node)
        if dups:
            raise _DuplicateKeys(dups)
        return self.construct_document(node)


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """``  <dotted key>: line <first> and line <repeat>`` for each repeated mapping key."""
    out: list[str] = []
    seen: set[int] = set()  # nodes already walked (aliases share nodes; cycles are possible)

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.tag == "tag:yaml.org,2002:merge":
                        continue
                    line = key.start_mark.line + 1
                    ident = (key.tag, str(key.value))
                    if ident in first:
                        dotted = ".".join((*path, str(key.value)))
                        out.append(f"  {dotted}: line {first[ident]} and line {line}")
                    else:
                        first[ident] = line
                    walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, str(i)))

    walk(root, ())
    return out


@overload
def load_params(path: str | Path) -> Params: ...


@overload
def load_params(path: str | Path, model: type[M]) -> M: ...


def load_params(path: str | Path, model: type[BaseModel] = Params) -> BaseModel:
    """Load and validate a params YAML file into a frozen model.

    Parameters
    ----------
    path : str or Path
        The YAML file (``params/pairlib.yaml``: :data:`PARAMS_FILE`).
    model : type
        The pydantic model class; default :class:`Params`.

    Returns
    -------
    model
        The validated, frozen params.

    Raises
    ------
    ConfigError
        Missing file, invalid YAML, a key repeated in one mapping (named with both line
        numbers), or any validation problem. The message names the file, each offending
        key, its value and what is allowed.

    Notes
    -----
    A relative ``path``, and the relative paths inside the file (``state_dir``,
    ``data.cache_dir``, ``venue.sim_state``, ``risk.kill_switch_file``), are relative to the
    project root (:func:`project_root`); absolute ones stay as given. From the root itself
    the values are those written in the file.
    """
    root = project_root()
    p = project_path(path, root)
    if not p.is_file():
        where = "" if p == Path(path) else (
            f" (a relative params path is relative to the project root {root})")
        raise ConfigError(f"{p}: params file not found{where}")
    try:
        raw = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}
    except _DuplicateKeys as e:
        raise ConfigError(
            f"{p}: duplicate keys (each key may appear only once in a mapping; YAML would "
            "silently keep the last): remove the repeats\n" + "\n".join(e.lines)
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of keys to values, got {type(raw).__name__}")
    params = validate_params(raw, model, source=str(p))
    if isinstance(params, Params):
        params = _anchored(params, root, source=str(p))
    return params


def _anchored(params: Params, root: Path, source: str) -> Params:
    """``params`` with its relative path keys (:data:`_PATH_KEYS`) resolved by
    :func:`project_path` against ``root``; the paths derived from ``state_dir`` follow it."""
    raw = params.model_dump(mode="json")  # derived paths are None: they follow state_dir
    changed = False
    for node, leaf in _path_entries(raw):
        resolved = project_path(node[leaf], root)
        if resolved != Path(node[leaf]):
            node[leaf] = str(resolved)
            changed = True
    return validate_params(raw, type(params), source=source) if changed else params


def _path_entries(raw: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """``(section, key)`` of each path key (:data:`_PATH_KEYS`) set in a dumped tree (a
    derived path is dumped as None and skipped), for reading or replacing its value."""
    for dotted in _PATH_KEYS:
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        if node.get(leaf) is not None:
            yield node, leaf


@overload
def validate_params(raw: Mapping[str, Any], *, source: str = "<params>") -> Params: ...


@overload
def validate_params(raw: Mapping[str, Any], model: type[M], source: str = "<params>") -> M: ...


def validate_params(
    raw: Mapping[str, Any], model: type[BaseModel] = Params, source: str = "<params>"
) -> BaseModel:
    """Validate a mapping (e.g. already-parsed YAML) into ``model`` (default
    :class:`Params`); see :func:`load_params`. A problem spanning sections (reported by the
    root model) is one line naming every key involved."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err.get("loc", ()))
            hint = _allowed_hint(err)
            if not loc:  # the whole tree: the message names its keys and values
                lines.append(f"  {hint}")
                continue
            if err.get("type") == "extra_forbidden":
                allowed = _resolve_allowed(model, loc)
                if allowed:
                    hint += f" (allowed keys: {allowed})"
            lines.append(f"  {_format_loc(loc)} = {err.get('input')!r}: {hint}")
        raise ConfigError(f"{source}: invalid params\n" + "\n".join(lines)) from None


def apply_overrides(
    params: Params, overrides: Mapping[str, Any] | None, source: str = "overrides"
) -> Params:
    """Return ``params`` with dotted-key overrides applied (``None`` values are skipped).

    Parameters
    ----------
    params : Params
        The validated tree.
    overrides : mapping, optional
        Dotted key paths of the tree (``"selection.top_k"``, ``"strategy.entry"``,
        ``"state_dir"``) to values.
    source : str
        Names the overrides in an error (e.g. ``"notebook parameters"``).

    Returns
    -------
    Params
        Validated again, so a bad override gives the same clear :class:`ConfigError` as a
        bad params file; paths derived from ``state_dir`` follow an overridden
        ``state_dir``.
    """
    raw = params.model_dump(mode="json")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key} = {value!r}: {part} is a value, not a "
                                  "section; allowed sections: " + ", ".join(SECTIONS))
            node = child
        node[leaf] = value
    return validate_params(raw, Params, source=source)


def notebook_overrides(names: Mapping[str, Any]) -> dict[str, Any]:
    """The params overrides among a notebook's variables: ``{dotted key: value}``.

    A notebook parameter overrides the params key it is named after, with ``__`` for the
    dot: ``selection__top_k`` overrides ``selection.top_k``, ``data__universe_size``
    overrides ``data.universe_size``. Every name of that form (two or more parts, not
    starting with ``_``) counts; a value of ``None`` keeps the file's value. The names are
    the keys, so there is no mapping to keep in step; a misspelt one fails validation in
    :func:`apply_overrides` as an unknown key.

    Parameters
    ----------
    names : mapping
        The notebook's variables (``globals()`` right after the parameters cell).
    """
    out: dict[str, Any] = {}
    for name, value in names.items():
        if name.startswith("_") or "__" not in name or value is None:
            continue
        parts = name.split("__")
        if all(parts):
            out[".".join(parts)] = value
    return out


def params_hash(params: BaseModel) -> str:
    """Short, stable hash of a params model (recorded with every pair set and tick); derived
    paths count through ``state_dir`` (see :class:`Params`).

    A path inside the project root counts relative to it, so the same file gives the same
    hash whether it was loaded from the root or from ``notebooks/`` (:func:`load_params`
    makes relative paths absolute there)."""
    raw = params.model_dump(mode="json")
    if isinstance(params, Params):
        root = project_root().absolute()
        for node, leaf in _path_entries(raw):
            if Path(node[leaf]).is_absolute():
                with contextlib.suppress(ValueError):  # outside the root: kept absolute
                    node[leaf] = Path(node[leaf]).relative_to(root).as_posix()
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_dotenv(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, val = line.partition("=")
        out[key.strip().removeprefix("export ").strip()] = val.strip().strip("'\"")
    return out


def load_secrets(
    environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env"
) -> Secrets:
    """API credentials from the environment, falling back to a git-ignored ``.env`` file.

    The environment wins over ``.env``. Secrets are never taken from params or notebook
    parameters (papermill writes parameters into the output notebook).
    """
    env = dict(os.environ if environ is None else environ)
    file_vals = _read_dotenv(Path(dotenv)) if dotenv else {}
    key = env.get("PAIRLIB_API_KEY") or file_vals.get("PAIRLIB_API_KEY")
    secret = env.get("PAIRLIB_API_SECRET") or file_vals.get("PAIRLIB_API_SECRET")
    return Secrets(api_key=key or None, api_secret=secret or None)
