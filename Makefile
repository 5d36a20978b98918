# The two quick-start commands (see README.md):
#   make run    set up a virtualenv, install alertd, make sure Redis answers, run the daemon
#   make test   the whole test suite against real Redis, RabbitMQ and Celery workers
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint bench clean

$(BIN)/alertd: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "alertd needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "alertd: could not create a virtualenv; on Debian: sudo apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

run: $(BIN)/alertd
	@scripts/services.sh redis
	$(BIN)/alertd run

test: $(BIN)/alertd
	@scripts/services.sh all
	$(BIN)/pytest

check: $(BIN)/alertd
	$(BIN)/alertd check rules/

lint: $(BIN)/alertd
	$(BIN)/ruff check alertd tests bench
	$(BIN)/ruff format --check alertd tests bench
	$(BIN)/mypy

bench: $(BIN)/alertd
	@scripts/services.sh redis
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache
