# One virtual environment for everything; torch pinned to the CPU wheel on this machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast test-optuna4 lint bench clean

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

## The quick suite and the service's end-to-end tests again on Optuna 4.x (a fresh setup
## installs the newest Optuna the pin allows, 5.x): Optuna 4 goes into its own folder,
## put ahead of the environment's on PYTHONPATH, so the environment is left as it is.
OPTUNA4 := $(VENV)/optuna4
test-optuna4: setup
	$(PY) -m pip install -q --no-deps --upgrade --target $(OPTUNA4) 'optuna>=4.0,<5'
	PYTHONPATH=$(OPTUNA4) $(PY) -c "import optuna; assert optuna.__version__ < '5', optuna.__version__; print('optuna', optuna.__version__)"
	PYTHONPATH=$(OPTUNA4) $(PY) -m pytest -q -p no:cacheprovider -m "not slow"
	PYTHONPATH=$(OPTUNA4) $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_service_e2e.py

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
