# apirelay: the two commands a user needs are `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: up test bench bench-quick bench-ratelimit soak gen lint clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "apirelay needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Installs are re-run only when pyproject.toml changes.
$(VENV)/.stamp-run: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	@touch $@ $(VENV)/.stamp-run

## up: install and run the whole gateway on http://127.0.0.1:8080/v1 (embedded mode)
up: $(VENV)/.stamp-run
	$(VENV)/bin/apirelay up

## test: install what the tests need, check the contracts and the code, run the whole suite
test: lint
	$(PY) -m pytest -m "not soak"

## lint: generated code up to date, protos linted, ruff and mypy (strict) clean
lint: $(VENV)/.stamp-test
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/buf lint
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy services edge cli bench

## bench: gateway-added latency and throughput against a direct call to the mock upstream
bench: $(VENV)/.stamp-test
	$(PY) -m bench

bench-quick: $(VENV)/.stamp-test
	$(PY) -m bench --quick

## bench-ratelimit: decisions/s and p99 decision latency of 4 limiter replicas on one Redis
bench-ratelimit: $(VENV)/.stamp-test
	$(PY) -m bench.ratelimit

## soak: long load and chaos runs (bounded, loopback only)
soak: $(VENV)/.stamp-test
	$(PY) -m pytest -m soak

## gen: regenerate apirelay/ from protos/
gen: $(VENV)/.stamp-test
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache
