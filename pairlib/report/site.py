"""The offline report site: every executed notebook under ``outputs/`` rendered to HTML, and
``outputs/index.html`` listing every run.

What it builds
--------------
* ``<name>.html`` beside each executed ``<name>.ipynb`` (pair generations, ticks, backtests,
  sweeps, and any other folder of ``outputs/``), rendered with the ``pairlib_offline``
  nbconvert template (``pairlib/report/templates/``): code cells hidden, every output kept,
  plotly's JSON output drawn with ``Plotly.newPlot`` and no remote script at all.
* ``plotly.min.js``: the one copy of plotly.js all pages load, by a path relative to each page
  (reports live at different depths).
* ``index.html``: every run, newest first, with its time, kind, status, duration, signals,
  orders, PnL and equity (what that kind glues), linked to its report, the equity curve across
  ticks, and a filter by kind and status (a few lines of inline JavaScript).
* ``.site-manifest.json``: what each notebook gave the index, by its size and modification
  time, so an unchanged run is neither rendered nor read again.

Everything comes from the executed notebooks themselves: their scrapbook scraps and papermill's
``metadata.papermill`` (start and end time, duration, exception). Scraps are decoded here from
the notebook's JSON (the ``text``, ``json`` and ``pandas`` encoders of
:mod:`pairlib.report.notebook`; tables with a thread-free Parquet reader, as
:func:`pairlib.app.runner.decode_frame`), because importing scrapbook costs a second or two
for what is a dictionary look-up.

Cost
----
With nothing new, a build stats the notebooks, reads the manifest and writes the index:
milliseconds, no nbconvert import. Each new notebook costs its render (0.1-0.5 s) and, once
per build that renders anything, nbconvert's import (about 2 s, mostly jsonschema and
mistune): that import is the dominant cost of a build after a job.

Concurrency and partial files
-----------------------------
Builds of one ``outputs/`` folder are serialized by an ``flock`` on ``outputs/.site.lock``, and
every file is written to a temporary name and renamed, so a reader never sees half a page. A
notebook that is still being written (the empty file a run reserves, or JSON cut off
mid-write) is skipped and counted, never an error; it is picked up by a later build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "INDEX_NAME",
    "KINDS",
    "MANIFEST_NAME",
    "PLOTLY_JS_NAME",
    "RunEntry",
    "SiteBuild",
    "TEMPLATE_DIR",
    "TEMPLATE_NAME",
    "build_site",
    "equity_curve",
    "notebook_scraps",
    "read_entries",
    "read_entry",
    "render_notebook",
    "site_entries",
    "update_site",
]

_log = logging.getLogger(__name__)

INDEX_NAME = "index.html"
PLOTLY_JS_NAME = "plotly.min.js"
MANIFEST_NAME = ".site-manifest.json"
_LOCK_NAME = ".site.lock"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "pairlib_offline"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
_SCRAP_PREFIX = "application/scrapbook.scrap."
_MANIFEST_VERSION = 1

KINDS: dict[str, str] = {"ticks": "tick", "pairs": "pairs", "backtests": "backtest",
                         "sweeps": "sweep"}
"""The kind of a run by the first folder under ``outputs/``; any other folder is its own kind
(its name), and a notebook directly in ``outputs/`` is ``other``."""

_FAILED = frozenset({"failed", "refused", "degraded"})


@dataclass(frozen=True)
class RunEntry:
    """One run as the index lists it.

    Attributes
    ----------
    notebook, report : str
        The executed notebook and its rendered report, relative to ``outputs/`` (POSIX).
    kind : str
        ``tick``, ``pairs``, ``backtest``, ``sweep`` or the folder's name (:data:`KINDS`).
    status : str
        The run's own glued ``status`` when it has one (a tick: ``ok``, ``already_ran``,
        ``preview``, ``degraded``, ``refused``, ``failed``); otherwise ``failed`` when papermill
        recorded an exception, ``incomplete`` when it recorded no end time (still running, or
        its kernel was killed), else ``ok``. A notebook that raised is never listed ``ok``.
    as_of : str or None
        What the run is about (ISO-8601): the tick's candle close, the pair set's ``as_of``,
        the backtest's or sweep's last bar.
    started, ended : str or None
        papermill's start and end time (ISO-8601, UTC).
    duration_s : float or None
        papermill's duration.
    signals : int or None
        A tick's pairs with a non-zero target position.
    actions : list of str
        A tick's acted-on pairs (``"<pair> <action>"``), e.g. entries and exits.
    orders : int or None
        A tick's orders.
    trades : int or None
        A backtest's round trips.
    pnl : float or None
        A backtest's net PnL (final equity minus the initial); a tick's change of equity since
        the tick before it (filled in by :func:`site_entries`).
    equity : float or None
        A tick's equity after it, a backtest's final equity.
    detail : str
        A short line of what else the run glued (pairs chosen, Sharpe, a sweep's scalars).
    error : str or None
        papermill's exception (``ename: evalue``) or the run's glued ``error``.
    """

    notebook: str
    report: str
    kind: str
    status: str
    as_of: str | None = None
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None
    signals: int | None = None
    actions: list[str] = field(default_factory=list)
    orders: int | None = None
    trades: int | None = None
    pnl: float | None = None
    equity: float | None = None
    detail: str = ""
    error: str | None = None


@dataclass(frozen=True)
class SiteBuild:
    """What one :func:`update_site` did.

    Attributes
    ----------
    index : Path
        ``outputs/index.html``.
    rendered : list of Path
        Notebooks rendered to HTML by this build.
    unchanged : int
        Notebooks whose report was already up to date.
    skipped : list of Path
        Notebooks not (yet) readable: empty (a reserved path) or cut off mid-write (not
        listed), or that nbconvert could not render (listed, linked to the notebook).
    entries : list of RunEntry
        Every run listed in the index, newest first.
    """

    index: Path
    rendered: list[Path]
    unchanged: int
    skipped: list[Path]
    entries: list[RunEntry]

    def summary(self) -> str:
        """``rendered N new, M unchanged, K skipped`` (with what was skipped, if anything)."""
        line = (f"rendered {len(self.rendered)} new, {self.unchanged} unchanged, "
                f"{len(self.skipped)} skipped")
        if self.skipped:
            shown = ", ".join(p.name for p in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            line += f" (not readable yet, or not renderable: {shown}{more})"
        return line


class _Unreadable(Exception):
    """A notebook that cannot be read yet: empty, or JSON cut off mid-write."""


def build_site(outputs_dir: Path) -> Path:
    """Render every new executed notebook under ``outputs_dir`` and rebuild its index.

    Parameters
    ----------
    outputs_dir : Path
        The outputs folder (``outputs/``); it must exist.

    Returns
    -------
    Path
        ``outputs_dir / "index.html"``.

    Raises
    ------
    FileNotFoundError
        ``outputs_dir`` is not a folder.

    See :func:`update_site` for what is rendered and what it costs.
    """
    return update_site(outputs_dir).index


def update_site(outputs_dir: Path, *, force: bool = False) -> SiteBuild:
    """Render what changed under ``outputs_dir`` to HTML and rebuild ``index.html``.

    A notebook is rendered when its report is missing or older than it, or when the template
    changed since the last build; otherwise its index entry comes from the manifest (same
    size and modification time as then), or is read from the notebook without rendering it.
    A notebook that nbconvert cannot render is listed with a link to the notebook itself and
    the reason, and logged; it never stops the build.

    Parameters
    ----------
    outputs_dir : Path
        The outputs folder; it must exist.
    force : bool
        Render every notebook again (after a template change, say).

    Returns
    -------
    SiteBuild
        The index path, what was rendered, unchanged and skipped, and the entries listed.

    Raises
    ------
    FileNotFoundError
        ``outputs_dir`` is not a folder (the message names it).
    """
    root = Path(outputs_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"outputs folder {root} does not exist (or is not a folder); run a job first "
            "(pairlib pairs, pairlib tick, pairlib backtest) or pass --outputs DIR"
        )
    with _site_lock(root):
        return _update(root, force)


def _update(root: Path, force: bool) -> SiteBuild:
    """:func:`update_site` under the site lock."""
    template = _template_hash()
    manifest = _read_manifest(root)
    known: dict[str, Any] = manifest.get("runs", {})
    # Reports rendered by another template are stale whatever their age.
    stale = force or (bool(manifest) and manifest.get("template") != template)
    runs: dict[str, Any] = {}
    entries: list[RunEntry] = []
    rendered: list[Path] = []
    skipped: list[Path] = []
    unchanged = 0
    exporter: Any = None
    plotly_js = _ensure_plotly_js(root)
    for nb_path in _notebooks(root):
        rel = nb_path.relative_to(root).as_posix()
        report = nb_path.with_suffix(".html")
        try:
            st = nb_path.stat()
            report_mtime = report.stat().st_mtime_ns if report.is_file() else None
        except FileNotFoundError:  # removed while listing
            continue
        stamp = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
        fresh = not stale and report_mtime is not None and report_mtime >= st.st_mtime_ns
        cached = known.get(rel)
        if fresh and isinstance(cached, dict) and cached.get("stamp") == stamp:
            entry = RunEntry(**cached["entry"])
            unchanged += 1
        else:
            try:
                nb = _load(nb_path, st.st_size)
            except _Unreadable:
                skipped.append(nb_path)
                continue
            entry = read_entry(nb, rel, notebook_scraps(nb))
            if fresh:  # rendered by an earlier build; only its entry is read again
                unchanged += 1
            else:
                if exporter is None:
                    exporter = _exporter()
                try:
                    page = _render(exporter, nb, nb_path, root, plotly_js)
                except Exception as e:  # noqa: BLE001 - one bad notebook never stops the site
                    reason = f"report not rendered ({type(e).__name__}: {e})"
                    _log.warning("%s: %s", nb_path, reason)
                    entry = replace(entry, report=rel, detail="; ".join(
                        x for x in (reason, entry.detail) if x))
                    skipped.append(nb_path)
                    runs[rel] = {"stamp": None, "entry": asdict(entry)}
                    entries.append(entry)
                    continue
                _write_text(report, page)
                # The report carries the notebook's time as read: a notebook written again
                # while it was being rendered is newer than its report, and rendered again.
                os.utime(report, ns=(st.st_mtime_ns, st.st_mtime_ns))
                rendered.append(nb_path)
        runs[rel] = {"stamp": stamp, "entry": asdict(entry)}
        entries.append(entry)
    ordered = site_entries(entries)
    index = root / INDEX_NAME
    _write_text(index, _index_html(ordered))
    _write_text(root / MANIFEST_NAME, json.dumps(
        {"version": _MANIFEST_VERSION, "template": template, "runs": runs}, indent=1))
    return SiteBuild(index=index, rendered=rendered, unchanged=unchanged, skipped=skipped,
                     entries=ordered)


def read_entries(outputs_dir: Path) -> list[RunEntry]:
    """Every run under ``outputs_dir`` as the index lists it, newest first, writing nothing:
    from the site's manifest where a notebook is unchanged since the last build, read from the
    notebook otherwise (notebooks not readable yet are left out; no folder, no runs)."""
    root = Path(outputs_dir)
    if not root.is_dir():
        return []
    known = _read_manifest(root).get("runs", {})
    entries = []
    for nb_path in _notebooks(root):
        rel = nb_path.relative_to(root).as_posix()
        try:
            st = nb_path.stat()
        except FileNotFoundError:
            continue
        cached = known.get(rel)
        if isinstance(cached, dict) and cached.get("stamp") == {"mtime_ns": st.st_mtime_ns,
                                                                "size": st.st_size}:
            entries.append(RunEntry(**cached["entry"]))
            continue
        try:
            nb = _load(nb_path, st.st_size)
        except _Unreadable:
            continue
        entries.append(read_entry(nb, rel, notebook_scraps(nb)))
    return site_entries(entries)


@contextlib.contextmanager
def _site_lock(root: Path) -> Iterator[None]:
    """Hold ``outputs/.site.lock`` (an exclusive ``flock``) for one build."""
    fd = os.open(root / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _notebooks(root: Path) -> list[Path]:
    """Every ``*.ipynb`` under ``root``, outside hidden folders and checkpoints, sorted."""
    found = []
    for path in root.rglob("*.ipynb"):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") for p in parts):
            continue
        found.append(path)
    return sorted(found)


def _load(path: Path, size: int) -> Any:
    """The notebook at ``path`` as an nbformat v4 node (read without schema validation);
    :class:`_Unreadable` when it is empty or not (yet) a whole notebook."""
    import nbformat.v4

    if size == 0:
        raise _Unreadable(f"{path} is empty (a reserved report not written yet)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _Unreadable(f"{path} is not readable JSON yet: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) \
            or raw.get("nbformat") != 4:
        raise _Unreadable(f"{path} is not an nbformat 4 notebook")
    try:
        nb = nbformat.v4.to_notebook_json(raw)
    except (TypeError, ValueError, KeyError) as e:
        raise _Unreadable(f"{path}: {e}") from None
    return nb


def notebook_scraps(nb: Mapping[str, Any]) -> dict[str, Any]:
    """The scrapbook scraps of an executed notebook (a notebook dict), by name.

    Decodes the ``text``, ``json`` and ``pandas`` encoders as scrapbook does (the last scrap
    of a name wins); a scrap that cannot be decoded is left out.
    """
    scraps: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            for mime, payload in (output.get("data") or {}).items():
                if not mime.startswith(_SCRAP_PREFIX) or not isinstance(payload, Mapping):
                    continue
                name, data = payload.get("name"), payload.get("data")
                if not isinstance(name, str):
                    continue
                if payload.get("encoder") == "pandas" and isinstance(data, str):
                    try:
                        data = _decode_frame(data)
                    except Exception:  # noqa: BLE001 - a bad table is left out, not fatal
                        continue
                scraps[name] = data
    return scraps


def _decode_frame(data: str) -> Any:
    """A ``pandas`` scrap's table (Parquet in base64), read in the calling thread only:
    Arrow's thread pools can abort a process at exit (see
    :func:`pairlib.app.runner.decode_frame`, which this mirrors below the app layer)."""
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(pa.BufferReader(base64.b64decode(data)), pre_buffer=False)
    return reader.read(use_threads=False).to_pandas(use_threads=False)


def _kind(rel: str) -> str:
    parts = rel.split("/")
    if len(parts) < 2:
        return "other"
    return KINDS.get(parts[0], parts[0])


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_entry(nb: Mapping[str, Any], notebook: str, scraps: Mapping[str, Any]) -> RunEntry:
    """The index entry of one executed notebook.

    Parameters
    ----------
    nb : mapping
        The executed notebook (its ``metadata.papermill`` gives times, duration and the
        exception).
    notebook : str
        Its path relative to ``outputs/`` (POSIX); the first folder names its kind.
    scraps : mapping
        Its scraps (:func:`notebook_scraps`).

    Returns
    -------
    RunEntry
        See :class:`RunEntry` for how each field is read.
    """
    pm = (nb.get("metadata") or {}).get("papermill") or {}
    params = pm.get("parameters") or {}
    exception = pm.get("exception")
    kind = _kind(notebook)
    error = _text(scraps.get("error"))
    if exception:
        error = error or _error_output(nb) or "the notebook raised an exception"
    glued = _text(scraps.get("status"))
    if glued is not None and not (exception and glued not in _FAILED):
        status = glued
    elif exception:
        status = "failed"
    elif not pm.get("end_time"):
        status = "incomplete"
    else:
        status = "ok"
    fields: dict[str, Any] = {}
    if kind == "tick":
        fields = _tick_fields(scraps, params)
    elif kind == "pairs":
        fields = _pairs_fields(scraps, params)
    elif kind == "backtest":
        fields = _backtest_fields(scraps, params)
    elif kind == "sweep" and isinstance(scraps.get("summary"), Mapping):
        fields = _sweep_fields(scraps["summary"], params)
    else:
        fields = _generic_fields(scraps, params)
    report = notebook[: -len(".ipynb")] + ".html" if notebook.endswith(".ipynb") else notebook
    return RunEntry(notebook=notebook, report=report, kind=kind, status=status,
                    started=_text(pm.get("start_time")), ended=_text(pm.get("end_time")),
                    duration_s=_num(pm.get("duration")), error=error, **fields)


def _error_output(nb: Mapping[str, Any]) -> str | None:
    """``ename: evalue`` of the first error output in the notebook."""
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    return None


def _tick_fields(scraps: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    signals: int | None = None
    actions: list[str] = []
    table = scraps.get("signals")
    if table is not None and hasattr(table, "columns"):
        if "signal" in table.columns:
            signals = int((table["signal"].fillna(0) != 0).sum())
        if {"pair_id", "action"} <= set(table.columns):
            actions = [f"{pair} {action}" for pair, action in zip(
                table["pair_id"], table["action"], strict=True)
                if isinstance(action, str) and action not in ("none", "hold")]
    mode = _text(scraps.get("mode"))
    incidents = _int(scraps.get("n_incidents"))
    detail = ", ".join(x for x in (
        f"mode {mode}" if mode and mode != "normal" else "",
        f"{incidents} incidents" if incidents else "") if x)
    return {"as_of": _text(scraps.get("as_of")) or _text(params.get("as_of")),
            "signals": signals, "actions": actions, "orders": _int(scraps.get("n_orders")),
            "equity": _num(scraps.get("equity")), "detail": detail}


def _pairs_fields(scraps: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    chosen = scraps.get("chosen_pairs")
    n = len(chosen) if chosen is not None and hasattr(chosen, "columns") else None
    set_id = _int(scraps.get("pair_set_id"))
    detail = "" if n is None else f"{n} pairs chosen"
    if set_id:
        detail += f" (pair set #{set_id})"
    return {"as_of": _text(scraps.get("as_of")) or _text(params.get("as_of")),
            "detail": detail}


def _backtest_fields(scraps: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    glued = scraps.get("metrics")
    metrics: Mapping[str, Any] = glued if isinstance(glued, Mapping) else {}
    initial = _num(scraps.get("initial_equity"))
    equity: float | None = None
    table = scraps.get("equity")
    if table is not None and hasattr(table, "columns") and "equity" in table.columns \
            and len(table):
        equity = _num(float(table["equity"].iloc[-1]))
    elif initial is not None and _num(metrics.get("total_return")) is not None:
        equity = initial * (1.0 + float(metrics["total_return"]))
    pnl = equity - initial if equity is not None and initial is not None else None
    start = _text(scraps.get("start")) or _text(params.get("start"))
    end = _text(scraps.get("end")) or _text(params.get("end"))
    parts = [f"{start[:16]} to {end[:16]}" if start and end else ""]
    sharpe, dd = _num(metrics.get("sharpe")), _num(metrics.get("max_drawdown"))
    if sharpe is not None:
        parts.append(f"Sharpe {sharpe:.2f}")
    if dd is not None:
        parts.append(f"max drawdown {dd:.1%}")
    return {"as_of": end, "trades": _int(scraps.get("n_trades")), "equity": equity,
            "pnl": pnl, "detail": ", ".join(p for p in parts if p)}


def _sweep_fields(summary: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep's headline (its ``summary`` scrap): combinations, the best cell's Sharpe, the
    deflated Sharpe ratio and PBO, and whether it was interrupted."""
    parts = []
    combos, skipped = _int(summary.get("combinations")), _int(summary.get("skipped"))
    if combos is not None:
        parts.append(f"{combos} combinations" + (f" ({skipped} skipped)" if skipped else ""))
    best = summary.get("best")
    if isinstance(best, Mapping) and _num(best.get("sharpe")) is not None:
        parts.append(f"best Sharpe {float(best['sharpe']):.2f}")
    for key, label in (("deflated_sharpe", "DSR"), ("pbo", "PBO")):
        if _num(summary.get(key)) is not None:
            parts.append(f"{label} {float(summary[key]):.2f}")
    if summary.get("interrupted") is True:
        parts.append("interrupted")
    return {"as_of": _text(params.get("end")), "detail": ", ".join(parts)}


def _generic_fields(scraps: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A run of a kind without its own reader (a sweep, or a folder of one's own): its
    ``as_of``/``end`` and its scalar scraps, shortest first, as the detail."""
    scalars = []
    for name, value in sorted(scraps.items()):
        if name in ("status", "error", "as_of"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, str):
            if len(value) > 40:
                continue
            text = value
        else:
            text = str(value)
        scalars.append(f"{name} {text}")
    as_of = (_text(scraps.get("as_of")) or _text(scraps.get("end")) or _text(params.get("end"))
             or _text(params.get("as_of")))
    return {"as_of": as_of, "detail": ", ".join(scalars[:6])}


def _sort_key(entry: RunEntry) -> tuple[str, str]:
    return (entry.started or "", entry.notebook)


def site_entries(entries: list[RunEntry]) -> list[RunEntry]:
    """``entries`` newest first (by papermill's start time, then path), each trading tick's
    ``pnl`` set to its change of equity since the trading tick before it (by ``as_of``;
    previews and ticks without equity are left out of that chain)."""
    chain = sorted((e for e in entries if e.kind == "tick" and e.equity is not None
                    and e.status != "preview" and e.as_of), key=lambda e: (e.as_of, e.started
                                                                             or ""))
    pnl: dict[str, float] = {}
    previous: float | None = None
    for e in chain:
        if previous is not None and e.equity is not None:
            pnl[e.notebook] = e.equity - previous
        previous = e.equity
    out = [replace(e, pnl=pnl[e.notebook]) if e.notebook in pnl else e for e in entries]
    return sorted(out, key=_sort_key, reverse=True)


def equity_curve(entries: list[RunEntry]) -> list[tuple[str, float]]:
    """``(as_of, equity)`` across trading ticks, oldest first; a candle with several runs
    (a re-run, ``already_ran``) keeps the latest run's equity."""
    by_bar: dict[str, tuple[str, float]] = {}
    for e in sorted(entries, key=lambda e: e.started or ""):
        if e.kind == "tick" and e.status != "preview" and e.as_of and e.equity is not None:
            by_bar[e.as_of] = (e.as_of, e.equity)
    return [by_bar[k] for k in sorted(by_bar)]


# ---------------------------------------------------------------------------------- render


def _exporter() -> Any:
    """An HTMLExporter on the ``pairlib_offline`` template: code cells excluded, plotly's
    mimetype first in the display priority."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    priority = HTMLExporter().default_config["NbConvertBase"]["display_data_priority"]
    config = Config({"NbConvertBase": {"display_data_priority": [PLOTLY_MIME, *priority]}})
    return HTMLExporter(config=config, template_name=TEMPLATE_NAME,
                        extra_template_basedirs=[str(TEMPLATE_DIR)], exclude_input=True,
                        exclude_input_prompt=True, exclude_output_prompt=True)


def _relative(target: Path, start_dir: Path) -> str:
    return Path(os.path.relpath(target, start_dir)).as_posix()


def _has_plotly(nb: Mapping[str, Any]) -> bool:
    return any(PLOTLY_MIME in (o.get("data") or {}) for c in nb.get("cells", [])
               for o in c.get("outputs", []) or [])


def _render(exporter: Any, nb: Any, nb_path: Path, root: Path, plotly_js: Path) -> str:
    """The HTML of one notebook; its plotly.js and index links relative to its folder."""
    resources = {
        "metadata": {"name": nb_path.stem, "path": str(nb_path.parent)},
        "plotly_js_url": _relative(plotly_js, nb_path.parent) if _has_plotly(nb) else "",
        "index_url": _relative(root / INDEX_NAME, nb_path.parent),
    }
    with warnings.catch_warnings():
        # Scrapbook's scrap outputs have no displayable mimetype (JupyterLab hides them too).
        warnings.filterwarnings("ignore", message="Your element with mimetype",
                                category=UserWarning)
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    return str(body)


def render_notebook(notebook: Path, outputs_dir: Path | None = None) -> Path:
    """Render one executed notebook to ``<name>.html`` beside it, now, whatever its age.

    Parameters
    ----------
    notebook : Path
        An executed notebook.
    outputs_dir : Path, optional
        The folder holding ``plotly.min.js`` and ``index.html`` (written if missing);
        default: the notebook's folder.

    Returns
    -------
    Path
        The rendered page.

    Raises
    ------
    ValueError
        The notebook is empty or not a whole notebook yet.
    """
    nb_path = Path(notebook)
    root = Path(outputs_dir) if outputs_dir is not None else nb_path.parent
    try:
        nb = _load(nb_path, nb_path.stat().st_size)
    except _Unreadable as e:
        raise ValueError(str(e)) from None
    plotly_js = _ensure_plotly_js(root)
    out = nb_path.with_suffix(".html")
    _write_text(out, _render(_exporter(), nb, nb_path, root, plotly_js))
    return out


def _template_hash() -> str:
    """A digest of the template files: a changed template renders every report again."""
    h = hashlib.sha256()
    for path in sorted((TEMPLATE_DIR / TEMPLATE_NAME).rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _ensure_plotly_js(root: Path) -> Path:
    """``outputs/plotly.min.js``: written from the installed plotly when missing or from
    another plotly version (a one-line marker file keeps that version)."""
    from importlib.metadata import version

    target = root / PLOTLY_JS_NAME
    marker = root / f".{PLOTLY_JS_NAME}.version"
    want = version("plotly")
    try:
        have = marker.read_text().strip() if target.is_file() else ""
    except OSError:
        have = ""
    if have != want:
        from plotly.offline import get_plotlyjs

        _write_text(target, get_plotlyjs())
        _write_text(marker, want + "\n")
    return target


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _MANIFEST_VERSION:
        return {}
    return data


# ----------------------------------------------------------------------------------- index


def _fmt_money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _fmt_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return when.strftime("%Y-%m-%d %H:%M:%S") if when.second else when.strftime(
        "%Y-%m-%d %H:%M")


def _fmt_duration(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _cell(value: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape('' if value is None else str(value))}</td>"


def _row(e: RunEntry) -> str:
    detail = e.detail
    if e.actions:
        detail = "; ".join([*e.actions[:4], *(["..."] if len(e.actions) > 4 else [])]) + (
            f" | {detail}" if detail else "")
    if e.error:
        detail = f"{e.error}" + (f" | {detail}" if detail else "")
    pnl_cls = "num" + (" neg" if e.pnl is not None and e.pnl < 0 else "")
    orders = e.orders if e.orders is not None else (
        f"{e.trades} trades" if e.trades is not None else None)
    link = (f'<td><a href="{html.escape(e.report, quote=True)}">'
            f"{html.escape(Path(e.report).stem)}</a></td>")
    return (
        f'<tr data-kind="{html.escape(e.kind, quote=True)}" '
        f'data-status="{html.escape(e.status, quote=True)}">'
        + _cell(_fmt_time(e.started)) + _cell(_fmt_time(e.as_of)) + _cell(e.kind)
        + _cell(e.status, f"status status-{e.status}") + _cell(_fmt_duration(e.duration_s), "num")
        + _cell(e.signals, "num") + _cell(orders, "num")
        + _cell(_fmt_money(e.pnl, signed=True), pnl_cls) + _cell(_fmt_money(e.equity), "num")
        + link + _cell(detail, "detail") + "</tr>"
    )


def _options(name: str, plural: str, values: list[str]) -> str:
    opts = [f'<option value="">all {plural}</option>'] + [
        f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>' for v in values]
    return (f'<label>{name} <select id="filter-{name}" data-field="{name}">' + "".join(opts)
            + "</select></label>")


def _equity_spec(curve: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "data": [{"type": "scatter", "mode": "lines+markers", "name": "equity",
                  "x": [t for t, _ in curve], "y": [v for _, v in curve],
                  "line": {"color": "#1f77b4"}}],
        "layout": {"title": {"text": "Equity after each tick (USDT)"}, "height": 320,
                   "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                   "xaxis": {"title": {"text": "tick (candle close, UTC)"}},
                   "yaxis": {"title": {"text": "USDT"}}},
    }


_INDEX_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #222; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
p.meta { color: #666; margin: 0 0 16px 0; font-size: 13px; }
.filters { margin: 12px 0; font-size: 14px; }
.filters label { margin-right: 16px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left;
         vertical-align: top; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.neg { color: #b00020; }
td.detail { white-space: normal; color: #444; max-width: 48em; }
td.status-ok, td.status-already_ran { color: #1b7f3b; }
td.status-preview { color: #555; }
td.status-failed, td.status-refused, td.status-degraded { color: #b00020; font-weight: bold; }
td.status-incomplete { color: #b36b00; font-weight: bold; }
#equity { max-width: 1100px; }
"""

_INDEX_JS = """
(function () {
  var selects = document.querySelectorAll('select[data-field]');
  var count = document.getElementById('shown');
  function apply() {
    var want = {};
    selects.forEach(function (s) { want[s.dataset.field] = s.value; });
    var shown = 0;
    document.querySelectorAll('#runs tbody tr').forEach(function (tr) {
      var ok = (!want.kind || tr.dataset.kind === want.kind) &&
               (!want.status || tr.dataset.status === want.status);
      tr.style.display = ok ? '' : 'none';
      if (ok) { shown += 1; }
    });
    count.textContent = shown;
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  apply();
  var spec = document.getElementById('equity-spec');
  var box = document.getElementById('equity');
  if (spec && box) {
    if (typeof Plotly === 'undefined') {
      box.textContent = 'Chart not drawn: plotly.min.js was not found next to this page.';
    } else {
      var fig = JSON.parse(spec.textContent);
      Plotly.newPlot(box, fig.data, fig.layout, {responsive: true, displaylogo: false});
    }
  }
})();
"""


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</`` can end it early)."""
    return json.dumps(value).replace("</", "<\\/").replace("<!--", "<\\!--")


def _index_html(entries: list[RunEntry]) -> str:
    """The index page: filters, the equity curve across ticks and the table of runs."""
    kinds = sorted({e.kind for e in entries})
    statuses = sorted({e.status for e in entries})
    curve = equity_curve(entries)
    if len(curve) >= 1:
        chart = ('<div id="equity"></div>\n<script type="application/json" id="equity-spec">'
                 + _json_for_script(_equity_spec(curve)) + "</script>\n"
                 + f'<script src="{PLOTLY_JS_NAME}"></script>')
    else:
        chart = "<p>No tick with equity yet: the equity curve appears after the first tick.</p>"
    failed = sum(e.status in _FAILED or e.status == "incomplete" for e in entries)
    head = ("<tr><th>run at (UTC)</th><th>as of</th><th>kind</th><th>status</th>"
            "<th>duration</th><th>signals</th><th>orders</th><th>PnL</th><th>equity</th>"
            "<th>report</th><th>detail</th></tr>")
    rows = "\n".join(_row(e) for e in entries)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>pairlib runs</title>
<style>{_INDEX_CSS}</style>
</head>
<body>
<h1>pairlib runs</h1>
<p class="meta">{len(entries)} runs ({failed} failed or incomplete), newest first. Every row
links to its executed notebook's report; PnL of a tick is its change of equity since the tick
before it, of a backtest its net result.</p>
{chart}
<div class="filters">{_options("kind", "kinds", kinds)}{_options("status", "statuses", statuses)}
<span><span id="shown">{len(entries)}</span> shown</span></div>
<table id="runs">
<thead>{head}</thead>
<tbody>
{rows}
</tbody>
</table>
<script>{_INDEX_JS}</script>
</body>
</html>
"""
