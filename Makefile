# The two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# ngsildclient (PyPI) pins httpx<0.24, which cannot share .venv with our httpx: it gets a venv of
# its own, used only by tests/context/test_interop_client.py (in a subprocess, over real HTTP).
INTEROP       ?= .venv-interop
INTEROP_STAMP := $(INTEROP)/.installed
NGSILDCLIENT  ?= ngsildclient==0.5.2

.PHONY: demo test lint typecheck pytest install bench clean

demo: install
	$(BIN)/pujiang demo

test: lint typecheck pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(INTEROP_STAMP): Makefile
	test -x $(INTEROP)/bin/python || $(PYTHON) -m venv $(INTEROP)
	$(INTEROP)/bin/python -m pip install --quiet --upgrade pip
	$(INTEROP)/bin/python -m pip install --quiet "$(NGSILDCLIENT)"
	touch $(INTEROP_STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install $(INTEROP_STAMP)
	$(BIN)/pytest

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(INTEROP) var .pytest_cache .mypy_cache .ruff_cache
