# Two entry points, both from nothing: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Small tensors run fastest single-threaded, and 2-thread OpenMP pools thrash when processes share 2 cores.
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/scorekit demo --out outputs/demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/samplers.py

clean:
	rm -rf $(VENV) outputs build *.egg-info
