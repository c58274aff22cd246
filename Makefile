# Two commands on a fresh machine that has only Python: `make demo` and `make test`.
# Both install the exact versions pinned in requirements/ (the lock, hashes included) with pip
# alone; `make lock` refreshes the lock with uv, which it installs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
BENCHSTAMP := $(VENV)/.installed-bench
KERNEL := pairlib

# The lock: resolved for CPython $(LOCK_PYTHON) up to the end of its minor series (the oldest
# patch release that every locked package accepts), on Linux x86_64. lock.txt holds the runtime
# dependencies of pyproject.toml, lock-dev.txt adds the dev extra, lock-bench.txt adds the bench
# extra too (vectorbt, the sweep's baseline, installed by `make bench` only); all three pin the
# same versions.
LOCK          := requirements/lock.txt
DEVLOCK       := requirements/lock-dev.txt
BENCHLOCK     := requirements/lock-bench.txt
LOCK_PYTHON   := 3.11.5
LOCK_PLATFORM := x86_64-unknown-linux-gnu
PIP_VERSION   := 26.3
UV_VERSION    := 0.13.9
UV_DIR        := $(VENV)/uv-$(UV_VERSION)
UV            := $(UV_DIR)/bin/uv
# `make lock` moves every package to its newest release that pyproject.toml allows;
# `make lock UPGRADE="ccxt"` moves only the named packages (and what they newly need);
# `make lock UPGRADE=none` keeps every pin that still fits (after an edit of pyproject.toml).
UPGRADE ?= all

# JupyterLab refuses to start as root without --allow-root (these machines run as root).
RUN_AS_UID ?= $(shell id -u)
LAB_FLAGS  := --ip 127.0.0.1 --no-browser $(if $(filter 0,$(RUN_AS_UID)),--allow-root,)

CHECK_PYTHON := import sys; lo = tuple(map(int, "$(LOCK_PYTHON)".split("."))); \
	v = sys.version_info; ok = sys.implementation.name == "cpython" and v[:2] == lo[:2] and v[:3] >= lo; \
	sys.exit(None if ok else "the lock in requirements/ is for CPython >= $(LOCK_PYTHON), < " \
	f"{lo[0]}.{lo[1] + 1}; {sys.executable} is {sys.implementation.name} " \
	f"{sys.version.split()[0]}: run make with PYTHON=/path/to/python{lo[0]}.{lo[1]}")

.PHONY: venv dev demo test lint bench soak mutation lab lock clean

# A changed lock rebuilds the venv from empty (--clear), so nothing outside the lock lingers.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c '$(CHECK_PYTHON)'
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "pairlib" >/dev/null
	touch $(STAMP)

$(DEVSTAMP): $(STAMP) $(DEVLOCK)
	$(BIN)/python -m pip install --quiet -r $(DEVLOCK)
	touch $(DEVSTAMP)

$(BENCHSTAMP): $(DEVSTAMP) $(BENCHLOCK)
	$(BIN)/python -m pip install --quiet -r $(BENCHLOCK)
	touch $(BENCHSTAMP)

venv: $(STAMP)
dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/pairlib demo

lint: $(DEVSTAMP)
	$(BIN)/ruff check pairlib tests benchmarks notebooks requirements
	$(BIN)/mypy pairlib

# The browser check of the offline reports drives Debian's Chromium (no browser downloads work).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

test: $(DEVSTAMP) $(CHROMIUM)
	$(BIN)/ruff check pairlib tests benchmarks notebooks requirements
	$(BIN)/mypy pairlib
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

bench: $(BENCHSTAMP)
	$(BIN)/python -m benchmarks

# The long reliability campaigns (figures into docs/RELIABILITY.md): the simulated year under
# faults and kills, every crash point at every hit, every pair of faults, the full secrets scan.
soak: $(DEVSTAMP)
	PAIRLIB_SOAK=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_soak.py tests/test_crash_matrix.py tests/test_fault_matrix.py tests/test_secrets_scan.py

# Mutation testing of the rule modules (mutmut; settings in setup.cfg; work in mutants/).
mutation: $(DEVSTAMP)
	nice -n 10 $(BIN)/python tests/mutation.py

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_FLAGS)

# uv resolves from PyPI (or from UV_DEFAULT_INDEX if set); it lives beside the venv, not in it.
$(UV):
	$(PYTHON) -m pip install --quiet --target $(UV_DIR) uv==$(UV_VERSION)

UV_COMPILE := $(UV) pip compile pyproject.toml --quiet --generate-hashes \
	--python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
	--custom-compile-command "make lock"
UPGRADE_FLAGS := $(if $(filter all,$(UPGRADE)),--upgrade,$(if $(filter none,$(UPGRADE)),,\
	$(foreach p,$(UPGRADE),--upgrade-package $(p))))

lock: $(UV)
	$(UV_COMPILE) --extra dev --extra bench $(UPGRADE_FLAGS) -o $(BENCHLOCK)
	$(UV_COMPILE) --extra dev -c $(BENCHLOCK) -o $(DEVLOCK)
	$(UV_COMPILE) -c $(DEVLOCK) -o $(LOCK)
	$(PYTHON) requirements/environment.py --python $(LOCK_PYTHON)

clean:
	rm -rf $(VENV) .state .data
