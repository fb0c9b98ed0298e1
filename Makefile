# Opex: the two commands are `make run` and `make test` (plus `make bench`).
# Each sets up what it needs first: the venv, Python and npm packages, and for
# browser tests Debian's chromium. Redis and Postgres come from the machine
# (REDIS_URL / DATABASE_URL); MongoDB is an embedded nx-27017 unless MONGO_URL is set.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt infra/requirements.txt 2>/dev/null | md5sum | cut -c1-12)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)/engine_container:$(CURDIR)/functions:$(CURDIR)

.PHONY: setup run test test-python test-frontend bench lint frontend-build clean

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt $(if $(wildcard infra/requirements.txt),-r infra/requirements.txt)
	rm -f $(VENV)/.installed-* && touch $@

frontend/node_modules/.installed: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) $(if $(wildcard frontend/package-lock.json),frontend/node_modules/.installed)
	@# the engine core compiled with mypyc (skipped when up to date; docs/engine.md, "Native core")
	$(PY) engine_container/build_native.py

frontend-build: setup
	@if [ -f frontend/package.json ]; then cd frontend && npm run build --silent; fi

## make run: set up and start the whole platform at http://127.0.0.1:8000 (ws://127.0.0.1:8001)
run: setup frontend-build
	scripts/ensure-services.sh
	$(PY) -m opex_engine stack

## make test: set up and run every test suite (Python unit/integration/slow/e2e, frontend unit, browser)
test: setup
	scripts/ensure-services.sh
	scripts/test.sh

## make bench: every benchmark in one run; writes bench/results/latest.json (+ .md, .png)
bench: setup frontend-build
	scripts/ensure-services.sh
	scripts/ensure-chromium.sh
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy layers/common/python/opex_common engine_container/opex_engine

clean:
	rm -rf $(VENV) .local frontend/node_modules frontend/dist cdk.out
