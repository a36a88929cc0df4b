# One-command workflows. Each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test fuzz demo lint bench docs clean

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

# The fuzz suite at scale: FUZZ x the quick profile's 290 problems (default 10: 2,900),
# seed FUZZ_SEED; every failure prints its one-line reproducer.
FUZZ ?= 10
FUZZ_SEED ?= 0
fuzz: $(STAMP)
	CVXIMPLICIT_FUZZ=$(FUZZ) CVXIMPLICIT_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest -n 2 -q tests/fuzz

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python examples/quickstart.py
	MPLBACKEND=Agg $(BIN)/python examples/lasso_tuning.py
	MPLBACKEND=Agg $(BIN)/python examples/torch_layer.py
	MPLBACKEND=Agg $(BIN)/python examples/jax_layer.py
	MPLBACKEND=Agg $(BIN)/python examples/deq_digits.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright

bench: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python benchmarks/core.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/layers.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/batch_scaling.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/warm_start.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/lasso_tuning.py
	$(BIN)/python benchmarks/jax_layers.py
	$(BIN)/python benchmarks/implicit.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache
