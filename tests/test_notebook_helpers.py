"""pairlib.report.notebook writes exactly what scrapbook.glue and plotly's fig.show() write in a
kernel, and scrapbook reads the scraps back."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import IPython.display
import nbformat
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import scrapbook as sb
from nbformat.v4 import new_code_cell, new_notebook, new_output

from pairlib.app.runner import read_scraps
from pairlib.report import notebook as pnb

FRAME = pd.DataFrame({"symbol": ["BTC/USDT:USDT", "ETH/USDT:USDT"], "z": [1.25, -0.5],
                      "n": [3, 4]}, index=pd.RangeIndex(2))
CASES: list[tuple[str, Any, str | None]] = [
    ("status", "ok", None),
    ("json_text", '{"a": 1}', "json"),
    ("count", 12, None),
    ("equity", 10_123.5, None),
    ("flag", True, None),
    ("funnel", {"tested": 190, "chosen": 2}, None),
    ("with_null", {"error": None, "equity": 1.0}, None),
    ("values", [1, 2.5, "x"], None),
    ("number_as_text", 3, "text"),
    ("frame", FRAME, "pandas"),
    ("frame_default", FRAME, None),
]


def _captured(fn: Any, monkeypatch: pytest.MonkeyPatch, *args: Any) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []

    def fake_display(data: Any, metadata: Any = None, raw: bool = False) -> None:
        assert raw is True
        calls.append((data, metadata))

    monkeypatch.setattr(IPython.display, "display", fake_display)
    fn(*args)
    return calls


@pytest.mark.filterwarnings("ignore:No kernel detected:UserWarning")  # scrapbook, outside a kernel
@pytest.mark.parametrize(("name", "value", "encoder"), CASES, ids=[c[0] for c in CASES])
def test_output_equals_scrapbook_glue(name: str, value: Any, encoder: str | None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _captured(pnb.glue, monkeypatch, name, value, encoder)
    theirs = _captured(sb.glue, monkeypatch, name, value, encoder)
    assert len(ours) == len(theirs) == 1
    assert ours == theirs


def test_scrapbook_reads_the_scraps_back(tmp_path: Path) -> None:
    outputs = []
    for name, value, encoder in CASES:
        data, metadata = pnb.scrap_output(name, value, encoder)
        outputs.append(new_output("display_data", data=data, metadata=metadata))
    cell = new_code_cell("pass")
    cell.outputs = outputs
    path = tmp_path / "report.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    scraps = read_scraps(path)
    assert set(scraps) == {c[0] for c in CASES}
    assert scraps["status"] == "ok"
    assert scraps["json_text"] == {"a": 1}
    assert scraps["count"] == 12 and scraps["flag"] is True
    assert scraps["equity"] == 10_123.5
    assert scraps["with_null"] == {"error": None, "equity": 1.0}
    assert scraps["number_as_text"] == "3"
    pd.testing.assert_frame_equal(scraps["frame"], FRAME)
    pd.testing.assert_frame_equal(scraps["frame_default"], FRAME)


@pytest.mark.parametrize(("value", "encoder", "message"), [
    (None, None, "None cannot be glued"),
    (np.int64(3), None, "cannot glue a int64; allowed: str, bool, int, float, list, dict"),
    ({"n": np.int64(3)}, None, "not plain JSON"),
    ({"x": math.nan}, None, "not plain JSON"),
    ([math.inf], "json", "not plain JSON"),
    ({"a": 1}, "arrow", "unknown encoder 'arrow'; allowed: text, json, pandas"),
    ([1, 2], "pandas", "the pandas encoder takes a DataFrame, not a list"),
    (object(), "json", "the json encoder takes a str, bool, int, float, list or dict"),
])
def test_values_scrapbook_could_not_read_back_are_refused(value: Any, encoder: str | None,
                                                          message: str) -> None:
    with pytest.raises((TypeError, ValueError), match="scrap 'bad'") as info:
        pnb.scrap_output("bad", value, encoder)
    assert message in str(info.value)


def test_a_name_is_required() -> None:
    with pytest.raises(ValueError, match="non-empty str"):
        pnb.scrap_output("", 1)


def _figure() -> go.Figure:
    fig = go.Figure(go.Scatter(x=pd.date_range("2025-01-01", periods=3, freq="4h", tz="UTC"),
                               y=np.array([0.5, 1.2, np.nan]), name="z"))
    fig.add_hline(y=1.0, line_dash="dash")
    fig.update_layout(title="BTC ~ ETH", height=300)
    return fig


def test_figure_output_equals_plotly_mimetype_renderer() -> None:
    from plotly.io._renderers import renderers

    fig = _figure()
    theirs = renderers._build_mime_bundle(fig.to_dict(), renderers_string="plotly_mimetype")
    assert pnb.figure_output(fig) == theirs
    assert theirs[pnb.PLOTLY_MIME]["layout"]["title"]["text"] == "BTC ~ ETH"


def test_show_displays_the_figure_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _figure()
    calls = _captured(pnb.show, monkeypatch, fig)
    assert calls == [(pnb.figure_output(fig), None)]
    assert go.Figure(calls[0][0][pnb.PLOTLY_MIME]).layout.title.text == "BTC ~ ETH"


def test_a_figure_spec_is_shown_as_is_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"data": [{"type": "scatter", "x": ["2025-01-01T00:00:00+00:00"], "y": [None]}],
            "layout": {"title": {"text": "t"}}}
    assert _captured(pnb.show, monkeypatch, spec) == [({pnb.PLOTLY_MIME: spec}, None)]
    with pytest.raises(ValueError, match="needs a 'data' list and a 'layout' dict"):
        pnb.figure_output({"data": {}})
    with pytest.raises(ValueError, match="must be plain JSON .*Out of range float.*None for a gap"):
        pnb.figure_output({"data": [{"y": [math.nan]}], "layout": {}})
    with pytest.raises(ValueError, match="must be plain JSON .*not JSON serializable"):
        pnb.figure_output({"data": [{"y": np.arange(3)}], "layout": {}})
