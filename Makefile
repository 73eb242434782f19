# One entry point for operators and CI. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the whole fleet on the embedded Redis (Ctrl-C stops it).
run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

## Install everything the tests need (Python packages; chromium for the browser test) and run them.
test: install
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## Run every benchmark against the fleet and print the comparison table.
bench: install
	$(BIN)/python -m loadtests.bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache test-artifacts
