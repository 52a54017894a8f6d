# Two entry points, both from nothing: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Small tensors run fastest single-threaded, and 2-thread OpenMP pools thrash when processes share 2 cores.
export OMP_NUM_THREADS ?= 1

.PHONY: setup browser demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/scorekit demo --out outputs/demo

# headless Chromium for tests/test_demo.py (opens the demo's index.html): Debian's package, installed when missing
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: setup browser
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/samplers.py

clean:
	rm -rf $(VENV) outputs build *.egg-info
