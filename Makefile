# `make demo`, `make test`, `make ablation` and `make science` (re)build .venv when it cannot be
# trusted, then run.
# PYTHON picks the interpreter that creates the venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spade-stamp
PYTEST_ARGS ?=
# requirements.txt first: torch pinned exactly (on the development and CI machines
# `torch==2.13.0` resolves to the CPU wheel on their disk, and pyproject's range then installs
# nothing more; without the pin pip would take the newest torch in range from PyPI, a multi-GB
# CUDA build) and the project; then the extras for the mask and ONNX tools and pytest.
# A trusted .venv is a real folder whose python runs and whose stamp names this checkout and the
# dependency lists it was built from; anything else (a symlink, a copy from another checkout or
# machine, a venv of older lists) is removed and built again.
VENV_ID := $(CURDIR) $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-64)
VENV_OK := $(shell [ ! -L $(VENV) ] && $(PY) -c '' 2>/dev/null && \
                   [ "$$(cat $(STAMP) 2>/dev/null)" = "$(VENV_ID)" ] && echo yes)

.PHONY: demo test ablation science venv clean-venv

venv:
ifneq ($(VENV_OK),yes)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e '.[masks,onnx,dev]'
	echo '$(VENV_ID)' > $(STAMP)
endif

demo: venv
	$(PY) tools/demo.py

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

ablation: venv
	$(PY) tools/ablation.py

science: venv
	$(PY) tools/science.py --jobs 2

clean-venv:
	rm -rf $(VENV)
