# pitcrew: `make run` runs the whole stack on an embedded AWS emulator; `make test` runs the suite.
# Every target creates .venv first when it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAM_VENV := .sam-venv
PYTEST_ARGS ?=

.PHONY: install system-deps test unit integration e2e lint format check bench build run demo lock clean

install: $(STAMP)

$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "pitcrew needs Python 3.11 (the Lambda runtime python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@touch $@

# Debian packages some tests run for real (Alertmanager, PostgreSQL); quick when present.
system-deps:
	@.ci/install-system-deps

test: $(STAMP) system-deps
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS) tests

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS) tests/unit

integration: $(STAMP) system-deps
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS) tests/integration

e2e: $(STAMP) system-deps
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

# The whole stack on 127.0.0.1: the embedded AWS emulator on :4566 and the API on :8000.
# Extra options: make run RUN_ARGS="--port 8080 --fire cost_tracker.Daily"
RUN_ARGS ?=

run: $(STAMP)
	$(BIN)/pitcrew local $(RUN_ARGS)

# Sends the sample events in events/ through the stack `make run` started.
demo: $(STAMP)
	$(BIN)/pitcrew demo

bench: $(STAMP)
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/prompt.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/costs.py
	@if [ -d .aws-sam/build ]; then $(BIN)/python bench/size.py; \
	 else echo "bench/size.py skipped: run 'make build' first"; fi

# The Lambda artifacts in .aws-sam/build: `sam build` runs each layer's and function's own
# Makefile (BuildMethod: makefile), which installs Linux x86_64 wheels; no Docker needed.
build: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 PYTHON="$(PYTHON)" $(SAM_VENV)/bin/sam build --parallel --cached \
	  --template-file template.yaml --build-dir .aws-sam/build

# aws-sam-cli in its own environment: its pins (requirements/sam.txt) clash with dev.txt's.
$(SAM_VENV)/.installed: requirements/sam.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "pitcrew needs Python 3.11 (the Lambda runtime python3.11)")'
	rm -rf $(SAM_VENV) && $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/sam.txt
	$(SAM_VENV)/bin/pip check
	@touch $@

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements/dev.in
	.lock-venv/bin/pip check
	{ head -3 requirements/dev.txt; .lock-venv/bin/pip freeze --exclude-editable; } > requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
