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

.PHONY: all install demo test lint typecheck pytest test-hosts test-pythons test-matrix test-physics bench dist docs screenshots clean

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
	$(PY) -m ruff check ptychopinn_ptychodus tests benchmarks docs

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
	$(PY) tests/matrix.py hosts hosts-gui pythons

test: lint typecheck pytest test-matrix

test-physics: install
	$(PY) tests/matrix.py physics

bench: install
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_paired.py

# A wheel and an sdist in dist/, checked by twine; then the sdist alone is built,
# installed into its own venv and the test suite is run from the sdist's tree.
dist: install
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PY) tests/matrix.py sdist

# The documentation: Sphinx + MyST in its own venv (.venvs/docs, rebuilt when docs/requirements.txt
# changes), with this package as a wheel and Ptychodus 1.7.0 so autodoc imports the host modules too.
# Warnings are errors. The GUI screenshots are committed under docs/_static/screenshots
# (`make screenshots` retakes them with the real-GUI tests); see docs/development.md.
DOCS_VENV := .venvs/docs
DOCS_PY   := $(DOCS_VENV)/bin/python

$(DOCS_VENV)/.deps: docs/requirements.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_PY) -m pip install --quiet --upgrade pip
	$(DOCS_PY) -m pip install --quiet -r docs/requirements.txt 'ptychodus==1.7.0'
	touch $@

$(DOCS_VENV)/.installed: $(DOCS_VENV)/.deps $(SOURCES)
	$(DOCS_PY) -m pip install --quiet --no-deps --force-reinstall .
	touch $@

docs: $(DOCS_VENV)/.installed
	rm -rf build/docs
	$(DOCS_PY) -m sphinx -W --keep-going -b html docs build/docs/html
	@echo "docs: build/docs/html/index.html"

# Retake the GUI screenshots the docs show: the real-GUI tests write them into a scratch folder,
# and the ones the GUI how-to uses are copied into docs/_static/screenshots (committed, small).
SHOTS_TMP := build/screenshots
screenshots: install
	rm -rf $(SHOTS_TMP)
	cd tests && TEST_ARTIFACTS_DIR=$(CURDIR)/$(SHOTS_TMP) ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. -q -m gui test_gui.py
	$(PY) docs/_tools/copy_screenshots.py $(SHOTS_TMP) docs/_static/screenshots

clean:
	rm -rf $(VENV) build dist demo_output test-artifacts .pytest_cache .mypy_cache .ruff_cache
