"""Kernel-side report output: scrapbook scraps and plotly figures, without the slow imports.

Importing scrapbook, or showing a figure with ``Figure.show()``, imports nbformat and with it
jsonschema, which builds an RFC 3987 grammar: 0.7-2.5 s in a fresh kernel, several times the
whole tick. :func:`glue` and :func:`show` emit the same display outputs without
those imports; tests pin them to ``scrapbook.glue`` and plotly's mimetype renderer.

Scraps
------

``scrapbook.glue`` records a value as a display output of the mimetype
``application/scrapbook.scrap.<encoder>+json``; ``scrapbook.read_notebook`` reads it back.
:func:`glue` covers the encoders the reports use, ``text``, ``json`` and ``pandas``. Scraps are
read back with scrapbook (:func:`pairlib.app.runner.read_scraps`).

Unlike scrapbook, a value that cannot be read back (None, NaN, a numpy scalar inside a dict) is
refused here with a message naming the scrap, instead of producing a notebook that scrapbook
later fails to read.
"""

from __future__ import annotations

import base64
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ENCODERS", "PLOTLY_MIME", "figure_output", "glue", "scrap_output", "show"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"

ENCODERS = ("text", "json", "pandas")
SCRAP_VERSION = 1  # scrapbook's LATEST_SCRAP_VERSION (payload schema scrap.v1.json)
_JSON_TYPES = (list, dict, int, float, bool)


def _require_plain_json(value: Any, what: str, fix: str) -> None:
    """Raise ValueError ``"<what> (<why>): <fix>"`` unless ``value`` is strict JSON (no NaN,
    no infinity, no numpy values)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} ({e}): {fix}") from None


def _default_encoder(name: str, value: object) -> str:
    """scrapbook's registry order: text, then json, then pandas."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, _JSON_TYPES):
        return "json"
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return "pandas"
    raise TypeError(
        f"scrap {name!r}: cannot glue a {type(value).__name__}; allowed: str, bool, int, float, "
        "list, dict (JSON values) or a pandas DataFrame"
    )


def _encode(name: str, value: Any, encoder: str) -> Any:
    if encoder == "text":
        return value if isinstance(value, str) else str(value)
    if encoder == "json":
        if isinstance(value, str):
            value = json.loads(value)  # as scrapbook: a string given to json is JSON text
        if not isinstance(value, _JSON_TYPES):
            raise TypeError(f"scrap {name!r}: the json encoder takes a str, bool, int, float, "
                            f"list or dict, not a {type(value).__name__}")
        _require_plain_json(value, f"scrap {name!r}: not plain JSON",
                            "cast numpy scalars with int()/float() and replace NaN or infinity")
        return value
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"scrap {name!r}: the pandas encoder takes a DataFrame, "
                        f"not a {type(value).__name__}")
    buf = io.BytesIO()
    value.to_parquet(buf, engine="pyarrow")
    return base64.b64encode(buf.getvalue()).decode()


def scrap_output(name: str, value: Any, encoder: str | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The display data and metadata that ``scrapbook.glue(name, value, encoder)`` emits.

    Parameters
    ----------
    name : str
        The scrap's name (non-empty).
    value : str, bool, int, float, list, dict or pandas.DataFrame
        The value; None, NaN and numpy scalars are refused.
    encoder : {"text", "json", "pandas"}, optional
        As scrapbook: by default ``text`` for a str, ``json`` for other JSON values, ``pandas``
        for a DataFrame.

    Returns
    -------
    data, metadata : dict
        For ``IPython.display.display(data, metadata=metadata, raw=True)``.

    Raises
    ------
    TypeError, ValueError
        A value or encoder that scrapbook could not read back, named with what is allowed.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"scrap name must be a non-empty str, got {name!r}")
    if value is None:
        raise TypeError(f"scrap {name!r}: None cannot be glued (scrapbook cannot read it back); "
                        "glue only known values")
    enc = encoder or _default_encoder(name, value)
    if enc not in ENCODERS:
        raise ValueError(f"scrap {name!r}: unknown encoder {enc!r}; allowed: "
                         + ", ".join(ENCODERS))
    payload = {"name": name, "data": _encode(name, value, enc), "encoder": enc,
               "version": SCRAP_VERSION}
    data = {f"application/scrapbook.scrap.{enc}+json": payload}
    metadata = {"scrapbook": {"name": name, "data": True, "display": False}}
    return data, metadata


def glue(name: str, value: Any, encoder: str | None = None) -> None:
    """Record ``value`` in the running notebook as the scrapbook scrap ``name``.

    See :func:`scrap_output` for the arguments; read back with ``scrapbook.read_notebook``.
    """
    from IPython.display import display

    data, metadata = scrap_output(name, value, encoder)
    display(data, metadata=metadata, raw=True)


def figure_output(fig: go.Figure | dict[str, Any]) -> dict[str, Any]:
    """The display data that ``fig.show()`` emits in a Jupyter kernel (plotly's default
    ``plotly_mimetype`` renderer there): the figure as plain JSON under :data:`PLOTLY_MIME`.

    ``fig`` is a plotly ``Figure``, or a figure spec (a dict of JSON values with ``data`` and
    ``layout``, see :mod:`pairlib.report.tick_charts`), which is shown as is, without importing
    plotly. JupyterLab draws either offline, from the notebook alone.
    """
    if isinstance(fig, dict):
        if not isinstance(fig.get("data"), list) or not isinstance(fig.get("layout"), dict):
            raise ValueError("a figure spec needs a 'data' list and a 'layout' dict, got keys "
                             f"{sorted(fig)}")
        _require_plain_json(fig, "a figure spec must be plain JSON",
                            "use None for a gap, lists for arrays, ISO-8601 strings for times")
        return {PLOTLY_MIME: fig}
    from plotly.io import to_json

    return {PLOTLY_MIME: json.loads(to_json(fig.to_dict(), validate=False, remove_uids=False))}


def show(fig: go.Figure | dict[str, Any]) -> None:
    """Display a plotly figure or figure spec in the running notebook, as ``fig.show()``
    does there."""
    from IPython.display import display

    display(figure_output(fig), raw=True)
