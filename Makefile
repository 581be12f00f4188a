# `make demo` and `make test` build .venv from the requirements files when it is missing or
# older than them, then run. PYTHON picks the interpreter that creates the venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test ablation clean-venv

$(VENV)/.core-stamp: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.extra-stamp: $(VENV)/.core-stamp requirements-extra.txt
	$(PY) -m pip install -q -r requirements.txt -r requirements-extra.txt
	touch $@

demo: $(VENV)/.core-stamp
	$(PY) tools/demo.py

test: $(VENV)/.extra-stamp
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

ablation: $(VENV)/.core-stamp
	$(PY) tools/ablation.py

clean-venv:
	rm -rf $(VENV)
