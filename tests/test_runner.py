"""The papermill wrapper: secrets refused as parameters, reports never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from pairlib.app.runner import (
    pairs_output_path,
    read_scraps,
    run_notebook,
    tick_output_path,
    unique_path,
)
from pairlib.errors import ConfigError

AS_OF = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)


def test_output_paths() -> None:
    out = Path("outputs")
    assert tick_output_path(out, AS_OF) == Path("outputs/ticks/2026/03/2026-03-05T0800Z-tick.ipynb")
    assert tick_output_path(out, AS_OF, preview=True) == Path(
        "outputs/ticks/2026/03/2026-03-05T0800Z-tick-preview.ipynb")  # never the tick's own
    assert pairs_output_path(out, AS_OF) == Path(
        "outputs/pairs/2026-03-05T0800Z-generate_pairs.ipynb"
    )


def test_unique_path_never_overwrites(tmp_path: Path) -> None:
    p = tmp_path / "a.ipynb"
    assert unique_path(p) == p
    p.write_text("{}")
    assert unique_path(p) == tmp_path / "a-2.ipynb"
    (tmp_path / "a-2.ipynb").write_text("{}")
    assert unique_path(p) == tmp_path / "a-3.ipynb"


@pytest.mark.parametrize("name", ["api_key", "API_SECRET", "token", "exchange_password"])
def test_secret_like_parameters_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="secret"):
        run_notebook(tmp_path / "x.ipynb", tmp_path / "out.ipynb", {name: "x"})
    assert not (tmp_path / "out.ipynb").exists()


def test_non_literal_parameters_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only literals"):
        run_notebook(tmp_path / "x.ipynb", tmp_path / "out.ipynb", {"as_of": [1, 2]})


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("value = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "pairlib", "display_name": "pairlib", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_run_glues_scraps_and_keeps_failed_notebooks(tmp_path: Path) -> None:
    ok_nb = _notebook(tmp_path / "ok.ipynb", "import scrapbook as sb\nsb.glue('double', value * 2)")
    res = run_notebook(ok_nb, tmp_path / "out" / "ok.ipynb", {"value": 21})
    assert res.ok and res.error is None
    assert res.scraps["double"] == 42
    assert read_scraps(res.path) == {"double": 42}

    bad_nb = _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('no data for ' + str(value))")
    res = run_notebook(bad_nb, tmp_path / "out" / "bad.ipynb", {"value": 7})
    assert not res.ok
    assert res.error is not None and "no data for 7" in res.error
    text = res.path.read_text()
    assert "An Exception was encountered" in text  # papermill's error banner is kept


@pytest.mark.slow
def test_kernels_talk_over_unix_sockets_and_leave_none_behind(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    nb = _notebook(tmp_path / "conn.ipynb",
                   "from ipykernel import get_connection_info\n"
                   "from pairlib.report.notebook import glue\n"
                   "info = get_connection_info(unpack=True)\n"
                   "glue('transport', info['transport'])\n"
                   "glue('ip', info['ip'])")
    res = run_notebook(nb, tmp_path / "out.ipynb", {}, cwd=tmp_path)
    assert res.ok, res.error
    assert res.scraps["transport"] == "ipc"  # no TCP port at all
    ip = Path(res.scraps["ip"])
    assert ip.name.startswith("pairlib-kernel-") and ip.parent != tmp_path
    assert not list(ip.parent.glob(ip.name + "-*"))  # sockets removed at shutdown
    assert not list(tmp_path.glob("kernel-ipc*"))
    assert "without encryption" not in capfd.readouterr().err
