# One-command workflows. Each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test fuzz demo lint bench docs docs-check gallery chromium clean

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

# The built site in headless Chromium at 1300 and 400 px: console errors, failed resources,
# images, internal links, overflow of the main column (tests/test_site.py runs it too).
docs-check: docs chromium
	$(BIN)/python docs/check_site.py site

# Run every example at full size and record its figures, run time and output in
# docs/gallery/ (committed; the docs build makes the gallery page from these records).
gallery: $(STAMP)
	$(BIN)/python docs/gen_gallery.py

# Debian's chromium, for the browser check; installed with apt-get when run as root.
chromium:
	@command -v $${CHROMIUM:-chromium} >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing: install Debian's chromium package or set CHROMIUM=/path/to/chrome"; \
	    exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache
