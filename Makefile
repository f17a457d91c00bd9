# Two commands set CQE up on a fresh machine with Python 3.11+:
#   make run    venv, install, migrate an SQLite file, seed the demo, serve on 127.0.0.1:5000
#   make test   the whole suite on SQLite, and again on PostgreSQL + Redis when TEST_DATABASE_URL is set
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

# The demo opens in the entry phase of 2021学年第一学期; pin any other instant with CQE_NOW=… make run.
CQE_NOW ?= 2022-03-01T09:00:00+08:00
export CQE_NOW
DATABASE_URL ?= sqlite:///$(CURDIR)/instance/cqe.sqlite
export DATABASE_URL

.PHONY: run test venv dev-venv migrate seed lint translations vendor clean bench bench-quick bench-city worker tick load

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# locust and gevent, for `make load` only (requirements-load.txt).
$(VENV)/.installed-load: requirements.txt requirements-load.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-load.txt
	touch $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

translations: venv
	$(BIN)/pybabel compile -d translations

# Browser libraries (the roster grid's Tabulator) from the npm registry, pinned and integrity-checked.
vendor: venv
	$(BIN)/python tools/vendor.py

migrate: venv
	mkdir -p instance
	$(BIN)/flask db upgrade

seed: migrate
	$(BIN)/flask cqe seed-demo

run: seed translations vendor
	@echo "CQE: http://127.0.0.1:5000  (clock pinned at $(CQE_NOW); demo password cqe2022)"
	$(BIN)/flask run --host 127.0.0.1 --port 5000

# Production-style background work (needs REDIS_URL): RQ worker with its scheduler; deadlines are
# scheduled at their window boundaries and caught up every minute. Without Redis, `make run` ticks itself.
worker: migrate
	$(BIN)/flask cqe worker

# Apply every deadline effect that is due and not yet done (catch-up), e.g. CQE_NOW=2022-03-28T16:00 make tick
tick: migrate
	$(BIN)/flask cqe tick

test: dev-venv translations vendor
	$(BIN)/ruff check .
	CQE_TEST_DB=sqlite $(BIN)/python -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== again on PostgreSQL =="; \
		CQE_TEST_DB=postgresql $(BIN)/python -m pytest; \
	fi

# The benchmark (bench/run.py): SQLite at BENCH_STUDENTS (default 50,000), and PostgreSQL too when
# TEST_DATABASE_URL is set. Writes bench/results.json.
BENCH_STUDENTS ?= 50000
bench: dev-venv
	$(BIN)/python bench/run.py --students $(BENCH_STUDENTS)

bench-quick: dev-venv
	$(BIN)/python bench/run.py --students 2000

bench-city: dev-venv
	$(BIN)/python bench/run.py --students 600000 --only postgresql

# The publication rush (bench/load.py): gunicorn on PostgreSQL (its own database, cqe_load, dropped and re-seeded;
# clock pinned in publication), driven by locust from a second process: a think-time run for latency and errors,
# then the mix and GET /livez with no think time for throughput. Writes bench/results.json key publication_load.
# Knobs (environment or make variables): LOAD_USERS (500), LOAD_SECONDS (120), LOAD_SATURATION_USERS (50),
# LOAD_WORKERS (2), LOAD_THREADS (4), LOAD_THINK_SCALE (1), LOAD_DATABASE_URL; `bench/load.py --help` lists all.
load: $(VENV)/.installed-load vendor
	$(BIN)/python bench/load.py

lint: dev-venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance/cqe.sqlite* static/vendor
