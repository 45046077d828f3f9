# LubDub: the usual verbs. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WITH_ENV := set -a && . .services/env && set +a &&

.PHONY: help install services services-down up down demo test test-fast lint format migrate bench clean

help:
	@echo "make demo          services, app processes and a sample archive processed end to end"
	@echo "make test          lint, type checks, migrations check and the whole test suite"
	@echo "make test-fast     the same without the tests marked slow (end to end, restarts, browsers)"
	@echo "make up / down     start / stop web, workers, beat and Flower"
	@echo "make services      start PostgreSQL, Redis and the S3-API server (services-down stops them)"
	@echo "make bench         throughput, latency and memory benchmarks"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[server,dev]'
	@touch $(STAMP)

install: $(STAMP)

services: install
	infra/services.sh up

services-down:
	infra/services.sh down

migrate: services
	$(WITH_ENV) $(BIN)/python manage.py migrate --noinput

up: services
	infra/processes.sh up

down:
	infra/processes.sh down

demo: up
	set -a && . .services/env && . .services/app.env && set +a && $(BIN)/python manage.py demo

test: install
	infra/test.sh

test-fast: install
	infra/test.sh -m "not slow"

lint: install
	$(WITH_ENV) infra/lint.sh

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: up
	infra/bench.sh

clean: down
	infra/services.sh clean
	rm -rf var
