"""Params validation: each bad case gives one clear error naming file, key, value, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pairlib.config import (
    TIMEFRAMES,
    PairsParams,
    TradingParams,
    load_params,
    load_secrets,
    params_hash,
    timeframe_ms,
)
from pairlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object, name: str = "trading.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_shipped_params_load_with_the_original_design_defaults() -> None:
    p = load_params(ROOT / "params" / "trading.yaml", TradingParams)
    assert p.data.timeframe == "4h"
    assert p.strategy.lookback == 60
    assert (p.strategy.entry, p.strategy.exit, p.strategy.stop) == (1.0, 0.5, 3.5)
    assert p.risk.risk_per_trade == 0.02
    assert p.risk.max_positions == 5
    assert p.venue.kind == "sim"
    assert p == TradingParams(), "params/trading.yaml must spell out the defaults"


def test_shipped_pairs_params_load() -> None:
    p = load_params(ROOT / "params" / "pairs.yaml", PairsParams)
    assert p.formation_bars == 540
    assert p.top_k == 10
    assert p.fdr_q == 0.05 and p.max_pvalue == 0.01


def test_params_are_frozen(tmp_path: Path) -> None:
    p = load_params(write(tmp_path, {}), TradingParams)
    with pytest.raises(Exception, match="frozen"):
        p.strategy.entry = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"strategy": {"entyr": 1.0}}, ["strategy.entyr", "unknown key", "allowed keys", "entry"]),
        ({"bogus": 1}, ["bogus", "unknown key"]),
        ({"strategy": {"lookback": "sixty"}}, ["strategy.lookback", "'sixty'", "integer"]),
        ({"strategy": {"exit": 1.2}}, ["strategy", "exit (1.2)", "less than entry (1.0)"]),
        ({"strategy": {"entry": 1.0, "exit": 1.0}}, ["exit (1.0)", "less than entry"]),
        ({"strategy": {"stop": 0.8}}, ["stop (0.8)", "greater than entry (1.0)"]),
        ({"strategy": {"lookback": 0}}, ["strategy.lookback", "0", "greater than 1"]),
        ({"strategy": {"lookback": -5}}, ["strategy.lookback", "-5"]),
        ({"risk": {"risk_per_trade": 0.0}}, ["risk.risk_per_trade", "0.0", "greater than 0"]),
        (
            {"risk": {"risk_per_trade": 0.5}},
            ["risk.risk_per_trade", "0.5", "less than or equal to 0.1"],
        ),
        ({"risk": {"risk_per_trade": -0.01}}, ["risk.risk_per_trade", "-0.01"]),
        ({"data": {"timeframe": "4hours"}}, ["data.timeframe", "'4hours'", "allowed", "4h", "1d"]),
        ({"venue": {"kind": "real"}}, ["venue.kind", "'real'", "'sim'", "'live'"]),
        ({"venue": {"sim_url": "http://10.0.0.1:80"}}, ["venue.sim_url", "loopback"]),
    ],
)
def test_bad_params_name_file_key_value_and_allowed(
    tmp_path: Path, data: dict[str, object], needles: list[str]
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} missing from: {msg}"


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, {"strategy": {"lookback": 0}, "risk": {"max_positions": 0}})
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    assert "strategy.lookback" in str(info.value)
    assert "risk.max_positions" in str(info.value)


def test_pairs_params_inverted_half_life(tmp_path: Path) -> None:
    path = write(tmp_path, {"half_life_min": 30, "half_life_max": 2}, "pairs.yaml")
    with pytest.raises(ConfigError, match=r"half_life_min \(30.0\) must be less than"):
        load_params(path, PairsParams)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml", TradingParams)
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad, TradingParams)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(lst, TradingParams)


def test_timeframes_match_what_ccxt_knows() -> None:
    import ccxt

    ex = ccxt.binanceusdm()
    assert set(TIMEFRAMES) == set(ex.timeframes)
    for tf, ms in TIMEFRAMES.items():
        assert ex.parse_timeframe(tf) * 1000 == ms
    with pytest.raises(ConfigError, match="allowed"):
        timeframe_ms("7h")


def test_params_hash_is_stable_and_sensitive() -> None:
    a = TradingParams()
    assert params_hash(a) == params_hash(TradingParams())
    b = TradingParams.model_validate({"strategy": {"entry": 1.5}})
    assert params_hash(a) != params_hash(b)


def test_secrets_from_environment_then_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# local keys\nPAIRLIB_API_KEY=file-key\nexport PAIRLIB_API_SECRET='file-s'\n"
    )
    s = load_secrets({}, env_file)
    assert (s.api_key, s.api_secret) == ("file-key", "file-s")
    assert s.present
    s2 = load_secrets({"PAIRLIB_API_KEY": "env-key"}, env_file)
    assert s2.api_key == "env-key" and s2.api_secret == "file-s"
    none = load_secrets({}, tmp_path / "missing.env")
    assert not none.present
    assert "file-key" not in repr(s) and "file-s" not in repr(s)


def test_secrets_are_not_params(tmp_path: Path) -> None:
    path = write(tmp_path, {"venue": {"api_key": "abc"}})
    with pytest.raises(ConfigError, match="unknown key"):
        load_params(path, TradingParams)
