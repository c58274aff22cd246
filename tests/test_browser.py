"""The report site in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) opens the index, a tick report and a backtest report from ``file://``, built from
notebooks the jobs really executed; nothing is requested but local files, nothing fails, no
console error, every plotly chart draws its SVG. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pairlib.report import site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = pytest.mark.slow


@dataclass
class Built:
    outputs: Path
    tick: Path
    backtest: Path
    build: site.SiteBuild


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A project where the jobs ran a pair generation, two ticks and a backtest, and the
    site built from them."""
    from pairlib.app.demo import demo_params
    from pairlib.app.jobs import run_backtest_job, run_pairs_job, run_tick_job

    proj = tmp_path_factory.mktemp("browser") / "project"
    proj.mkdir()
    shutil.copytree(ROOT / "params", proj / "params")
    (proj / "pyproject.toml").write_text('[project]\nname = "browser-check"\n')
    mp = pytest.MonkeyPatch()
    mp.chdir(proj)
    try:
        (proj / ".state" / "demo").mkdir(parents=True)
        params_file = demo_params(proj / ".state" / "demo")
        outputs = proj / "outputs"
        pairs = run_pairs_job(params_file, "2026-06-01T00:00Z", outputs)
        assert pairs.ok, pairs.error
        ticks = [run_tick_job(params_file, f"2026-06-01T{h:02d}:00Z", outputs)
                 for h in (4, 8)]
        assert all(t.ok for t in ticks), [t.error for t in ticks]
        bt = run_backtest_job(params_file, "2025-02-04", "2025-02-11", outputs)
        assert bt.ok, bt.error
        build = site.update_site(outputs)  # the jobs may have rendered theirs already
        notebooks = sorted(outputs.rglob("*.ipynb"))
        assert len(notebooks) == 4 and build.skipped == []
        assert all(n.with_suffix(".html").is_file() for n in notebooks)
        yield Built(outputs=outputs, tick=ticks[-1].path, backtest=bt.path, build=build)
    finally:
        mp.undo()


@dataclass
class Visit:
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test "
                    "installs it when missing); no browser is downloaded")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              headless=True)
        try:
            yield b
        finally:
            b.close()


def _plotly_outputs(notebook: Path) -> int:
    nb = json.loads(notebook.read_text())
    return sum(site.PLOTLY_MIME in o.get("data", {}) for c in nb["cells"]
               for o in c.get("outputs", []))


def _open(browser: object, page_path: Path, charts: int, shot: str) -> tuple[object, Visit]:
    """Open ``page_path`` from file://, wait for ``charts`` plotly charts with their SVG,
    screenshot it, and return the page with what it requested and logged."""
    visit = Visit()
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.on("request", lambda r: visit.requests.append(r.url))
    page.on("requestfailed", lambda r: visit.failed.append(f"{r.url}: {r.failure}"))
    page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(str(e)))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    drawn = ("n => document.querySelectorAll('.js-plotly-plot').length === n && "
             "[...document.querySelectorAll('.js-plotly-plot')]"
             ".every(p => p.querySelector('.main-svg'))")
    page.wait_for_function(drawn, arg=charts, timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return page, visit


def _assert_clean(visit: Visit, name: str) -> None:
    assert visit.failed == [], f"{name}: failed requests {visit.failed}"
    assert visit.errors == [], f"{name}: console errors {visit.errors}"
    remote = [u for u in visit.requests if not u.startswith("file://")]
    assert remote == [], f"{name}: requests to other than file:// {remote}"
    assert any(u.endswith("/" + site.PLOTLY_JS_NAME) for u in visit.requests)


def test_index_draws_the_equity_curve_and_filters(built: Built, browser: object) -> None:
    page, visit = _open(browser, built.build.index, 1, "index.png")
    _assert_clean(visit, "index.html")
    assert page.locator(".js-plotly-plot .main-svg").count() >= 1  # type: ignore[attr-defined]
    rows = page.locator("#runs tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == 4
    page.select_option("#filter-kind", "tick")  # type: ignore[attr-defined]
    visible = page.locator("#runs tbody tr:visible")  # type: ignore[attr-defined]
    assert visible.count() == 2
    assert set(visible.evaluate_all("rs => rs.map(r => r.dataset.kind)")) == {"tick"}
    page.select_option("#filter-kind", "backtest")  # type: ignore[attr-defined]
    page.select_option("#filter-status", "ok")  # type: ignore[attr-defined]
    shown = page.locator("#runs tbody tr:visible")  # type: ignore[attr-defined]
    assert shown.count() == 1
    href = shown.locator("a").get_attribute("href")
    assert (built.outputs / href).resolve() == built.backtest.with_suffix(".html").resolve()
    page.select_option("#filter-kind", "")  # type: ignore[attr-defined]
    assert page.locator("#runs tbody tr:visible").count() == 4  # type: ignore[attr-defined]
    assert page.inner_text("#shown") == "4"  # type: ignore[attr-defined]
    page.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["tick", "backtest"])
def test_report_draws_every_chart_offline(built: Built, browser: object, which: str) -> None:
    notebook = built.tick if which == "tick" else built.backtest
    charts = _plotly_outputs(notebook)
    assert charts >= 1
    page, visit = _open(browser, notebook.with_suffix(".html"), charts, f"{which}.png")
    _assert_clean(visit, notebook.name)
    svg = page.locator(".js-plotly-plot .main-svg").count()  # type: ignore[attr-defined]
    assert svg >= charts  # plotly draws a main SVG (and its hover layer) per chart
    assert page.locator(".jp-InputArea-editor").count() == 0  # type: ignore[attr-defined]
    page.close()  # type: ignore[attr-defined]
