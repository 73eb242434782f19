# One entry point for operators, developers and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test unit lint format typecheck cov bench clean clean-data

LOCK := requirements.lock
UV_VERSION := 0.13.9

.PHONY: lock

# Exactly the locked packages, each checked against its hash, then the project itself without
# resolving anything again: a fresh machine installs what CI tested.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

## Re-resolve requirements.lock (every package, test tools too, with hashes) from pyproject.toml's
## pins: run after changing a dependency, and commit both files.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--output-file $(LOCK) --quiet

## The venv, and Debian's redis-server for the embedded Redis (as root; scripts/install-redis.sh).
install: $(STAMP)
	bash scripts/install-redis.sh

## Start the whole fleet on the embedded Redis (Ctrl-C stops it).
run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

## Install everything the tests need (Python packages; chromium for the browser test), lint,
## type-check, run the whole suite under coverage (service processes included) and print it.
test: install
	bash scripts/install-test-deps.sh
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

## The fast inner loop: the unit tests only (a few seconds, a real redis-server, no processes).
unit: install
	$(BIN)/python -m pytest tests/unit

## Lint and formatting check, as CI runs them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Format the code and apply ruff's safe fixes.
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Type-check the production packages (settings in pyproject.toml, [tool.mypy]).
typecheck: install
	$(BIN)/mypy shared services orchestrator tooloo_cli

## Coverage of the unit tests alone, printed per module (`make test` reports the whole suite's).
cov: install
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest tests/unit
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

## Run every benchmark against the fleet and print the comparison table.
bench: install
	$(BIN)/python -m loadtests.bench

## Remove the venv and caches; keeps var/, the embedded Redis's data (see clean-data).
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .coverage htmlcov test-artifacts

## Delete the embedded Redis's data in var/: every learner, round and setting of the local fleet.
clean-data:
	rm -rf var
