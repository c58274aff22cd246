"""Project hygiene: environment.yml in sync with pyproject, clean source notebooks, CLI help."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pairlib.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_deps: list[str] = []
    conda_deps: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_deps.extend(dep.get("pip", []))
        else:
            conda_deps.append(dep)
    listed = {
        _name(d) for d in pip_deps + conda_deps if not d.startswith(("python", "pip", "-e"))
    }
    assert listed == wanted, (
        f"only in environment.yml: {sorted(listed - wanted)}; "
        f"only in pyproject.toml: {sorted(wanted - listed)}"
    )


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
