# Two commands do all the set-up on a fresh machine:
#   make demo  -> .venv + install + `dvc repro` of the whole pipeline on the embedded default
#   make test  -> .venv + install + pytest
# and one opens the sketch studio (the optional `studio` extra, installed here too):
#   make studio -> .venv + install + `sketchgan studio` on http://127.0.0.1:7860
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export MLFLOW_DISABLE_TELEMETRY := true
# Let Python cache compiled bytecode in .venv (its default). Where PYTHONDONTWRITEBYTECODE is
# set in the environment, every stage process would otherwise recompile torch and MLflow from
# source: ~10 s per process, ~1.5 min of `make demo` (reports/demo_time.md).
unexport PYTHONDONTWRITEBYTECODE
export PATH := $(BIN):$(PATH)

.PHONY: install demo test studio lint format ui dag clean-outputs

# pip's find-links (the folder holding the CPU torch wheel on these machines), passed on to uv
FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_FIND := $(if $(FIND_LINKS),--find-links $(FIND_LINKS),)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# uv installs the pinned set in ~30 s (pip: ~210 s); torch is pinned in the same command so
	# the local CPU wheel is taken, not a CUDA build. pip is the fallback when uv is unavailable.
	( $(BIN)/python -m pip install -q uv==0.13.9 && \
	  $(BIN)/uv pip install -q --python $(BIN)/python $(UV_FIND) -c requirements.lock \
	    torch==2.13.0 -e '.[dev,studio]' ) || \
	$(BIN)/python -m pip install -q -c requirements.lock torch==2.13.0 -e '.[dev,studio]'
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

studio: install
	$(BIN)/sketchgan studio

ui: install
	$(BIN)/sketchgan ui

dag: install
	$(BIN)/dvc dag
