"""The venue opener's live guard, notebook overrides, and the `pairlib data` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairlib.app.cli import app
from pairlib.config import Params, Secrets, VenueParams, load_params
from pairlib.engine.generate import apply_overrides
from pairlib.errors import ConfigError, LiveTradingRefused
from pairlib.venue.open import check_live

ROOT = Path(__file__).resolve().parents[1]
KEYS = Secrets(api_key="k", api_secret="s")
NO_KEYS = Secrets()


@pytest.mark.parametrize(
    ("kind", "live", "secrets", "needle"),
    [
        ("sim", True, KEYS, "--live was given but params say venue.kind: sim"),
        ("paper", True, KEYS, "--live was given"),
        ("live", False, KEYS, "--live was not given"),
        ("live", True, NO_KEYS, "needs PAIRLIB_API_KEY and PAIRLIB_API_SECRET"),
        ("demo", False, NO_KEYS, "needs PAIRLIB_API_KEY"),
    ],
)
def test_live_refused_without_every_safeguard(
    kind: str, live: bool, secrets: Secrets, needle: str
) -> None:
    with pytest.raises(LiveTradingRefused, match=needle):
        check_live(VenueParams(kind=kind), live, secrets)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "live", "secrets"), [
    ("sim", False, NO_KEYS), ("paper", False, NO_KEYS), ("demo", False, KEYS),
    ("live", True, KEYS),
])
def test_allowed_combinations(kind: str, live: bool, secrets: Secrets) -> None:
    check_live(VenueParams(kind=kind), live, secrets)  # type: ignore[arg-type]


def test_overrides_apply_and_revalidate() -> None:
    base = Params()
    p = apply_overrides(base, {"selection.top_k": 3, "data.universe_size": 20,
                               "selection.fdr_q": None}, source="notebook parameters")
    assert (p.selection.top_k, p.data.universe_size, p.selection.fdr_q) == (
        3, 20, base.selection.fdr_q)
    with pytest.raises(ConfigError, match=r"(?s)notebook parameters.*selection\.top_k = 0"):
        apply_overrides(base, {"selection.top_k": 0}, source="notebook parameters")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(base, {"data.bogus": 1})


def test_in_process_venue_needs_its_account_file() -> None:
    """A venue section on its own has no state_dir to put the simulator's account in: opening
    it in-process is refused, naming the key (a loaded tree always has it)."""
    from pairlib.clock import parse_time
    from pairlib.venue.open import open_exchange

    with (pytest.raises(ConfigError, match=r"venue\.sim_state is not set"),
          open_exchange(VenueParams(), parse_time("2026-06-01T00:00Z"))):
        pass  # pragma: no cover - never reached
    assert Params().venue.sim_state == Path(".state/sim_account.json")


def test_data_command_prints_quality_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "--as-of", "2026-06-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    shipped = load_params(tmp_path / "params" / "pairlib.yaml")
    bars = shipped.selection.formation_bars + shipped.strategy.lookback  # what `pairs` fetches
    kept = min(shipped.data.universe_size, shipped.venue.sim_symbols)
    assert f"{kept} symbols kept, 0 dropped; {bars} aligned closed candles" in result.output
    assert str(tmp_path / ".data") in result.output
    assert any((tmp_path / ".data").rglob("*.parquet"))


def test_data_command_bad_time_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "--as-of", "yesterday"])
    assert result.exit_code != 0
    assert "not an ISO-8601 time: 'yesterday'" in result.output
