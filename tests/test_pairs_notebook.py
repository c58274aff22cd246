"""generate_pairs.ipynb executed with papermill against the simulator, via `pairlib pairs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pairlib.app.cli import app
from pairlib.app.runner import read_scraps, run_notebook
from pairlib.clock import iso, parse_time
from pairlib.config import apply_overrides, load_params, timeframe_ms
from pairlib.edges.store import Store
from pairlib.engine.generate import check_pair_set
from pairlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-06-01T00:00:00Z"

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _mimetypes(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    return {
        mime
        for cell in nb["cells"] if cell["cell_type"] == "code"
        for out in cell.get("outputs", []) for mime in out.get("data", {})
    }


def test_pairs_command_runs_the_notebook_and_stores_a_pair_set(project: Path) -> None:
    result = CliRunner().invoke(app, ["pairs", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    out = Path(result.output.strip().splitlines()[-1])
    assert out == Path("outputs/pairs/2026-06-01T0000Z-generate_pairs.ipynb")
    assert out.exists()
    assert "application/vnd.plotly.v1+json" in _mimetypes(out)  # charts are in the report

    from pairlib.app.runner import read_scraps

    scraps = read_scraps(out)
    chosen = scraps["chosen_pairs"]
    assert isinstance(chosen, pd.DataFrame) and len(chosen) >= 1
    assert {"y", "x", "beta", "alpha", "pvalue", "half_life"} <= set(chosen.columns)
    funnel = scraps["funnel"]
    assert funnel["symbols in"] == 48
    assert funnel["chosen"] == len(chosen)
    assert isinstance(scraps["scan_seconds"], float) and scraps["scan_seconds"] >= 0.0
    text = out.read_text()
    assert f"**pair set** #{scraps['pair_set_id']}" in text and "**pairs tested**" in text
    assert "**Dropped:** " in text

    with Store.at(project / ".state") as db:
        pair_set = db.latest_pair_set()
    assert pair_set is not None and pair_set.id == scraps["pair_set_id"]
    assert pair_set.notebook_path == str(out)
    assert list(pair_set.pairs.y) == list(chosen.y)
    # The set records what it was built on, from the params it ran with.
    params = load_params(project / "params" / "pairlib.yaml")
    meta = pair_set.meta
    assert meta is not None
    venue_key = f"sim-s{params.venue.sim_seed}-n{params.venue.sim_symbols}"
    assert (meta.venue_kind, meta.venue_key) == ("sim", venue_key)
    assert (meta.timeframe, meta.lookback) == (params.data.timeframe, params.strategy.lookback)
    assert meta.data_end == iso(parse_time(AS_OF))
    bar = pd.Timedelta(milliseconds=timeframe_ms(params.data.timeframe))
    first_open = parse_time(AS_OF) - bar * params.history_bars
    assert meta.data_start == iso(first_open)
    assert meta.code_version
    assert f"`{venue_key}`" in text and f"**z lookback** {params.strategy.lookback}" in text
    check_pair_set(pair_set, params, venue_key)  # fits the params it was built with
    longer = apply_overrides(params, {"strategy.lookback": params.strategy.lookback + 10})
    with pytest.raises(ConfigError, match="pairlib pairs --as-of"):
        check_pair_set(pair_set, longer, venue_key)

    again = CliRunner().invoke(app, ["pairs", "--as-of", AS_OF])  # a re-run keeps both reports
    assert again.exit_code == 0
    assert Path(again.output.strip().splitlines()[-1]).name.endswith("generate_pairs-2.ipynb")
    with Store.at(project / ".state") as db:
        assert len(db.query("SELECT id FROM pair_sets")) == 2


def test_failed_pairs_notebook_is_kept_and_exits_non_zero(project: Path) -> None:
    result = CliRunner().invoke(app, ["pairs", "--as-of", "2023-06-01T00:00:00Z"])  # pre-history
    assert result.exit_code == 1
    out = Path("outputs/pairs/2023-06-01T0000Z-generate_pairs.ipynb")
    assert out.exists()
    assert "An Exception was encountered" in out.read_text()
    assert not (project / ".state" / "pairlib.db").exists() or Store.at(
        project / ".state"
    ).latest_pair_set() is None


def test_bad_params_fail_before_any_notebook_runs(project: Path) -> None:
    (project / "params" / "pairlib.yaml").write_text("selection:\n  top_k: 0\n")
    result = CliRunner().invoke(app, ["pairs", "--as-of", AS_OF])
    assert result.exit_code == 2
    assert "top_k" in result.output and "greater than or equal to 1" in result.output
    assert not Path("outputs").exists()


def test_notebook_overrides_are_named_after_params_keys(project: Path) -> None:
    """``selection__top_k`` overrides ``selection.top_k`` of the params file for this run
    (no mapping of names anywhere); a misspelt override fails the run, naming the key."""
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "generate_pairs.ipynb"
    out = project / "outputs" / "top1.ipynb"
    res = run_notebook(notebook, out, {"as_of": AS_OF, "params_file": "params/pairlib.yaml",
                                       "selection__top_k": 1, "notebook_path": str(out)},
                       cwd=project)
    assert res.ok, res.error
    assert len(read_scraps(out)["chosen_pairs"]) == 1
    with Store.at(project / ".state") as db:
        pair_set = db.latest_pair_set()
    assert pair_set is not None and len(pair_set.pairs) == 1
    bad = project / "outputs" / "bad.ipynb"
    res = run_notebook(notebook, bad, {"as_of": AS_OF, "params_file": "params/pairlib.yaml",
                                       "selection__topk": 1}, cwd=project)
    assert not res.ok and "selection.topk" in str(res.error)
