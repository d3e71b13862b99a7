# s2c-testbed. Two commands on a fresh Debian machine, as root:
#   make run-scenario    (installs everything, runs scenarios/default.yaml on network namespaces)
#   make test            (installs everything, runs the test suite)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
S2C := $(VENV)/bin/s2c
SCENARIO ?= scenarios/default.yaml
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: all deps venv run-scenario test test-unit bench clean distclean validate

all: test

# Debian tools the testbed drives (idempotent: installs only what is missing).
deps:
	@bash tools/install-deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run-scenario: deps venv
	$(S2C) run $(SCENARIO)

validate: venv
	@for f in scenarios/*.yaml; do $(S2C) validate $$f || exit 1; done

test: deps venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: deps venv
	$(PY) -m bench $(BENCH_ARGS)

# remove what a killed run left behind (namespaces, processes, nft tables named s2c-*)
clean: venv
	$(S2C) clean

distclean:
	rm -rf $(VENV) runs build *.egg-info
