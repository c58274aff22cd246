"""Run parameterized notebooks headlessly with papermill; read their scraps back.

Every executed notebook is kept as the run's auditable report, including failed ones
(papermill puts an error banner at the top). Papermill saves the report before and after every
cell (its ``request_save_on_cell_execute`` stays on): without those saves it writes the
report only when the kernel finishes, so a kernel that died mid-tick would leave an empty
file instead of the report up to the cell that was running. Nothing is overwritten: a
report's path is reserved by creating it exclusively, and a second run for the same slot gets
a numbered name. Secrets are refused as parameters, by name and by value, because papermill writes
every parameter into the output notebook (injected cell and metadata).

A kernel never outlives the process that started it: on Linux the kernel is launched with
``PR_SET_PDEATHSIG = SIGKILL``, so killing the runner (even with SIGKILL) kills its kernel at
once, and a caller can hand the kernel a lock's file descriptor so the lock is held for as
long as the kernel lives.
"""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pairlib.errors import ConfigError
from pairlib.failpoints import failpoint

__all__ = [
    "KERNEL_NAME",
    "RunResult",
    "backtest_output_path",
    "decode_frame",
    "ensure_kernel",
    "pairs_output_path",
    "read_scraps",
    "run_notebook",
    "stamp",
    "tick_output_path",
    "unique_path",
]

KERNEL_NAME = "pairlib"
_SECRET_LIKE = re.compile(
    r"(key|secret|token|passw|passphrase|credential|auth|bearer)", re.IGNORECASE
)
# Environment variables whose values are secrets: *_KEY, *_SECRET, *_TOKEN, *_PASSWORD, ...
# (any underscore-separated part), and the notification URLs (they embed webhook tokens).
_SECRET_ENV_NAME = re.compile(
    r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|AUTH|BEARER)(_|$)"
    r"|^PAIRLIB_NOTIFY_URLS$",
    re.IGNORECASE,
)
_MIN_CONTAINED_SECRET = 12  # a secret at least this long is refused inside a longer value too
_PR_SET_PDEATHSIG = 1
# Run by ``python -I -S -c`` in the kernel's process before it becomes the kernel: ask Linux
# to SIGKILL it when its parent dies, give up if the parent is already gone (the race between
# fork and prctl), then exec the kernelspec's own command (argv: parent pid, command...).
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({_PR_SET_PDEATHSIG}, int(signal.SIGKILL), 0, 0, 0) != 0:\n"
    "    raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG) failed')\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True)
class RunResult:
    """Outcome of one notebook run.

    ``ok`` is False when a cell raised or the kernel died; ``error`` then holds the
    exception's name and message and the notebook at ``path`` carries papermill's error
    banner (or stops at the cell that was running when the kernel died). ``interrupted`` is
    True when Ctrl-C interrupted the kernel (``run_notebook(interrupt_on_sigint=True)``):
    the notebook may have handled it and finished (``ok``) or failed on it.
    """

    path: Path
    ok: bool
    duration_s: float
    error: str | None = None
    scraps: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


def stamp(when: datetime) -> str:
    """``YYYY-MM-DDTHHMMZ`` for file names (UTC)."""
    from pairlib.clock import iso

    return iso(when)[:13] + iso(when)[14:16] + "Z"


def unique_path(path: Path) -> Path:
    """Reserve ``path``, else ``name-2.ipynb``, ``name-3.ipynb``, ...: the first that does
    not exist, created empty with ``O_CREAT | O_EXCL`` so that no other run (thread or
    process) can pick it too, even before the report is written. Folders are created.

    Returns
    -------
    Path
        The reserved path: an empty file this caller owns (papermill overwrites it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return candidate


def tick_output_path(outputs: Path, as_of: datetime, preview: bool = False) -> Path:
    """``outputs/ticks/YYYY/MM/<YYYY-MM-DDTHHMM>Z-tick.ipynb``; a preview's report (nothing
    traded) is ``...Z-tick-preview.ipynb``, so it is never taken for the tick's own."""
    s = stamp(as_of)
    name = f"{s}-tick-preview.ipynb" if preview else f"{s}-tick.ipynb"
    return outputs / "ticks" / s[:4] / s[5:7] / name


def pairs_output_path(outputs: Path, as_of: datetime) -> Path:
    """``outputs/pairs/<YYYY-MM-DDTHHMM>Z-generate_pairs.ipynb``."""
    return outputs / "pairs" / f"{stamp(as_of)}-generate_pairs.ipynb"


def backtest_output_path(outputs: Path, start: datetime, end: datetime) -> Path:
    """``outputs/backtests/<start>-<end>-backtest.ipynb``, each time as
    ``YYYY-MM-DDTHHMMZ`` (:func:`stamp`): the window tested names the report, and a re-run
    of the same window (other params or costs) gets a numbered name from
    :func:`unique_path`."""
    return outputs / "backtests" / f"{stamp(start)}-{stamp(end)}-backtest.ipynb"


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure a Jupyter kernel ``name`` for this interpreter exists (installed into
    ``sys.prefix``, so a fresh virtualenv works without a manual step). Returns the name."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name="pairlib", prefix=sys.prefix)
    return name


def _ipc_kernel_manager(pass_fds: Sequence[int] = (), started: list[Any] | None = None) -> type:
    """A kernel manager that talks to the kernel over Unix sockets and ties the kernel's
    life to this process.

    Unix sockets: no TCP port is opened, and the kernel does not warn on every run that it
    is "running over TCP without encryption". Each kernel's sockets get a fresh path in the
    temp folder (jupyter_client would put them in the working directory, shared by
    concurrent runs) and are removed at shutdown.

    Lifetime: on Linux the kernel command is prefixed by a tiny launcher that sets
    ``PR_SET_PDEATHSIG = SIGKILL`` and then execs the kernel, so the kernel is killed as soon
    as this process dies, however it dies (ipykernel's own parent poller checks once a
    second, and not at all when the parent died before the poller started, so an orphaned
    kernel could go on trading). ``pass_fds`` are inherited by the kernel: a lock whose
    descriptor is passed stays held until the kernel has exited too. Each manager that
    launched a kernel is appended to ``started`` (when given), so the caller can interrupt it.
    """
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    inherited = tuple(int(fd) for fd in pass_fds)

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return str(Path(tempfile.gettempdir()) / f"pairlib-kernel-{uuid.uuid4().hex[:12]}")

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd: list[str] = super().format_kernel_cmd(extra_arguments)
            if not sys.platform.startswith("linux"):
                return cmd
            return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_LAUNCHER, str(os.getpid()),
                    *cmd]

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if inherited:
                kw = {**kw, "pass_fds": tuple(kw.get("pass_fds", ())) + inherited}
            await super()._async_launch_kernel(kernel_cmd, **kw)
            if started is not None:
                started.append(self)

    return IpcKernelManager


def _secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secret values this process could leak, by the name they come under: the API key pair
    (environment or ``.env``), every environment variable (or ``.env`` entry) whose name
    looks secret, and ``PAIRLIB_NOTIFY_URLS``."""
    from pairlib.config import _read_dotenv, load_secrets

    env = dict(os.environ if environ is None else environ)
    found: dict[str, str] = {}
    sources: Iterable[Mapping[str, str]] = (env, _read_dotenv(Path(".env")))
    for source in sources:
        for name, value in source.items():
            if value and _SECRET_ENV_NAME.search(name):
                found.setdefault(name, value)
    secrets = load_secrets(env)
    for name, secret in (("PAIRLIB_API_KEY", secrets.api_key),
                         ("PAIRLIB_API_SECRET", secrets.api_secret)):
        if secret:
            found.setdefault(name, secret)
    return found


def _leaked_secret(value: str, secrets: Mapping[str, str]) -> str | None:
    """The name of the secret ``value`` equals (or, for a long secret, contains), if any."""
    text = value.strip()
    for name, secret in secrets.items():
        s = secret.strip()
        if not s:
            continue
        if text == s or (len(s) >= _MIN_CONTAINED_SECRET and s in value):
            return name
        if name == "PAIRLIB_NOTIFY_URLS":  # a list: each URL on its own is a secret too
            for part in re.split(r"[\s,]+", s):
                if part and (text == part or (len(part) >= _MIN_CONTAINED_SECRET
                                              and part in value)):
                    return name
    return None


def _check_parameters(
    parameters: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> None:
    """Refuse what papermill must not write into a report: a secret-looking parameter name,
    a value that is one of this process's secrets (see :func:`_secret_values`), and
    anything but a literal. The message names the parameter, never the value."""
    secrets: dict[str, str] | None = None
    for key, value in parameters.items():
        if _SECRET_LIKE.search(key):
            raise ConfigError(
                f"notebook parameter {key!r} looks like a secret (names containing key, "
                "secret, token, password, passphrase, credential, auth or bearer are "
                "refused); secrets come only from the environment (PAIRLIB_API_KEY, "
                "PAIRLIB_API_SECRET), never as parameters, because papermill writes "
                "parameters into the output notebook"
            )
        if not isinstance(value, str | int | float | bool | type(None)):
            raise ConfigError(
                f"notebook parameter {key!r} has a {type(value).__name__} value: only "
                "literals are allowed (str, int, float, bool, None)"
            )
        if isinstance(value, str) and value.strip():
            if secrets is None:
                secrets = _secret_values(environ)
            name = _leaked_secret(value, secrets)
            if name is not None:
                raise ConfigError(
                    f"notebook parameter {key!r} carries the value of the secret "
                    f"environment variable {name} (value not shown); secrets are never "
                    "passed as parameters, because papermill writes parameters into the "
                    "output notebook"
                )


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, Any],
    cwd: str | Path | None = None,
    timeout_s: int = 1800,
    kernel: str = KERNEL_NAME,
    kernel_fds: Sequence[int] = (),
    interrupt_on_sigint: bool = False,
) -> RunResult:
    """Execute ``notebook`` into ``output`` (reserve it first: see :func:`unique_path`).

    Parameters
    ----------
    notebook : path
        Source notebook with a cell tagged ``parameters``.
    output : path
        Where the executed notebook goes; folders are created.
    parameters : mapping
        Literal values only; secret-looking names, and values equal to a secret of the
        environment, are refused (:class:`~pairlib.errors.ConfigError`).
    cwd : path, optional
        Working directory of the kernel (default: the current directory).
    timeout_s : int
        Per-cell execution timeout.
    kernel : str
        Kernel name (installed on demand for this interpreter).
    kernel_fds : sequence of int
        File descriptors the kernel inherits (e.g. a lock that must stay held while the
        kernel lives).
    interrupt_on_sigint : bool
        Hand Ctrl-C to the kernel (main thread only). The kernel runs in its own session,
        so a terminal's SIGINT reaches this process, not the kernel; with this set, the
        first SIGINT while a kernel runs interrupts it (jupyter_client's
        ``interrupt_kernel``: ``KeyboardInterrupt`` in the running cell, which the notebook
        may handle and go on) and the run's result says ``interrupted``. A SIGINT before the
        kernel has started, or a second one, raises ``KeyboardInterrupt`` here as usual.

    Returns
    -------
    RunResult
        ``ok`` False when a cell failed, the kernel died or timed out; whatever was
        written of the notebook is kept at ``path``.
    """
    import papermill as pm

    _check_parameters(parameters)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error: str | None = None
    started: list[Any] = []
    sigint = _KernelInterrupter(started) if interrupt_on_sigint else None
    failpoint("runner.before_execute")
    try:
        if sigint is not None:
            sigint.install()
        pm.execute_notebook(
            str(notebook),
            str(out),
            parameters=dict(parameters),
            kernel_name=ensure_kernel(kernel),
            progress_bar=False,
            log_output=False,
            cwd=str(cwd) if cwd is not None else None,
            execution_timeout=timeout_s,
            kernel_manager_class=_ipc_kernel_manager(kernel_fds, started),
        )
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    except Exception as e:  # noqa: BLE001 - a dead or hung kernel is a failed run, kept
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    finally:
        if sigint is not None:
            sigint.uninstall()
    failpoint("runner.after_execute")
    duration = time.perf_counter() - t0
    scraps = _scraps_or_empty(out)
    return RunResult(path=out, ok=error is None, duration_s=duration, error=error, scraps=scraps,
                     interrupted=sigint is not None and sigint.interrupted)


class _KernelInterrupter:
    """A SIGINT handler that interrupts the kernel a run started (see ``run_notebook``'s
    ``interrupt_on_sigint``): the first SIGINT while a kernel runs is sent to it through
    ``interrupt_kernel``; a SIGINT with no kernel yet, or a second one, restores the previous
    handler and raises ``KeyboardInterrupt``."""

    def __init__(self, started: list[Any]) -> None:
        self._started = started
        self._previous: Any = None
        self._installed = False
        self.interrupted = False

    def install(self) -> None:
        """Take SIGINT over (only possible in the main thread; elsewhere nothing changes)."""
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def uninstall(self) -> None:
        """Give SIGINT back to the handler it had before."""
        import signal

        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        import asyncio
        import threading

        km = self._started[-1] if self._started else None
        if self.interrupted or km is None or not km.has_kernel:
            self.uninstall()
            raise KeyboardInterrupt
        self.interrupted = True
        sys.stderr.write("interrupting the notebook's kernel: it keeps what finished "
                         "(Ctrl-C again to stop at once)\n")
        # The handler runs in the main thread, inside papermill's running event loop:
        # the manager's coroutine runs to completion on a loop of its own.
        sender = threading.Thread(target=asyncio.run, args=(km.interrupt_kernel(),),
                                  name="kernel-interrupt", daemon=True)
        sender.start()
        sender.join(timeout=10.0)


def _scraps_or_empty(path: Path) -> dict[str, Any]:
    """The scraps of a (possibly partial) executed notebook; none when nothing readable was
    written (a reserved path the run never filled, or a notebook cut off mid-write)."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    try:
        return read_scraps(path)
    except ValueError:  # not JSON or not a notebook: nothing to read back
        return {}


def read_scraps(path: str | Path) -> dict[str, Any]:
    """Every scrapbook scrap glued in an executed notebook, by name.

    Data frames (scrapbook's ``pandas`` encoder: Parquet in base64) are decoded without
    Arrow's thread pools (:func:`decode_frame`), because a process that has read Parquet
    with them can abort at interpreter exit (``terminate called without an active
    exception``, SIGABRT) while Arrow tears its pool threads down, which turns a successful
    ``pairlib tick`` into a failed command for cron.
    """
    import scrapbook as sb

    _use_threadless_frame_decoder()
    nb = sb.read_notebook(str(path))
    return {name: scrap.data for name, scrap in nb.scraps.items()}


def decode_frame(data: str) -> Any:
    """A data frame from scrapbook's ``pandas`` encoding, read in the calling thread only
    (Arrow's CPU and I/O thread pools are never started)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(pa.BufferReader(base64.b64decode(data)), pre_buffer=False)
    return reader.read(use_threads=False).to_pandas(use_threads=False)


def _use_threadless_frame_decoder() -> None:
    """Make scrapbook decode ``pandas`` scraps with :func:`decode_frame` (same encoder name
    and encoding; only the decoding avoids Arrow's threads). Idempotent."""
    from scrapbook.encoders import PandasArrowDataframeEncoder
    from scrapbook.encoders import registry as encoders

    class ThreadlessPandasEncoder(PandasArrowDataframeEncoder):
        def decode(self, scrap: Any, **kwargs: Any) -> Any:
            if kwargs:  # explicit reader options: scrapbook's own decoding
                return super().decode(scrap, **kwargs)
            return scrap._replace(data=decode_frame(scrap.data))

    current = encoders._encoders.get(ThreadlessPandasEncoder.ENCODER_NAME)
    if type(current).__name__ != ThreadlessPandasEncoder.__name__:
        encoders.register(ThreadlessPandasEncoder())
