# Two commands do all the set-up on a fresh machine:
#   make demo  -> .venv + install + `dvc repro` of the whole pipeline on the embedded default
#   make test  -> .venv + install + pytest
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export MLFLOW_DISABLE_TELEMETRY := true
export PATH := $(BIN):$(PATH)

.PHONY: install demo test lint format ui dag clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned in the same command so pip takes the local CPU wheel, not a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dvc repro
	@echo "report: reports/benchmark.md  |  browse runs: make ui"

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src stages tests reports
	$(BIN)/ruff format --check src stages tests reports

format: install
	$(BIN)/ruff format src stages tests reports
	$(BIN)/ruff check --fix src stages tests reports

ui: install
	$(BIN)/sketchgan ui

dag: install
	$(BIN)/dvc dag
