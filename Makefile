# LesionLab: `make run` (main job) and `make test` (test suite) on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The data root: ../shared/data when it lies beside the checkout, else the downloaded official release.
SHARED := $(abspath ../shared/data)
DATA   ?= $(if $(wildcard $(SHARED)/ham10000/HAM10000_metadata.csv),$(SHARED),$(HOME)/.cache/lesionlab/data)
CONFIG ?= configs/default.yaml
ARGS   ?=

.PHONY: run test install install-test install-release lint clean release

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# constraints.txt pins torch/torchvision (and nothing else) for reproducible runs; the library accepts a range.
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[train,weights]"
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[test]"
	touch $@ $(VENV)/.installed

$(VENV)/.installed-release: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[train,weights,serve]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-release: $(VENV)/.installed-release

## Main job: train + evaluate the default config on the default data, write the HTML report, print its path.
run: install
	@if [ ! -f "$(DATA)/ham10000/HAM10000_metadata.csv" ]; then \
		echo "HAM10000 not found under $(DATA): downloading the official release"; \
		$(BIN)/lesionlab data download ham10000 --data-root "$(DATA)"; fi
	$(BIN)/lesionlab train --config $(CONFIG) --data-root "$(DATA)" $(ARGS)

## The built-in model (configs/release.yaml: Lite2, 150 px): train-only sibling + refit on train + val, one ensemble ->
## package it (int8 weights) with its card.
RELEASE_OUT ?= src/lesionlab/builtin/models/ham7-lite2
release: install-release
	$(BIN)/lesionlab train --config configs/release.yaml --data-root "$(DATA)" output_dir=runs/release $(ARGS)
	$(BIN)/lesionlab release "$$(ls -d runs/release/release-ensemble-* | tail -1)" --name ham7-lite2 \
		--out "$(RELEASE_OUT)" --data-root "$(DATA)" --external ph2 --weights int8 \
		--ood knn-tiny --command "make release"

## Test suite: the static checks (make lint), then the tests (those that need ../shared/data skip with a reason when
## it is absent).
test: lint
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "chromium could not be installed: the report-screenshot tests will skip"
	$(BIN)/python -m pytest -q

## Static checks, seconds: style (ruff), types (mypy over src/ against .ci/mypy-baseline.json, which can only
## shrink), the layering contract (lint-imports, [tool.importlinter]).
lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python .ci/mypy_check.py
	$(BIN)/lint-imports

clean:  # build/ too: setuptools keeps stale package-data files there (an old built-in model)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache src/*.egg-info build
