# Developer entry points. The README's two commands are `make run` and `make test`.
#
#   make run        serve the demo model on http://127.0.0.1:5000 (docs at /api)
#   make test       lint, type-check, import contracts, config sample, docs, tests
#   make lint       ruff (check + format), mypy, import-linter
#   make docs       build the HTML documentation into docs/_build/html
#   make genconfig  regenerate etc/deepaas.conf.sample
#   make clean      remove build output and caches (distclean: the venvs too)
#
# Everything runs in a virtual environment, .venv by default (VENV=...), created
# with python3.11 when it is installed and python3 otherwise (PYTHON=...). The
# install steps rerun when pyproject.toml or setup.cfg change, through stamp files
# kept inside the venv.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --no-input -q

LISTEN_IP ?= 127.0.0.1
LISTEN_PORT ?= 5000

# Test-only packages that register fixture models and plugins; a directory that
# does not exist (yet) is skipped.
FIXTURE_DIRS := tests/fixtures/legacy_pkg tests/fixtures/modern_pkg tests/fixtures/plugin_pkg
FIXTURES := $(foreach d,$(FIXTURE_DIRS),$(if $(wildcard $(d)/pyproject.toml $(d)/setup.py $(d)/setup.cfg),$(d)))
FIXTURE_FILES := $(foreach d,$(FIXTURES),$(wildcard $(d)/pyproject.toml $(d)/setup.py $(d)/setup.cfg))

RUN_STAMP := $(VENV)/.stamp-run
DEV_STAMP := $(VENV)/.stamp-dev

GENCONFIG := etc/deepaas-config-generator.conf
CONFIG_SAMPLE := etc/deepaas.conf.sample
SPHINXOPTS ?= -W --keep-going
PYTEST_ARGS ?=

.PHONY: help run test lint docs genconfig check-genconfig install dev clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "No python3 found; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# `make run`: the package alone.
$(RUN_STAMP): pyproject.toml setup.cfg | $(BIN)/python
	$(PIP) install -e .
	@touch $@

# Everything `make test` needs: extras and fixture packages.
$(DEV_STAMP): pyproject.toml setup.cfg $(FIXTURE_FILES) | $(BIN)/python
	$(PIP) install -e '.[test,lint,docs]' $(foreach d,$(FIXTURES),-e $(d))
	@touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
dev: $(DEV_STAMP)

run: $(RUN_STAMP)
	exec $(BIN)/deepaas-run --model-name demo --listen-ip $(LISTEN_IP) --listen-port $(LISTEN_PORT)

test: $(DEV_STAMP)
	$(BIN)/ruff check deepaas tests
	$(BIN)/ruff format --check deepaas tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory check-genconfig
	$(BIN)/sphinx-build $(SPHINXOPTS) -b html docs docs/_build/html
	$(BIN)/pytest --cov=deepaas --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check deepaas tests
	$(BIN)/ruff format --check deepaas tests
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: $(DEV_STAMP)
	$(BIN)/sphinx-build $(SPHINXOPTS) -b html docs docs/_build/html

genconfig: $(RUN_STAMP)
	$(BIN)/oslo-config-generator --config-file $(GENCONFIG) --output-file $(CONFIG_SAMPLE)

# Fails when the committed sample differs from what the options generate.
check-genconfig: $(RUN_STAMP)
	@tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	$(BIN)/oslo-config-generator --config-file $(GENCONFIG) --output-file "$$tmp" && \
	if diff -u $(CONFIG_SAMPLE) "$$tmp"; then \
		echo "$(CONFIG_SAMPLE) is up to date"; \
	else \
		echo "$(CONFIG_SAMPLE) is stale: run 'make genconfig' and commit it" >&2; exit 1; \
	fi

clean:
	rm -rf build dist .eggs docs/_build docs/_generated htmlcov .coverage .coverage.* coverage.xml
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
	find . -path ./.venv -prune -o -path './.venv-*' -prune -o -path ./.tox -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .venv-ma3* .tox
