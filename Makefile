# On a fresh machine: `make optimizers` (the main job), `make demo` and `make test`;
# `make lint` and `make typecheck` are the other checks CI runs (.ci/run).
# Each creates .venv (if missing) and installs the project with the CPU torch pin.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP_CONSTRAINT ?= constraints-cpu.txt
LINT_PATHS = landscape probes tests benchmarks experiments examples docs/*.py

.PHONY: install optimizers experiments quick demo test lint typecheck docs clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINT) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

optimizers: install
	OMP_NUM_THREADS=1 $(VENV)/bin/landscape sweep experiments/optimizers.toml --out optimizers.h5 --workers 2

# every experiment of experiments/README.md, each with its report (<name>_report/); the .h5
# files and reports go under EXPERIMENTS_OUT (default: the repository root, where *.h5 and
# *_report/ are ignored). Run it again after an interruption: what is done is not redone.
EXPERIMENTS_OUT ?= .
EXPERIMENTS = optimizers large_batch random_labels hessian_outliers class_means \
	mode_connectivity bad_minima mnist1d_baselines grokking edge_of_stability adaptive_eos \
	matrix_sensing matrix_sensing_undersampled max_margin diagonal_nets
experiments: install
	@for e in $(EXPERIMENTS); do \
	  echo "== $$e"; \
	  OMP_NUM_THREADS=1 $(VENV)/bin/landscape sweep experiments/$$e.toml \
	    --out $(EXPERIMENTS_OUT)/$$e.h5 --workers 2 --quiet || exit 1; \
	done

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

# The documentation site (mkdocs.yml): every example of examples/ draws its figure into
# docs/gallery/ (its files into build/gallery/), every public name must have a docstring,
# then a strict build into site/: a broken reference, link or docstring fails it.
EXAMPLES = $(wildcard examples/*.py)
docs: install
	@mkdir -p docs/gallery build/gallery
	@for script in $(EXAMPLES); do \
		name=$$(basename $$script .py); echo "example $$name"; \
		OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) $$script build/gallery > build/gallery/$$name.log 2>&1 \
			|| { tail -20 build/gallery/$$name.log; exit 1; }; \
		cp build/gallery/$$name.png docs/gallery/; \
	done
	$(PY) docs/check_docstrings.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
