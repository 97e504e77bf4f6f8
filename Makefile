# drypipe: `make demo` runs a real example pipeline end to end; `make test` runs the test suite.
#
# PYTHON is the interpreter (default: the first python3 on PATH). `make demo` runs in the venv
# VENV (default .venv, the one the README creates), made from $(PYTHON) when it does not exist,
# with only drypipe installed in it (pip install -e .). The other targets install the `test`
# extra into $(PYTHON) itself: activate a venv first to keep them out of your system Python.
PYTHON ?= python3
VENV ?= .venv
DEMO_DIR ?= demo-instance
DEMO_PYTHON = $(VENV)/bin/python

.PHONY: install demo lint test test-fast bench docs clean

install:
	$(PYTHON) -m pip install -q -e '.[test]'

$(DEMO_PYTHON):
	$(PYTHON) -m venv $(VENV)

demo: $(DEMO_PYTHON)
	$(DEMO_PYTHON) -m pip install -q -e .
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cp examples/data/chimp.fasta $(DEMO_DIR)/
	$(DEMO_PYTHON) -m drypipe run -p examples.chunked_fasta:pipeline -i $(DEMO_DIR)
	$(DEMO_PYTHON) -m drypipe status -i $(DEMO_DIR)
	@echo
	@echo "Results of the demo pipeline are in $(DEMO_DIR)/output/ (one directory per task);"
	@echo "task scripts, state markers and logs are in $(DEMO_DIR)/.drypipe/<task>/."
	@echo "Final result ($(DEMO_DIR)/output/analyze-all-work-pieces/final-result-file):"
	@cat $(DEMO_DIR)/output/analyze-all-work-pieces/final-result-file

# ruff and mypy (configured in pyproject.toml) over the packages; `make test` runs it first.
lint: install
	$(PYTHON) -m ruff check
	$(PYTHON) -m mypy

test: install lint
	$(PYTHON) -m pytest tests -q

test-fast: install
	$(PYTHON) -m pytest tests -q -x --ignore=tests/slurm --ignore=tests/ssh --ignore=tests/dendro

bench: install
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# The user guide (docs/, mkdocs.yml) as a static site in site/; mkdocs is installed here only.
docs:
	$(PYTHON) -m pip install -q -e '.[docs]'
	$(PYTHON) -m mkdocs build --strict

clean:
	rm -rf $(DEMO_DIR) build site *.egg-info .pytest_cache
