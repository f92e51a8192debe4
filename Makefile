# batchveo: the two commands a new user needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-vertex test lint fmt bench browser-test clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

fmt: $(STAMP)
	$(BIN)/ruff check --fix batchveo tests bench
	$(BIN)/ruff format batchveo tests bench

lint: $(STAMP)
	$(BIN)/ruff check batchveo tests bench
	$(BIN)/ruff format --check batchveo tests bench
	$(BIN)/mypy batchveo

test: lint
	$(BIN)/python -m pytest -q -m "not browser"

# Checks the HTML report in a real headless Chromium (installs it from Debian if missing).
browser-test: $(STAMP)
	scripts/browser-test.sh

demo: $(STAMP)
	$(BIN)/python -m batchveo.cli.demo

demo-vertex: $(STAMP)
	$(BIN)/python -m batchveo.cli.demo --vertex

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache videos demo.db* demo.yaml demo-vertex
