# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv,
# install this package as a normal (non-editable) wheel so that Ptychodus finds
# the plugin bridge, and then run. `make test` also runs the matrix (Ptychodus
# 1.5.1 and 1.6.0, Python 3.12 and 3.13) in venvs under .venvs/, built once and
# reused; `make test-physics` reconstructs with pty-chi (a ~6.5 GB venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SOURCES := pyproject.toml $(shell find ptychopinn_ptychodus -name "*.py")
PYTEST := cd tests && ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. --ignore=physics
export QT_QPA_PLATFORM ?= offscreen
export MPLBACKEND ?= Agg

.PHONY: all install demo test lint typecheck pytest test-hosts test-pythons test-matrix test-physics bench dist clean

all: test

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet '.[gui,test,dask]' matplotlib
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
	$(PYTEST) -m 'not gui' .
	$(PYTEST) -m gui .

test-hosts: install
	$(PY) tests/matrix.py hosts

test-pythons: install
	$(PY) tests/matrix.py pythons

# both at once: their four venvs are prepared concurrently
test-matrix: install
	$(PY) tests/matrix.py hosts pythons

test: lint typecheck pytest test-matrix

test-physics: install
	$(PY) tests/matrix.py physics

bench: install
	$(PY) benchmarks/bench_convert.py

# A wheel and an sdist in dist/, checked by twine; then the sdist alone is built,
# installed into its own venv and the test suite is run from the sdist's tree.
dist: install
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PY) tests/matrix.py sdist

clean:
	rm -rf $(VENV) build dist demo_output test-artifacts .pytest_cache .mypy_cache .ruff_cache
