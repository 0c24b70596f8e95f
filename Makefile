# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv,
# install this package as a normal (non-editable) wheel so that Ptychodus finds
# the plugin bridge, and then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SOURCES := pyproject.toml $(wildcard ptychopinn_ptychodus/*.py)
export QT_QPA_PLATFORM ?= offscreen
export MPLBACKEND ?= Agg

.PHONY: all install demo test lint typecheck pytest bench clean

all: test

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet '.[test]'
	touch $@

$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PIP) install --quiet --no-deps --force-reinstall .
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m ptychopinn_ptychodus.demo demo_output

lint: install
	$(PY) -m ruff check ptychopinn_ptychodus tests benchmarks

typecheck: install
	$(PY) -m mypy

# The GUI tests run in their own process: a Qt application is best kept alone.
pytest: install
	cd tests && ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. -m 'not gui' .
	cd tests && ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. -m gui .

test: lint typecheck pytest

bench: install
	$(PY) benchmarks/bench_convert.py

clean:
	rm -rf $(VENV) build dist demo_output test-artifacts .pytest_cache .mypy_cache .ruff_cache
