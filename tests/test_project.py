"""Project hygiene: the lock in step with pyproject, environment.yml and the installed
packages; the Makefile installs from the lock; clean source notebooks; CLI help."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from pairlib.app.cli import app

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
DEV_LOCK = ROOT / "requirements" / "lock-dev.txt"
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*\\)?$")


def _lock(path: Path) -> dict[str, tuple[str, int]]:
    """``{canonical name: (version, number of hashes)}`` of a pip lock file."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(" "):
            assert current and line.strip().startswith("--hash=sha256:"), (
                f"{path.name}: unexpected continuation line {line!r}"
            )
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
            continue
        match = PIN_LINE.match(line)
        assert match, f"{path.name}: not an exact 'name==version' pin: {line!r}"
        current = canonicalize_name(match.group(1))
        assert current not in pins, f"{path.name}: {current} pinned twice"
        pins[current] = (match.group(2), 0)
    return pins


def _lock_python() -> str:
    """``LOCK_PYTHON`` of the Makefile: the oldest CPython the lock was resolved for."""
    found = re.search(r"^LOCK_PYTHON\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert found, "Makefile: no LOCK_PYTHON := <version> line"
    return found.group(1)


def _environment() -> tuple[list[str], list[str]]:
    """The conda and the pip entries of environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_deps: list[str] = []
    conda_deps: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_deps.extend(dep.get("pip", []))
        else:
            conda_deps.append(dep)
    return conda_deps, pip_deps


def _generator() -> ModuleType:
    """``requirements/environment.py``, the script with which ``make lock`` writes
    environment.yml."""
    path = ROOT / "requirements" / "environment.py"
    spec = importlib.util.spec_from_file_location("_environment_generator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lock_files_pin_every_pyproject_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    lock, dev_lock = _lock(LOCK), _lock(DEV_LOCK)
    for path, pins, wanted in ((LOCK, lock, runtime), (DEV_LOCK, dev_lock, runtime + dev)):
        for req in wanted:
            name = canonicalize_name(req.name)
            assert name in pins, f"{path.name} lacks {req}: run `make lock UPGRADE=none`"
            version = pins[name][0]
            assert req.specifier.contains(version, prereleases=True), (
                f"{path.name} pins {name}=={version}, outside pyproject's {req}: run `make lock`"
            )
        unhashed = sorted(n for n, (_, hashes) in pins.items() if hashes == 0)
        assert not unhashed, f"{path.name}: pins without --hash: {unhashed}"
    differ = {n: (v, dev_lock.get(n, ("missing", 0))[0]) for n, (v, _) in lock.items()
              if dev_lock.get(n, ("", 0))[0] != v}
    assert not differ, f"lock.txt and lock-dev.txt disagree (lock, lock-dev): {differ}"
    dev_only = {canonicalize_name(r.name) for r in dev} - {canonicalize_name(r.name)
                                                          for r in runtime}
    assert not dev_only & set(lock), f"dev tools in the runtime lock: {dev_only & set(lock)}"


def test_lock_python_agrees_with_pyproject_and_environment_yml() -> None:
    oldest = _lock_python()
    major, minor = (int(p) for p in oldest.split(".")[:2])
    supported = SpecifierSet(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    assert oldest in supported, f"pyproject's requires-python {supported} excludes {oldest}"
    assert f"{major}.{minor + 1}" not in supported, (
        f"pyproject's requires-python {supported} claims Python {major}.{minor + 1}, "
        f"which the lock (CPython {major}.{minor} only) does not cover"
    )
    conda_deps, _ = _environment()
    pythons = [d for d in conda_deps if re.match(r"python\b", d)]
    assert pythons == [f"python>={oldest},<{major}.{minor + 1}"], pythons


def test_environment_yml_pins_exactly_the_dev_lock() -> None:
    _, pip_deps = _environment()
    assert "-e ." in pip_deps, "environment.yml must install pairlib itself (-e .)"
    pins: dict[str, str] = {}
    for dep in pip_deps:
        if dep == "-e .":
            continue
        match = PIN_LINE.match(dep)
        assert match, f"environment.yml: not an exact 'name==version' pin: {dep!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    locked = {n: v for n, (v, _) in _lock(DEV_LOCK).items()}
    wrong = {n: (pins[n], locked[n]) for n in pins.keys() & locked.keys() if pins[n] != locked[n]}
    assert not wrong, f"environment.yml vs lock-dev.txt versions (yml, lock): {wrong}"
    assert pins.keys() == locked.keys(), (
        f"only in environment.yml: {sorted(pins.keys() - locked.keys())}; "
        f"only in lock-dev.txt: {sorted(locked.keys() - pins.keys())}; run `make lock UPGRADE=none`"
    )
    generator = _generator()
    expected = generator.render(DEV_LOCK.read_text(), _lock_python())
    assert (ROOT / "environment.yml").read_text() == expected, (
        "environment.yml differs from what `make lock` writes: run `make lock UPGRADE=none`"
    )


def test_environment_generator_rejects_a_lock_that_is_not_pinned() -> None:
    generator = _generator()
    with pytest.raises(ValueError, match="not an exact 'name==version' pin.*ccxt>=4.4"):
        generator.render("six==1.17.0\nccxt>=4.4\n", "3.11.5")
    with pytest.raises(ValueError, match="--python must look like 3.11"):
        generator.render("six==1.17.0\n", "3.x")
    text = generator.render("six==1.17.0 \\\n    --hash=sha256:ab\n    # via x\n", "3.11.5")
    assert "      - six==1.17.0\n      - -e .\n" in text and "--hash" not in text
    assert "  - python>=3.11.5,<3.12\n" in text


def test_installed_versions_are_the_locked_ones() -> None:
    # The tests pass with the versions in the lock: an environment that drifted from it
    # (a package upgraded by hand) fails here rather than somewhere obscure.
    wrong = {}
    for name, (version, _) in _lock(DEV_LOCK).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs locked (installed, lock): {wrong}; run `make dev`"


def _make_dry_run(*args: str) -> list[str]:
    """The commands ``make -n -B`` would run in the repo, one per line."""
    done = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), *args], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_installs_only_from_the_lock() -> None:
    installs = [ln for ln in _make_dry_run("dev") if " pip install " in ln]
    assert installs and re.fullmatch(
        r"\.venv/bin/python -m pip install --quiet pip==\d+(\.\d+)*", installs[0]
    ), installs
    assert installs[1:] == [
        ".venv/bin/python -m pip install --quiet -r requirements/lock.txt",
        ".venv/bin/python -m pip install --quiet --no-deps -e .",
        ".venv/bin/python -m pip install --quiet -r requirements/lock-dev.txt",
    ], installs


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_lab_binds_loopback_and_allows_root_only_for_root() -> None:
    def lab(*args: str) -> str:
        return next(ln for ln in _make_dry_run("lab", *args) if "jupyter lab" in ln)

    assert "--ip 127.0.0.1" in lab("RUN_AS_UID=0") and "--allow-root" in lab("RUN_AS_UID=0")
    assert "--ip 127.0.0.1" in lab("RUN_AS_UID=1000")
    assert "--allow-root" not in lab("RUN_AS_UID=1000")
    assert ("--allow-root" in lab()) == (os.geteuid() == 0)


def test_source_notebooks_carry_no_outputs() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("**/*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = json.loads(path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [], f"{path.name} has outputs"
                assert cell.get("execution_count") is None, f"{path.name} has execution counts"
                src = "".join(cell["source"])
                assert not re.search(r"^\s*(def|class)\s", src, re.M), f"{path.name}: logic"


def test_cli_help_everywhere() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = re.findall(r"│ (\w[\w-]*)\s", result.output)
    assert "exchange" in commands
    assert {"data", "pairs", "tick", "demo"} <= set(commands)
    for cmd in [*commands, "exchange serve"]:
        sub = runner.invoke(app, [*cmd.split(), "--help"])
        assert sub.exit_code == 0, f"{cmd} --help failed: {sub.output}"
        assert "Usage" in sub.output
