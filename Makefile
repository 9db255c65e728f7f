# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv (if missing) and installs the project with the CPU torch pin.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP_CONSTRAINT ?= constraints-cpu.txt

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINT) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/landscape demo

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check landscape probes tests benchmarks experiments

clean:
	rm -rf $(VENV) .pytest_cache
