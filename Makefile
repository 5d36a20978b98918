# The two quick-start commands (see README.md):
#   make run    set up a virtualenv, install alertd, make sure Redis answers, run the daemon
#   make test   the whole test suite against real Redis, RabbitMQ and Celery workers
#   make dist   a wheel in dist/ to install elsewhere (docs/deploy.md)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint bench dist clean

# Two install stamps: running the daemon needs only alertd's own dependencies; the test extra
# (pytest, mypy, ruff, playwright, ...) is installed by the targets that use it.
$(VENV)/.installed-run: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "alertd needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "alertd: could not create a virtualenv; on Debian: sudo apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

run: $(VENV)/.installed-run
	@scripts/services.sh redis
	$(BIN)/alertd run

# The offline tests first, a process per core (tests/conftest.py); then the tests that use the
# brokers and workers, one at a time, so their real timings have the machine to themselves.
# Both halves run even when the first fails; either failing fails the target.
test: $(VENV)/.installed-test
	@scripts/services.sh all
	@$(BIN)/pytest -m "not broker"; offline=$$?; \
	$(BIN)/pytest -m broker; brokers=$$?; \
	test $$offline -eq 0 && test $$brokers -eq 0

check: $(VENV)/.installed-run
	$(BIN)/alertd check rules/   # and ./alertd.yaml, if there is one (`check rules rules/`: the rules only)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check alertd tests bench
	$(BIN)/ruff format --check alertd tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	@scripts/services.sh redis
	$(BIN)/python bench/ingest.py

# A wheel to install elsewhere (docs/deploy.md): alertd with its templates and page, not its
# dependencies, which pip fetches from PyPI where it is installed. Needs only Python and pip.
DIST ?= dist
dist:
	rm -rf $(DIST) build
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	@ls $(DIST)/alertd-*.whl

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache dist build alertd.egg-info
