"""A sweep scaled out on Dask (2 worker processes on 127.0.0.1) returns exactly the
single-process results, with ``workers=N`` and with an existing scheduler's address."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from pairlib.config import Params
from pairlib.engine import sweep as sw
from pairlib.errors import ConfigError
from pairlib.sim import GENESIS, Market

BAR = timedelta(hours=4)
START = GENESIS + timedelta(days=400)
END = START + 240 * BAR
GRID = {"entry": [0.8, 1.0, 1.5, 2.0], "exit": [0.0, 0.25, 0.5], "stop": [3.0, 3.5],
        "lookback": [30, 60, 90], "max_loss_multiple": [None, 1.5]}


def _select(window: pd.DataFrame, params: Params, qv: Any) -> Any:
    """A fixed pair set (hedge ratio from the window's log prices), so the test spends its
    time on the sweep, not on cointegration scans."""
    import numpy as np

    cols = list(window.columns)
    rows = []
    for y, x in zip(cols[0:12:2], cols[1:12:2], strict=True):
        ly, lx = np.log(window[y].to_numpy()), np.log(window[x].to_numpy())
        beta = float(np.polyfit(lx, ly, 1)[0])
        rows.append({"y": y, "x": x, "beta": abs(beta) or 1.0,
                     "alpha": float(np.mean(ly - abs(beta) * lx))})
    return SimpleNamespace(chosen=pd.DataFrame(rows))


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    m = Market()
    c = m.closes(START - 700 * BAR, END)
    return c.rename(columns={s: m.unified(s) for s in c.columns})


def _run(closes: pd.DataFrame, **kw: Any) -> sw.SweepResult:
    seen: list[tuple[int, int]] = []
    r = sw.sweep(Params(), closes, START, END, GRID, {}, shortlist=0, chunk_size=16,
                 select=_select, progress=lambda d, t: seen.append((d, t)), **kw)
    assert seen[-1][0] == seen[-1][1] == r.n_trials  # progress reached the end
    return r


def _same(a: sw.SweepResult, b: sw.SweepResult) -> None:
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.returns, b.returns, check_exact=True)
    assert a.pbo == b.pbo and a.deflated_sharpe == b.deflated_sharpe


@pytest.fixture(scope="module")
def single(closes: pd.DataFrame) -> sw.SweepResult:
    r = _run(closes)
    assert r.n_trials == 4 * 3 * 2 * 3 * 2 and (r.table["trades"] > 0).all()
    return r


def test_local_cluster_of_two_processes_equals_single_process(
    closes: pd.DataFrame, single: sw.SweepResult,
) -> None:
    _same(_run(closes, workers=2), single)


def test_existing_scheduler_on_loopback_equals_single_process(
    closes: pd.DataFrame, single: sw.SweepResult,
) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=sw.LOCAL_HTTP) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        _same(_run(closes, dask_address=cluster.scheduler_address), single)


@pytest.mark.parametrize(("kw", "words"), [
    ({"workers": 0}, ["workers", ">= 1"]),
    ({"workers": 2, "dask_address": "tcp://127.0.0.1:1"}, ["not both"]),
    ({"dask_address": "127.0.0.1:8786"}, ["dask_address", "tcp://HOST:PORT"]),
])
def test_bad_scale_out_options_are_refused(closes: pd.DataFrame, kw: dict[str, Any],
                                           words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        sw.sweep(Params(), closes, START, END, GRID, {}, select=_select, **kw)
    assert all(w in str(info.value) for w in words)


def test_two_local_clusters_at_once_both_start_and_serve_only_loopback() -> None:
    # Two sweeps on one machine (two analysts, or two test workers): neither may take a fixed
    # port nor listen beyond 127.0.0.1.
    with sw.dask_client(1, None) as a, sw.dask_client(1, None) as b:
        for client in (a, b):
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert a.dashboard_link != b.dashboard_link
