"""Run parameterized notebooks headlessly with papermill; read their scraps back.

Every executed notebook is kept as the run's auditable report, including failed ones
(papermill puts an error banner at the top). Nothing is overwritten: a second run for the
same slot gets a numbered name. Secrets are refused as parameters, because papermill
writes every parameter into the output notebook (injected cell and metadata).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pairlib.errors import ConfigError

__all__ = [
    "KERNEL_NAME",
    "RunResult",
    "ensure_kernel",
    "pairs_output_path",
    "read_scraps",
    "run_notebook",
    "stamp",
    "tick_output_path",
    "unique_path",
]

KERNEL_NAME = "pairlib"
_SECRET_LIKE = re.compile(r"(key|secret|token|password|passphrase)", re.IGNORECASE)


@dataclass(frozen=True)
class RunResult:
    """Outcome of one notebook run.

    ``ok`` is False when a cell raised; ``error`` then holds the exception's name and message
    and the notebook at ``path`` carries papermill's error banner.
    """

    path: Path
    ok: bool
    duration_s: float
    error: str | None = None
    scraps: dict[str, Any] = field(default_factory=dict)


def stamp(when: datetime) -> str:
    """``YYYY-MM-DDTHHMMZ`` for file names (UTC)."""
    from pairlib.store import iso

    return iso(when)[:13] + iso(when)[14:16] + "Z"


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``name-2.ipynb``, ``name-3.ipynb``, ... (never overwrite a report)."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def tick_output_path(outputs: Path, as_of: datetime) -> Path:
    """``outputs/ticks/YYYY/MM/<YYYY-MM-DDTHHMM>Z-tick.ipynb``."""
    s = stamp(as_of)
    return outputs / "ticks" / s[:4] / s[5:7] / f"{s}-tick.ipynb"


def pairs_output_path(outputs: Path, as_of: datetime) -> Path:
    """``outputs/pairs/<YYYY-MM-DDTHHMM>Z-generate_pairs.ipynb``."""
    return outputs / "pairs" / f"{stamp(as_of)}-generate_pairs.ipynb"


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure a Jupyter kernel ``name`` for this interpreter exists (installed into
    ``sys.prefix``, so a fresh virtualenv works without a manual step). Returns the name."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name="pairlib", prefix=sys.prefix)
    return name


def _ipc_kernel_manager() -> type:
    """A kernel manager that talks to the kernel over Unix sockets: no TCP port is opened,
    and the kernel does not warn on every run that it is "running over TCP without
    encryption". Each kernel's sockets get a fresh path in the temp folder (jupyter_client
    would put them in the working directory, shared by concurrent runs) and are removed at
    shutdown."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return str(Path(tempfile.gettempdir()) / f"pairlib-kernel-{uuid.uuid4().hex[:12]}")

    return IpcKernelManager


def _check_parameters(parameters: Mapping[str, Any]) -> None:
    for key, value in parameters.items():
        if _SECRET_LIKE.search(key):
            raise ConfigError(
                f"notebook parameter {key!r} looks like a secret; secrets come only from the "
                "environment (PAIRLIB_API_KEY, PAIRLIB_API_SECRET), never as parameters, "
                "because papermill writes parameters into the output notebook"
            )
        if not isinstance(value, str | int | float | bool | type(None)):
            raise ConfigError(
                f"notebook parameter {key!r} = {value!r}: only literals are allowed "
                "(str, int, float, bool, None)"
            )


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, Any],
    cwd: str | Path | None = None,
    timeout_s: int = 1800,
    kernel: str = KERNEL_NAME,
) -> RunResult:
    """Execute ``notebook`` into ``output`` (a fresh path: see :func:`unique_path`).

    Parameters
    ----------
    notebook : path
        Source notebook with a cell tagged ``parameters``.
    output : path
        Where the executed notebook goes; folders are created.
    parameters : mapping
        Literal values only; secret-looking names are refused.
    cwd : path, optional
        Working directory of the kernel (default: the current directory).
    timeout_s : int
        Per-cell execution timeout.
    kernel : str
        Kernel name (installed on demand for this interpreter).

    Returns
    -------
    RunResult
        ``ok`` False when a cell failed; the failed notebook is kept at ``path``.
    """
    import papermill as pm

    _check_parameters(parameters)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error: str | None = None
    try:
        pm.execute_notebook(
            str(notebook),
            str(out),
            parameters=dict(parameters),
            kernel_name=ensure_kernel(kernel),
            progress_bar=False,
            log_output=False,
            cwd=str(cwd) if cwd is not None else None,
            execution_timeout=timeout_s,
            kernel_manager_class=_ipc_kernel_manager(),
        )
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    duration = time.perf_counter() - t0
    scraps = read_scraps(out) if out.exists() else {}
    return RunResult(path=out, ok=error is None, duration_s=duration, error=error, scraps=scraps)


def read_scraps(path: str | Path) -> dict[str, Any]:
    """Every scrapbook scrap glued in an executed notebook, by name."""
    import scrapbook as sb

    nb = sb.read_notebook(str(path))
    return {name: scrap.data for name, scrap in nb.scraps.items()}
