"""Params that would break ticks later are refused at load, naming file, key, value, allowed.

Non-finite numbers (any float field of any params model), keys repeated in a YAML mapping,
an empty or malformed universe, and timeframes below one minute.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from pairlib.config import PairsParams, Params, TradingParams, load_params
from pairlib.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "pairlib.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def nested_yaml(dotted: str, value: str) -> str:
    """``a.b.c`` and ``.inf`` -> the YAML text setting that one key."""
    parts = dotted.split(".")
    return "".join(
        "  " * depth + f"{part}:" + (f" {value}" if depth == len(parts) - 1 else "") + "\n"
        for depth, part in enumerate(parts)
    )


def float_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every float (or optional float) field, nested models included."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        args = typing.get_args(ann) if isinstance(ann, types.UnionType) else (ann,)
        if float in args:
            out.append(prefix + name)
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(float_fields(ann, prefix + name + "."))
    return out


FLOAT_FIELDS = [(Params, f) for f in float_fields(Params)]


def test_the_float_field_walk_covers_every_model() -> None:
    assert TradingParams is Params and PairsParams is Params  # one tree
    fields = {f for _, f in FLOAT_FIELDS}
    assert {"strategy.entry", "strategy.exit", "strategy.stop", "risk.risk_per_trade",
            "risk.max_gross_leverage", "risk.max_leg_notional",
            "venue.sim_slippage_bps"} <= fields
    assert {"selection.oos_fraction", "selection.fdr_q", "selection.max_pvalue",
            "selection.half_life_min", "selection.half_life_max", "selection.hurst_max",
            "selection.min_quote_volume"} <= fields


@pytest.mark.parametrize(("yaml_value", "shown"), [(".inf", "inf"), ("-.inf", "-inf"),
                                                    (".nan", "nan"), (".NaN", "nan")])
@pytest.mark.parametrize(("model", "key"), FLOAT_FIELDS, ids=lambda x: getattr(x, "__name__", x))
def test_non_finite_numbers_are_refused_in_every_float_field(
    tmp_path: Path, model: type[BaseModel], key: str, yaml_value: str, shown: str
) -> None:
    path = write(tmp_path, nested_yaml(key, yaml_value))
    with pytest.raises(ConfigError) as info:
        load_params(path, model)
    msg = str(info.value)
    assert str(path) in msg
    assert f"  {key} = {shown}: must be a finite number" in msg, msg
    assert ".inf, -.inf and .nan are not allowed" in msg


def test_infinite_stop_names_file_key_value_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "strategy:\n  entry: 1.0\n  exit: 0.5\n  stop: .inf\n")
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid params")
    assert "strategy.stop = inf: must be a finite number" in msg


def test_duplicate_keys_at_any_depth_name_the_key_and_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "strategy:\n"          # 1
        "  entry: 1.0\n"       # 2
        "  stop: 3.5\n"        # 3
        "  entry: 2.0\n"       # 4
        "venue:\n"             # 5
        "  kind: sim\n"        # 6
        "venue:\n"             # 7
        "  kind: live\n",      # 8
    )
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert str(path) in msg
    assert "duplicate keys" in msg and "may appear only once" in msg
    assert "  strategy.entry: line 2 and line 4" in msg
    assert "  venue: line 5 and line 7" in msg


def test_duplicate_keys_inside_a_list_of_mappings_are_found(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  universe:\n    - {a: 1, a: 2}\n")
    with pytest.raises(ConfigError, match=r"data\.universe\.0\.a: line 3 and line 3"):
        load_params(path, TradingParams)


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "selection: {half_life_min: 3.0, half_life_max: 40.0}\n"
                           "venue: {<<: {kind: sim}, kind: paper}\n", "pairlib.yaml")
    p = load_params(path, PairsParams)
    assert p.venue.kind == "paper" and p.selection.half_life_min == 3.0


def test_empty_universe_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  universe: []\n")
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert str(path) in msg
    assert "data.universe = []" in msg
    assert "at least two symbols" in msg and "null for the top universe_size" in msg


def test_single_symbol_universe_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  universe: [BTC/USDT:USDT]\n", "pairlib.yaml")
    with pytest.raises(ConfigError, match=r"data\.universe = \['BTC/USDT:USDT'\].*at least two"):
        load_params(path, PairsParams)


def test_malformed_universe_symbol_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  universe: [BTC/USDT:USDT, ETH/USDT, 'SOL USDT', BTCUSDT]\n")
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert str(path) in msg and "data.universe = [" in msg
    assert "malformed symbol(s) 'ETH/USDT', 'SOL USDT';" in msg
    assert "'BTC/USDT:USDT'" in msg and "'BTCUSDT'" in msg  # the forms that are allowed


def test_well_formed_universes_load(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  universe: [BTC/USDT:USDT, ETHUSDT, 1000PEPE/USDT:USDT,"
                           " BTC/USDT:USDT-250328]\n")
    p = load_params(path, TradingParams)
    assert p.data.universe == ("BTC/USDT:USDT", "ETHUSDT", "1000PEPE/USDT:USDT",
                               "BTC/USDT:USDT-250328")


def test_sub_minute_timeframe_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  timeframe: 1s\n")
    with pytest.raises(ConfigError) as info:
        load_params(path, TradingParams)
    msg = str(info.value)
    assert str(path) in msg
    assert "data.timeframe = '1s': shorter than one minute" in msg
    assert "stamped to the minute" in msg
    allowed = msg.split("allowed: ", 1)[1].split(", ")
    assert allowed[0] == "1m" and "4h" in allowed and "1s" not in allowed


def test_one_minute_timeframe_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  timeframe: 1m\n")
    assert load_params(path, TradingParams).data.timeframe == "1m"
