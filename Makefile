# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv (once) and installs the project into it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint clean-venv

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned, so nothing later can resolve to a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videoreid demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/data_loading.py
	$(PY) bench/evaluation.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
