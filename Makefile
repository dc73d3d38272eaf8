# pitcrew: `make run` runs the whole stack on an embedded AWS emulator; `make test` runs the suite.
# Every target creates .venv first when it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAM_VENV := .sam-venv
PYTEST_ARGS ?=

.PHONY: install test unit integration e2e lint format check bench build run demo lock clean

install: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "pitcrew needs Python 3.11 (the Lambda runtime python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@touch $@

test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS) tests

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS) tests/unit

integration: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS) tests/integration

e2e: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: lint test

bench: $(STAMP)
	$(BIN)/python bench/coldstart.py
	@if [ -d .aws-sam/build ]; then $(BIN)/python bench/size.py; \
	 else echo "bench/size.py skipped: run 'make build' first"; fi

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements/dev.in
	.lock-venv/bin/pip check
	{ head -3 requirements/dev.txt; .lock-venv/bin/pip freeze --exclude-editable; } > requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
