# On a fresh machine: `make optimizers` (the main job), `make demo` and `make test`;
# `make lint` and `make typecheck` are the other checks CI runs (.ci/run).
# Each creates .venv (if missing) and installs the project with the CPU torch pin.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP_CONSTRAINT ?= constraints-cpu.txt
LINT_PATHS = landscape probes tests benchmarks experiments

.PHONY: install optimizers quick demo test lint typecheck clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINT) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

optimizers: install
	$(VENV)/bin/landscape sweep experiments/optimizers.toml --out optimizers.h5 --workers 2

quick: install
	$(VENV)/bin/landscape sweep experiments/quick.toml --out quick.h5

demo: install
	$(VENV)/bin/landscape train demo.h5 --model mlp --optimizer adamw --lr 0.01 --opt weight_decay=0.5 --opt schedule=cosine --epochs 40 --run adamw-mlp --replace
	$(VENV)/bin/landscape train demo.h5 --model cnn1d --optimizer adam --lr 0.03 --opt schedule=cosine --epochs 30 --run adam-cnn --replace
	$(VENV)/bin/landscape train demo.h5 --model cnn1d --optimizer sam --opt 'base={name="sgd", lr=0.1, momentum=0.9}' --opt rho=0.05 --opt schedule=cosine --epochs 30 --run sam-cnn --replace
	$(VENV)/bin/landscape info demo.h5

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# mypy's files and settings: [tool.mypy] in pyproject.toml
typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
