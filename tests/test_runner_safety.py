"""The runner's safety rails: no secret in a report's parameters (by name or by value), report
paths reserved exclusively, a kernel that dies with the process that started it and holds
the tick job's lock for its whole life, and scraps read back without Arrow's thread pools."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from tick_fixtures import BAR, START, trading_params

from pairlib.app import runner
from pairlib.app.jobs import JOB_LOCK_NAME, tick_job_lock
from pairlib.app.runner import read_scraps, run_notebook, unique_path
from pairlib.clock import iso
from pairlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "k3y-VALUE-0123456789abcdef"
WEBHOOK = "https://hooks.example.com/services/T000/B000/XXXXXXXXXXXXXXXX"


def _notebook(path: Path, body: str, params: str = "value = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "pairlib", "display_name": "pairlib",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


# ------------------------------------------------------------------ C10: secrets


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Secrets in the environment and in a .env of the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIRLIB_API_KEY", API_KEY)
    monkeypatch.setenv("PAIRLIB_API_SECRET", "s3cret-VALUE-fedcba9876543210")
    monkeypatch.setenv("DATADOG_API_KEY", "dd-0123456789")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijklmnop")
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-hunter2")
    monkeypatch.setenv("PAIRLIB_NOTIFY_URLS", f"{WEBHOOK}, mailto:ops@example.com")
    (tmp_path / ".env").write_text("BROKER_SECRET=dotenv-secret-value-42\n")
    return tmp_path


@pytest.mark.parametrize(("value", "source"), [
    (API_KEY, "PAIRLIB_API_KEY"),
    (f"  {API_KEY}\n", "PAIRLIB_API_KEY"),
    ("s3cret-VALUE-fedcba9876543210", "PAIRLIB_API_SECRET"),
    ("dd-0123456789", "DATADOG_API_KEY"),
    ("ghp_abcdefghijklmnop", "GITHUB_TOKEN"),
    ("hunter2-hunter2", "SMTP_PASSWORD"),
    (WEBHOOK, "PAIRLIB_NOTIFY_URLS"),
    (f"notify={WEBHOOK}", "PAIRLIB_NOTIFY_URLS"),
    ("dotenv-secret-value-42", "BROKER_SECRET"),
    (f"x{API_KEY}x", "PAIRLIB_API_KEY"),
])
def test_a_secret_value_is_refused_under_any_name(secret_env: Path, value: str,
                                                  source: str) -> None:
    with pytest.raises(ConfigError) as err:
        run_notebook(secret_env / "x.ipynb", secret_env / "out.ipynb", {"as_of": value})
    message = str(err.value)
    assert "'as_of'" in message and source in message
    assert value.strip() not in message and API_KEY not in message
    assert not (secret_env / "out.ipynb").exists()


@pytest.mark.parametrize("name", ["credential", "db_passwd", "auth", "bearer_header",
                                  "API_KEY", "session_token", "passphrase"])
def test_secret_like_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name!r} looks like a secret") as err:
        run_notebook(tmp_path / "x.ipynb", tmp_path / "out.ipynb", {name: "harmless"})
    assert "harmless" not in str(err.value)


def test_ordinary_parameters_pass_with_secrets_around(secret_env: Path) -> None:
    runner._check_parameters({
        "as_of": "2025-02-05T04:00:00+00:00", "params_file": "params/pairlib.yaml",
        "live": False, "notebook_path": "outputs/ticks/2025/02/x.ipynb", "n": 3,
        "empty": "", "nothing": None, "selection__top_k": 3, "missed_tick_entries": True,
    })
    with pytest.raises(ConfigError, match="only literals") as err:
        runner._check_parameters({"as_of": [API_KEY]})
    assert API_KEY not in str(err.value)


# ------------------------------------------------------------------ D12: report paths


def test_racing_reservations_never_share_a_path(tmp_path: Path) -> None:
    base = tmp_path / "ticks" / "2025-02-05T0400Z-tick.ipynb"
    n_threads, rounds = 8, 5
    got: list[Path] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def reserve() -> None:
        for _ in range(rounds):
            barrier.wait()
            p = unique_path(base)
            with lock:
                got.append(p)

    threads = [threading.Thread(target=reserve) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == n_threads * rounds == len(set(got))
    assert all(p.is_file() and p.stat().st_size == 0 for p in got)  # reserved, not written
    assert base in got and base.with_name("2025-02-05T0400Z-tick-40.ipynb") in got


def _reserve_many(base: str, n: int) -> list[str]:
    return [str(unique_path(Path(base))) for _ in range(n)]


def test_processes_racing_for_a_slot_get_distinct_paths(tmp_path: Path) -> None:
    base = tmp_path / "out" / "slot.ipynb"
    with ProcessPoolExecutor(max_workers=3) as pool:
        batches = list(pool.map(_reserve_many, [str(base)] * 3, [15] * 3))
    paths = [p for batch in batches for p in batch]
    assert len(paths) == 45 == len(set(paths))


def test_a_reserved_unwritten_path_is_never_reused(tmp_path: Path) -> None:
    base = tmp_path / "a.ipynb"
    first = unique_path(base)
    assert first == base and first.read_text() == ""  # reserved, not yet written
    assert unique_path(base) == tmp_path / "a-2.ipynb"
    (tmp_path / "a-3.ipynb").write_text("{}")  # someone else's report
    assert unique_path(base) == tmp_path / "a-4.ipynb"


# ------------------------------------------------------------------ D13: kernel lifetime


@pytest.mark.slow
def test_the_kernel_inherits_the_job_lock(tmp_path: Path) -> None:
    """The lock's own descriptor works in the kernel (same open file description: locking
    it again succeeds), while a fresh open of the lock file finds it held."""
    state = tmp_path / "state"
    nb = _notebook(tmp_path / "lock.ipynb",
                   "import fcntl, os\n"
                   "from pairlib.report.notebook import glue\n"
                   "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                   "glue('inherited', True)\n"
                   "other = os.open(path, os.O_RDWR)\n"
                   "try:\n"
                   "    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                   "    glue('held', False)\n"
                   "except BlockingIOError:\n"
                   "    glue('held', True)\n",
                   params="fd = -1\npath = ''")
    with tick_job_lock(state, START) as fd:
        res = run_notebook(nb, tmp_path / "out.ipynb",
                           {"fd": fd, "path": str(state / JOB_LOCK_NAME)},
                           cwd=tmp_path, kernel_fds=(fd,))
    assert res.ok, res.error
    assert res.scraps == {"inherited": True, "held": True}


@contextmanager
def _subreaper() -> Iterator[None]:
    """Make this process adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so an orphaned
    kernel's parent is neither its old parent nor pid 1: ipykernel's own parent poller does
    not notice a parent that died before the poller started."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(36, 0, 0, 0, 0)


def _wait_for_kernel(job: subprocess.Popen[bytes], timeout_s: float) -> int:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert job.poll() is None, f"the tick job exited early ({job.returncode})"
        for child in psutil.Process(job.pid).children(recursive=True):
            try:
                if "ipykernel_launcher" in " ".join(child.cmdline()):
                    return int(child.pid)
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.02)
    raise AssertionError("no kernel process appeared")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaping it if it became this process's child)."""
    import psutil

    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_sigkill_of_pairlib_tick_kills_its_kernel(tmp_path: Path) -> None:
    params = trading_params(tmp_path, None)  # the in-process simulator, inside the kernel
    params_file = tmp_path / "trading.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    kernel = -1
    with _subreaper():
        job = subprocess.Popen(
            [sys.executable, "-m", "pairlib", "tick", "--params", str(params_file),
             "--as-of", iso(START + BAR), "--outputs", "out"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            kernel = _wait_for_kernel(job, timeout_s=60)
            job.send_signal(signal.SIGKILL)
            job.wait()
            deadline = time.monotonic() + 15  # a liveness bound, not a speed requirement
            while not _gone(kernel) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _gone(kernel), f"kernel {kernel} outlived its killed tick job"
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
            if kernel > 0 and not _gone(kernel):
                os.kill(kernel, signal.SIGKILL)  # the kernel this test started
                time.sleep(0.2)
                _gone(kernel)
    with tick_job_lock(params.state_dir, START + BAR, timeout_s=5):
        pass  # the job lock died with the job and its kernel
    holder = json.loads((params.state_dir / (JOB_LOCK_NAME + ".holder.json")).read_text())
    assert holder["pid"] == os.getpid()  # ...and this test could take it and record itself


# ------------------------------------------------------------------ D14 (b): exit abort


def _scrap_notebook(path: Path, scraps: list[tuple[str, object, str | None]]) -> Path:
    """A notebook whose one cell shows ``scraps`` as pairlib.report.notebook.glue does."""
    from pairlib.report.notebook import scrap_output

    cell = nbformat.v4.new_code_cell("")
    for name, value, encoder in scraps:
        data, metadata = scrap_output(name, value, encoder)
        cell.outputs.append(nbformat.v4.new_output("display_data", data=data,
                                                   metadata=metadata))
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    nbformat.write(nb, path)
    return path


FRAME = pd.DataFrame({"pair_id": ["A~B", "C~D"], "z": [1.5, float("nan")], "n": [1, 2],
                      "when": pd.to_datetime(["2025-02-05", None], utc=True),
                      "note": ["x", None]})


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_read_scraps_starts_no_native_thread(tmp_path: Path) -> None:
    """In a fresh interpreter, reading a report's scraps (text, JSON and a data frame) starts
    no thread: Arrow's pools stay off, so interpreter exit cannot abort on them (a
    ``pairlib tick`` that read its scraps with them sometimes died with SIGABRT at exit)."""
    nb = _scrap_notebook(tmp_path / "nb.ipynb", [("t", "text", None), ("j", {"a": [1]}, None),
                                                 ("f", FRAME, "pandas")])
    script = f"""
import json, os
import pandas, pyarrow, scrapbook
from pairlib.app.runner import read_scraps
before = len(os.listdir("/proc/self/task"))
scraps = read_scraps({str(nb)!r})
after = len(os.listdir("/proc/self/task"))
scraps["f"].to_parquet({str(tmp_path / "back.parquet")!r})
print(json.dumps({{"threads": [before, after], "t": scraps["t"], "j": scraps["j"]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["t"] == "text" and out["j"] == {"a": [1]}
    before, after = out["threads"]
    assert after == before, "reading scraps started native threads"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "back.parquet"), FRAME)


def test_read_scraps_decodes_frames_as_scrapbook_does(tmp_path: Path) -> None:
    import scrapbook as sb
    from scrapbook.encoders import PandasArrowDataframeEncoder

    nb = _scrap_notebook(tmp_path / "r.ipynb", [("status", "ok", None),
                                                ("signals", FRAME, "pandas")])
    got = read_scraps(nb)
    assert got["status"] == "ok"
    pd.testing.assert_frame_equal(got["signals"], FRAME)
    payload = json.loads(nb.read_text())["cells"][0]["outputs"][1]["data"]
    data = next(iter(payload.values()))["data"]
    theirs = PandasArrowDataframeEncoder().decode(sb.scraps.Scrap("signals", data, "pandas"))
    pd.testing.assert_frame_equal(got["signals"], theirs.data)
    assert runner.decode_frame(data).equals(FRAME)
