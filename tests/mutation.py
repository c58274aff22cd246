"""``make mutation``: mutation testing of the rule modules, and its figures.

Runs mutmut 3 (settings in ``setup.cfg`` ``[mutmut]``: the mutated modules are
``core/strategy.py``, ``core/risk.py``, ``core/portfolio.py`` and ``engine/execution.py``, each
mutant tested by the fast unit tests of those modules), then writes the score per module and
every surviving mutant, sorted by kind, into ``docs/RELIABILITY.md`` (section ``mutation``).
mutmut keeps its work in ``mutants/`` (git-ignored); a second run re-tests only what changed.

Usage (from the project root)::

    nice -n 10 .venv/bin/python tests/mutation.py [--max-children 2] [--report-only]
        [--recheck [--match TEXT ...]] [--note TEXT]

The kinds of surviving mutants (:func:`kind_of`):

* ``log`` -- the text or arguments of a log call: no behaviour changes;
* ``failpoint`` -- the name given to a failpoint: only armed failpoints look at it, and the
  crash matrix's registry test calls every site by name;
* ``text`` -- only a string literal changed (a reason, an incident's or an error's wording)
  that the fast tests do not pin word for word;
* ``equivalent`` -- ``zip(..., strict=...)`` over two 2-tuples: cannot change anything;
* ``behaviour`` -- anything else: a test should kill it (listed by name).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("pairlib/core/strategy.py", "pairlib/core/risk.py", "pairlib/core/portfolio.py",
           "pairlib/engine/execution.py")
KINDS = ("behaviour", "text", "log", "failpoint", "equivalent")
EQUIVALENT = (
    ("per = max(2, _CHUNK // L)", "zscore's chunk size only bounds memory: every window is "
     "computed alike"),
    ("else -2.0", "allocate_slots ranks a non-finite z below every |z| >= 0 with any negative "
     "number"),
    ("class OrderVenue", "a Protocol's method body (`...`) never runs"),
    ("if pos <= 0", "the strategy's position is -1 or +1 there (0 has returned earlier)"),
    ("if pos < 1", "the strategy's position is -1 or +1 there (0 has returned earlier)"),
    ('"long" if pos >= 0', "the side is only named for a position of -1 or +1"),
    ("PairState(locked_out=", "PairState's position defaults to 0"),
    ("if pr.z >= 0 else -strategy.stop", "an entry needs |z| >= entry > 0: z is never 0 "
     "there"),
    ("range(0, len(windows), )", "zscore's chunk step only sets how often overlapping windows "
     "are recomputed: every window's z is the same"),
    ("mu))] = None", "numpy stores None in a float array as NaN"),
    ("all(axis=1)] = None", "numpy stores None in a float array as NaN"),
    ("ref[:, 0] - mu", "zscore's zero-std mask: |ref + mu| and |ref - mu| differ by 2|mu| <= "
     "2 sd sqrt(L), so the two thresholds 1e-12 |ref +- mu| differ by ~1e-24 sd, finer than "
     "any float spacing of sd"),
    ("max(1, -int(exponent))", "a step with no decimals is a whole number: k * step rounds "
     "alike to 0 or 1 decimals"),
    ("4.0 * q * 2.0**-53", "a whole number of steps divides to within an ulp of its integer "
     "(none found off by more in 200 000 sampled): a margin of 2 or 4 ulps floors alike"),
    ("5.0 * q * 2.0**-52", "a whole number of steps divides to within an ulp of its integer: "
     "a margin of 4 or 5 ulps floors alike"),
    ("    if k < 0:", "round_amount: k == 0 gives round(0 * step) == 0.0 either way"),
    ("return 1.0, 0.0, why", "size_pair reads only the reason of a leg that is skipped"),
    ("return 0.0, 1.0, why", "size_pair reads only the reason of a leg that is skipped"),
    ("same symbol {c.symbols[1]}", "both legs are that same symbol there"),
    ("ze * zs < 0.0 or", "size_pair: z_entry is not 0 there, so the product is 0 only for a "
     "stop_z of 0, which |stop_z| <= |z_entry| refuses next (or when it underflows, "
     "|z| < 1e-154)"),
)
"""Mutants that cannot change behaviour, by a piece of their new line, and why."""


def run_mutmut(max_children: int, names: list[str] | None = None) -> int:
    """``mutmut run`` in the project root (only the mutants ``names``, when given; mutmut
    re-tests a named mutant even if it has a result); its exit code."""
    return subprocess.call([str(Path(sys.executable).with_name("mutmut")), "run",
                            "--max-children", str(max_children), *(names or [])], cwd=ROOT)


def not_killed() -> list[str]:
    """The mutants that no test killed in the last run (survived, no tests, suspicious) or
    that have no result (not checked: mutmut drops every result when its settings in
    ``setup.cfg`` change)."""
    return [name for names in statuses().values() for name, status in names.items()
            if status in ("survived", "no tests", "suspicious", "not checked")]


def statuses() -> dict[str, dict[str, str]]:
    """Module path -> {mutant name: status} from mutmut's ``mutants/*.meta`` files."""
    import json

    from mutmut.stats import status_by_exit_code

    out: dict[str, dict[str, str]] = {}
    for module in MODULES:
        meta = ROOT / "mutants" / f"{module}.meta"
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return out


def _strip_strings(line: str) -> str:
    """``line`` with every string literal replaced by ``''`` (f-strings included)."""
    return re.sub(r"""[rbfRBF]*("([^"\\]|\\.)*"|'([^'\\]|\\.)*')""", "''", line)


def kind_of(diff: str) -> str:
    """Which of :data:`KINDS` a surviving mutant is, from its unified diff."""
    lines = diff.splitlines()
    minus = [ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    changed_at = next((i for i, ln in enumerate(lines)
                       if ln.startswith("-") and not ln.startswith("---")), 0)
    statement = " ".join(ln[1:] for ln in lines[max(changed_at - 3, 0):changed_at + 1])
    if any(piece in ln for piece, _ in EQUIVALENT for ln in plus):
        return "equivalent"
    if any("failpoint(" in ln for ln in minus + plus):
        return "failpoint"
    if re.search(r"\blog\.(debug|info|warning|error|exception)\(", statement) and not any(
            "=" in ln.split("log.")[0] for ln in minus if "log." in ln):
        return "log"
    no_strict = ["".join(re.sub(r",?\s*strict=\w*", "", ln).split()).replace(",)", ")")
                 for ln in minus + plus]
    if ("zip(" in statement and any("strict=" in ln for ln in minus + plus)
            and no_strict[:len(minus)] == no_strict[len(minus):]):
        return "equivalent"  # only zip's strict= changed
    if minus and len(minus) == len(plus) and all(
            _strip_strings(a) == _strip_strings(b) for a, b in zip(minus, plus, strict=True)):
        return "text"
    return "behaviour"


def survivors() -> dict[str, list[tuple[str, str]]]:
    """Kind -> [(mutant name, its changed lines)] of every surviving mutant."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for module, names in statuses().items():
        for name, status in names.items():
            if status != "survived":
                continue
            diff = get_diff_for_mutant(name, path=module)
            changed = " / ".join(ln.strip() for ln in diff.splitlines()
                                 if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))
            by_kind[kind_of(diff)].append((name, changed))
    return by_kind


def markdown(note: str | None = None) -> str:
    """The ``mutation`` section: the score per module and the survivors by kind, with
    ``note`` (which run each module's figures come from, when not all from one) under the
    table."""
    table = ["| module | mutants | killed | survived | timeout | no tests | not checked | score |",
             "|---|---|---|---|---|---|---|---|"]
    for module, names in statuses().items():
        c = Counter(names.values())
        judged = c["killed"] + c["survived"] + c["timeout"]
        score = f"{(c['killed'] + c['timeout']) / judged:.0%}" if judged else "-"
        table.append(f"| `{module.removeprefix('pairlib/')}` | {len(names)} | {c['killed']} | "
                     f"{c['survived']} | {c['timeout']} | {c['no tests']} | "
                     f"{c['not checked']} | {score} |")
    kinds = survivors()
    counts = ", ".join(f"{k} {len(kinds.get(k, []))}" for k in KINDS)
    out = [
        "### Mutation testing (`make mutation`)",
        "",
        "mutmut 3.8 over the rule modules; each mutant is tested by the fast unit tests of "
        "those modules (`setup.cfg` `[mutmut]`: test_strategy, test_risk, test_portfolio, "
        "test_execution, test_mutants_core, test_mutants_execution, test_delisted). A mutant "
        "*killed* made a test fail, *timeout* made it hang (counted as killed), *no tests* is "
        "code no fast test reaches (the tick tests and the crash and fault matrices do; too "
        "slow to run per mutant).",
        "",
        *table,
        "",
        *([note, ""] if note else []),
        f"Surviving mutants by kind: {counts}. `log`: only a log line's text or arguments "
        "change. `failpoint`: the name given to a failpoint (only an armed failpoint reads "
        "it; the crash matrix calls every site by name). `text`: only a message's wording "
        "changes (reasons, incidents, errors not pinned word for word by the fast tests). "
        "`equivalent`: `zip(..., strict=...)` over two 2-tuples, and "
        + "; ".join(f"`{piece}`: {why}" for piece, why in EQUIVALENT)
        + ". `behaviour`: a test should kill it; each is listed below.",
    ]
    for kind in KINDS:
        items = kinds.get(kind, [])
        if not items:
            continue
        out += ["", f"<details><summary>{kind}: {len(items)}</summary>", ""]
        out += [f"- `{name.split('.', 2)[-1]}`: `{changed[:160]}`" for name, changed in items]
        out += ["", "</details>"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run mutmut (unless ``--report-only``) and write the ``mutation`` section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-children", type=int, default=2,
                    help="parallel mutant runs (default 2: the machine's cores)")
    ap.add_argument("--report-only", action="store_true",
                    help="only write the figures of the last run into docs/RELIABILITY.md")
    ap.add_argument("--recheck", action="store_true",
                    help="re-test only the mutants the last run left alive or did not check "
                    "(after adding tests), then write the figures")
    ap.add_argument("--match", action="append", default=[], metavar="TEXT",
                    help="with --recheck: only the mutants whose name contains TEXT "
                    "(repeatable), e.g. a module (core.) or a function (_submit__)")
    ap.add_argument("--note", help="a line written under the table (e.g. which run each "
                    "module's figures come from)")
    args = ap.parse_args(argv)
    names = [n for n in not_killed() if not args.match or any(m in n for m in args.match)]
    if args.recheck and not names:
        print("nothing to re-check: run without --recheck first", file=sys.stderr)
        return 1
    if not args.report_only:
        code = run_mutmut(args.max_children, names if args.recheck else None)
        if code != 0:
            print(f"mutmut run exited {code}", file=sys.stderr)
    if not statuses():
        print("no mutmut results under mutants/: run without --report-only first",
              file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "tests"))
    from reliability_doc import write_section

    write_section("mutation", markdown(args.note))
    print("wrote the mutation section of docs/RELIABILITY.md")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)  # mutmut reads setup.cfg and mutants/ from the working directory
    sys.exit(main())
