# One virtual environment for everything; torch pinned to the CPU wheel on this machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[worker,dev]'
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded default (SQLite file + local Ray): digits, 30 trials.
demo: setup
	$(VENV)/bin/automl tune sklearn:digits --target target --trials 30 --storage sqlite:///automl.db

## Every test, slow end-to-end ones included (what CI runs).
test: setup
	$(PY) -m pytest -q -p no:cacheprovider

## The quick suite: no Ray, no whole studies.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/epoch_speed.py --dataset letter
	$(PY) bench/epoch_speed.py --dataset digits

clean:
	rm -rf $(VENV) automl.db *.egg-info
