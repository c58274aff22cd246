"""Run every ``benchmarks/bench_*.py`` and print all figures in one table."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks.common import Row


def main() -> int:
    """Discover and run the benchmarks; exit 1 if any target is missed."""
    only = set(sys.argv[1:])
    rows: list[Row] = []
    here = Path(__file__).parent
    for mod in sorted(m.name for m in pkgutil.iter_modules([str(here)])):
        if not mod.startswith("bench_") or (only and mod not in only):
            continue
        print(f"running {mod} ...", flush=True)
        rows.extend(importlib.import_module(f"benchmarks.{mod}").run())
    width = max((len(r.name) for r in rows), default=10)
    print(f"\n{'benchmark':<{width}}  {'measured':>12}  {'target':<12}  {'ok':<4}  baseline")
    for r in rows:
        print(f"{r.name:<{width}}  {r.measured:>10.3f} {r.unit:<2} {r.target:<12}  "
              f"{'yes' if r.ok else 'NO':<4}  {r.baseline}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
