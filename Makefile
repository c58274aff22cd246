# Two commands on a fresh machine that has only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
KERNEL := pairlib

.PHONY: venv dev demo test lint bench lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "pairlib" >/dev/null
	touch $(STAMP)

$(DEVSTAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(DEVSTAMP)

venv: $(STAMP)
dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/pairlib demo

lint: $(DEVSTAMP)
	$(BIN)/ruff check pairlib tests benchmarks notebooks
	$(BIN)/mypy pairlib

test: $(DEVSTAMP)
	$(BIN)/ruff check pairlib tests benchmarks notebooks
	$(BIN)/mypy pairlib
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

bench: $(DEVSTAMP)
	$(BIN)/python -m benchmarks

lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser

clean:
	rm -rf $(VENV) .state .data
