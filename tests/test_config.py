"""Params validation: each bad case gives one clear error naming file, key, value, allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pairlib.config import (
    PARAMS_FILE,
    SECTIONS,
    TIMEFRAMES,
    PairsParams,
    Params,
    RiskParams,
    SelectionParams,
    TradingParams,
    VenueParams,
    apply_overrides,
    load_params,
    load_secrets,
    notebook_overrides,
    params_hash,
    project_path,
    project_root,
    timeframe_ms,
    validate_params,
)
from pairlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object, name: str = "pairlib.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


SHIPPED = ROOT / "params" / "pairlib.yaml"


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf key of a params model (sections walked)."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaf_fields(ann, prefix + name + "."))
        else:
            out.append(prefix + name)
    return out


def _edited_copy(tmp_path: Path, key: str, old: str, new: str) -> Path:
    """The shipped params with one ``key: old`` line changed to ``key: new`` (exactly one
    such line must exist, so the edit is the one an analyst would make)."""
    text = SHIPPED.read_text()
    pattern = re.compile(rf"(?m)^(\s*{re.escape(key)}:\s*){re.escape(old)}(?=\s|$)")
    edited, n = pattern.subn(lambda m: m.group(1) + new, text)
    assert n == 1, f"{key}: {old} occurs {n} times in {SHIPPED}"
    path = tmp_path / "pairlib.yaml"
    path.write_text(edited)
    return path


def test_one_params_file_is_shipped() -> None:
    assert sorted(p.name for p in (ROOT / "params").iterdir()) == ["pairlib.yaml"]
    assert Path("params/pairlib.yaml") == PARAMS_FILE and (ROOT / PARAMS_FILE).is_file()


@pytest.mark.parametrize("edit", [None, ("entry", "1.0", "1.2"), ("top_k", "10", "3"),
                                  ("state_dir", ".state", "elsewhere/state")],
                         ids=["shipped", "entry-1.2", "top_k-3", "state_dir-moved"])
def test_shipped_params_load_and_validate(
    tmp_path: Path, edit: tuple[str, str, str] | None
) -> None:
    """The shipped file (and copies with a value an analyst changed) load as one tree whose
    values are the file's: the tests check structure and consistency, never that the file
    equals the defaults."""
    path = SHIPPED if edit is None else _edited_copy(tmp_path, *edit)
    p = load_params(path)
    raw = yaml.safe_load(path.read_text())
    for dotted in _leaf_fields(Params):
        node: object = raw
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"{dotted} missing from {path}"
            node = node[part]
        value: object = p
        for part in dotted.split("."):
            value = getattr(value, part)
        if node is None and dotted in p.derived:
            assert value == p.state_dir / Path(str(value)).name  # null: follows state_dir
        elif isinstance(value, Path):
            assert value == Path(str(node)), dotted
        elif isinstance(value, tuple):
            assert list(value) == node, dotted
        else:
            assert value == node, dotted
    assert p.history_bars == p.selection.formation_bars + p.strategy.lookback
    assert TradingParams is Params and PairsParams is Params


def test_every_params_key_is_listed_once_and_commented() -> None:
    """Each key of the tree appears in the shipped file exactly once, in its section, with a
    comment on its line (units, allowed values) -- the file is the analyst's reference."""
    raw = yaml.safe_load(SHIPPED.read_text())
    assert list(raw) == [*SECTIONS, "state_dir", "missed_tick_entries"]
    lines = SHIPPED.read_text().splitlines()
    for dotted in _leaf_fields(Params):
        leaf = dotted.rsplit(".", 1)[-1]
        hits = [ln for ln in lines if re.match(rf"\s*{leaf}:", ln)]
        assert len(hits) == 1, f"{leaf} appears {len(hits)} times"
        assert "#" in hits[0] and hits[0].split("#", 1)[1].strip(), f"{dotted} has no comment"
        indent = len(hits[0]) - len(hits[0].lstrip())
        assert indent == (0 if "." not in dotted else 2), f"{dotted} is not in its section"


def test_every_params_key_is_read_by_the_code() -> None:
    """No dead key: each leaf name is read as an attribute somewhere in pairlib outside
    the config module (``.<name>`` not followed by an identifier character)."""
    sources = "\n".join(f.read_text() for f in (ROOT / "pairlib").rglob("*.py")
                        if f.name != "config.py")
    for dotted in _leaf_fields(Params):
        leaf = dotted.rsplit(".", 1)[-1]
        assert re.search(rf"\.{leaf}(?![A-Za-z0-9_])", sources), f"nothing reads {dotted}"


def test_paths_follow_state_dir_unless_set(tmp_path: Path) -> None:
    p = validate_params({"state_dir": str(tmp_path / "st")})
    assert p.venue.sim_state == tmp_path / "st" / "sim_account.json"
    assert p.risk.kill_switch_file == tmp_path / "st" / "KILL"
    assert p.schedule.log_file == tmp_path / "st" / "scheduler.log"
    assert p.derived == {"venue.sim_state", "risk.kill_switch_file", "schedule.log_file"}
    explicit = validate_params({"state_dir": str(tmp_path / "st"),
                                "venue": {"sim_state": "/acct.json"},
                                "risk": {"kill_switch_file": None}})
    assert explicit.venue.sim_state == Path("/acct.json")  # an explicit value wins
    assert explicit.risk.kill_switch_file == tmp_path / "st" / "KILL"  # null = derived
    assert explicit.derived == {"risk.kill_switch_file", "schedule.log_file"}
    # A dump keeps derived paths derived: moved again, they follow; explicit ones stay.
    raw = explicit.model_dump(mode="json")
    assert raw["risk"]["kill_switch_file"] is None and raw["venue"]["sim_state"] == "/acct.json"
    moved = apply_overrides(explicit, {"state_dir": str(tmp_path / "moved")})
    assert moved.risk.kill_switch_file == tmp_path / "moved" / "KILL"
    assert moved.venue.sim_state == Path("/acct.json")
    assert validate_params(yaml.safe_load(yaml.safe_dump(raw))) == explicit
    # A section on its own cannot know state_dir: it leaves the paths unset.
    assert RiskParams().kill_switch_file is None and VenueParams().sim_state is None


def test_data_cache_does_not_follow_state_dir(tmp_path: Path) -> None:
    p = validate_params({"state_dir": str(tmp_path / "st")})
    assert p.data.cache_dir == Path(".data")


def test_selection_takes_its_lookback_from_the_strategy(tmp_path: Path) -> None:
    """One lookback: no selection key repeats it, and a half-life floor the z window leaves
    no room for is refused at load, naming both keys."""
    assert "zscore_lookback" not in SelectionParams.model_fields
    assert "lookback" not in SelectionParams.model_fields
    path = write(tmp_path, {"strategy": {"lookback": 8}, "selection": {"half_life_min": 4}})
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "selection.half_life_min (4) must be less than the effective half-life maximum 4" \
        in msg
    assert "strategy.lookback / 2 (4)" in msg and "selection.half_life_max (30)" in msg
    assert "{" not in msg  # one line naming the keys, not the whole tree


def test_overrides_use_the_dotted_keys_and_revalidate() -> None:
    base = Params()
    p = apply_overrides(base, {"selection.top_k": 3, "data.universe_size": 20,
                               "selection.fdr_q": None, "strategy.entry": 1.2})
    assert (p.selection.top_k, p.data.universe_size, p.selection.fdr_q, p.strategy.entry) == (
        3, 20, base.selection.fdr_q, 1.2)
    with pytest.raises(ConfigError, match=r"(?s)nb.*selection\.top_k = 0"):
        apply_overrides(base, {"selection.top_k": 0}, source="nb")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(base, {"top_k": 3})  # the old flat name: not a key of the tree
    with pytest.raises(ConfigError, match="state_dir is a value, not a section"):
        apply_overrides(base, {"state_dir.x": 1})


def test_notebook_parameter_names_are_the_params_keys() -> None:
    names = {"selection__top_k": 3, "data__universe_size": None, "strategy__entry": 1.2,
             "as_of": "2026-01-01T00:00Z", "__name__": "__main__", "_i1": "x", "a__": 1}
    assert notebook_overrides(names) == {"selection.top_k": 3, "strategy.entry": 1.2}
    p = apply_overrides(Params(), notebook_overrides(names))
    assert (p.selection.top_k, p.strategy.entry) == (3, 1.2)
    with pytest.raises(ConfigError, match="selection.topk"):
        apply_overrides(Params(), notebook_overrides({"selection__topk": 3}))
    # Every key can be such a parameter: none has a name the runner refuses as secret-like.
    from pairlib.app.runner import _check_parameters

    _check_parameters({dotted.replace(".", "__"): 1 for dotted in _leaf_fields(Params)}, {})


def test_notebooks_name_their_overrides_after_params_keys() -> None:
    """Every override parameter of the notebooks is a key of the tree (``<section>__<key>``
    or a top-level key); nothing maps names by hand."""
    import nbformat

    leaves = set(_leaf_fields(Params))
    for name in ("generate_pairs.ipynb", "tick.ipynb", "backtest.ipynb"):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = re.findall(r"(?m)^([A-Za-z_]\w*)\s*=", cell.source)
        assert "params_file" in assigned
        overrides = [a for a in assigned if "__" in a or a in leaves]
        for a in overrides:
            assert a.replace("__", ".") in leaves, f"{name}: {a} names no params key"
        assert not [a for a in assigned if a not in overrides
                    and a not in ("as_of", "params_file", "notebook_path", "live", "trade",
                                  "start", "end", "initial_equity", "slippage_bps",
                                  "taker_fee")], name
        assert "params/pairlib.yaml" in cell.source


def test_cli_default_is_the_one_params_file() -> None:
    from pairlib.app import cli

    assert cli.PARAMS == PARAMS_FILE


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
    path = write(tmp_path, {"selection": {"half_life_min": 30, "half_life_max": 2}})
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


# ------------------------------------------------------------------ paths from the project root


def _project(tmp_path: Path) -> Path:
    """A project: ``params/pairlib.yaml`` (relative state, cache and an explicit relative
    kill file; ``sim_state`` follows ``state_dir``) and a ``notebooks/`` folder."""
    root = tmp_path / "proj"
    (root / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "params" / "pairlib.yaml").write_text(yaml.safe_dump({
        "state_dir": ".state", "data": {"cache_dir": ".data"},
        "risk": {"kill_switch_file": "ops/KILL"}, "venue": {"sim_state": None}}))
    return root


def test_relative_paths_resolve_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``notebooks/`` (where JupyterLab starts a kernel) the params file and every
    relative path in it are the project root's; from the root they are as written, as they
    always were; the hash does not depend on where the tree was loaded from."""
    root = _project(tmp_path)
    monkeypatch.chdir(root / "notebooks")
    assert project_root() == root
    inside = load_params(PARAMS_FILE)
    assert inside.state_dir == root / ".state"
    assert inside.data.cache_dir == root / ".data"
    assert inside.venue.sim_state == root / ".state" / "sim_account.json"
    assert inside.risk.kill_switch_file == root / "ops" / "KILL"
    assert inside.derived == {"venue.sim_state", "schedule.log_file"}  # still follow state_dir
    monkeypatch.chdir(root)
    at_root = load_params(PARAMS_FILE)
    assert at_root.state_dir == Path(".state") and at_root.data.cache_dir == Path(".data")
    assert at_root.risk.kill_switch_file == Path("ops/KILL")
    assert params_hash(at_root) == params_hash(inside)
    monkeypatch.chdir(root / "notebooks")
    assert params_hash(inside) == params_hash(at_root)


def test_absolute_paths_stay_and_a_missing_file_names_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (root / "params" / "pairlib.yaml").write_text(yaml.safe_dump({
        "state_dir": str(elsewhere / "st"), "data": {"cache_dir": str(elsewhere / "c")}}))
    deep = root / "notebooks" / "scratch"
    deep.mkdir()
    monkeypatch.chdir(deep)
    p = load_params("params/pairlib.yaml")
    assert p.state_dir == elsewhere / "st" and p.data.cache_dir == elsewhere / "c"
    assert project_path(elsewhere) == elsewhere
    assert project_path("outputs") == root / "outputs"
    with pytest.raises(ConfigError, match=r"params file not found \(a relative params path "
                                          r"is relative to the project root .*proj\)"):
        load_params("params/other.yaml")


def test_pyproject_marks_a_root_and_without_a_project_paths_stay_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare" / "sub"
    bare.mkdir(parents=True)
    monkeypatch.chdir(bare)
    assert project_root() == bare  # no project above: the working directory
    assert project_path(".state") == Path(".state")
    (tmp_path / "bare" / "pyproject.toml").write_text("")
    assert project_root() == tmp_path / "bare"
    assert project_path(".state") == tmp_path / "bare" / ".state"
