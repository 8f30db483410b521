# The one place every workflow starts. `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: browser bench-writes load soak test-faults help venv run test test-unit test-e2e test-postgres bench lint dlq clean-vhosts compose-check clean

help:
	@echo "make run            start RabbitMQ (if needed), every service and the gateway"
	@echo "make test           the whole test suite on SQLite"
	@echo "make test-unit      tests/unit only"
	@echo "make test-e2e       tests/e2e only (starts the whole platform once)"
	@echo "make test-postgres  the whole suite on PostgreSQL (DATABASE_URL, default $(POSTGRES_URL))"
	@echo "make bench-writes   write mix and creates vs a naive peer (bench/writes.py), SQLite then PostgreSQL"
	@echo "make bench          gateway benchmark (bench/gateway.py)"
	@echo "make load           mixed load, 32 clients for 60 s: throughput, p50/p99, errors, RSS (bench/load.py)"
	@echo "make soak           bench/load.py for 10 minutes; fails when a process's RSS grows beyond its bound"
	@echo "make test-faults    the fault tests only (broker, killed service, PostgreSQL cut; tests/e2e/test_faults.py)"
	@echo "make lint           ruff (pyflakes-level checks)"
	@echo "make dlq            list dead letters (replay: python -m tools.dlq replay SERVICE EVENT_ID|--all)"
	@echo "make clean-vhosts   delete test vhosts left by killed runs (older than 3 hours)"
	@echo "make compose-check  validate docker-compose.yml (needs docker-compose)"
	@echo "make clean          remove var/ and caches"
	@echo "make browser        install Debian's chromium and chromium-driver (the web page's browser tests)"

venv: $(STAMP)

# Re-installs only when requirements.txt is newer than the stamp.
$(STAMP): requirements.txt requirements-browser.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-browser.txt
	@touch $(STAMP)

run: venv
	$(PY) -m tools.run

test: venv browser
	DATABASE_URL= $(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-e2e: venv browser
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-postgres: venv browser
	DATABASE_URL="$${DATABASE_URL:-$(POSTGRES_URL)}" $(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/gateway.py

# Mixed load (70% reads, 20% updates, 10% invoice imports); LOAD_ARGS="--duration 30 --clients 16" etc.
load: venv
	$(PY) bench/load.py $(LOAD_ARGS)

# Ten minutes of the same load; exit 1 when a process's RSS grew by more than 50 MiB and 20%.
soak: venv
	$(PY) bench/load.py --duration 600 --soak $(LOAD_ARGS)

test-faults: venv
	$(PY) -m pytest tests/e2e/test_faults.py -m faults $(PYTEST_ARGS)

# The write mix and creates against a naive peer, on SQLite and then on PostgreSQL.
bench-writes: venv
	DATABASE_URL= $(PY) bench/writes.py
	DATABASE_URL="$${DATABASE_URL:-$(POSTGRES_URL)}" $(PY) bench/writes.py

lint: venv
	$(VENV)/bin/ruff check --select F,E9 --exclude $(VENV) .

dlq: venv
	$(PY) -m tools.dlq list

clean-vhosts: venv
	$(PY) -m tools.isolation prune

# Validates against the compose schema; needs no Docker engine.
compose-check:
	@if ! command -v docker-compose >/dev/null 2>&1; then \
		echo "make compose-check needs docker-compose, which is not installed: apt-get install -y docker-compose" >&2; \
		exit 1; \
	fi
	docker-compose config -q
	@echo "docker-compose.yml is valid"

clean:
	rm -rf var .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# The web page's browser tests drive Debian's chromium through chromium-driver (root: apt-get).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "chromium and chromedriver are installed"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
