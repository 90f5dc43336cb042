# stackscaler developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit crds clean

# Create the virtualenv and install the package with its test extra; re-run
# when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job on an embedded default (a preview until the end-to-end demo lands).
demo: $(STAMP)
	$(BIN)/stackscaler demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict -p stackscaler

unit: $(STAMP)
	$(BIN)/pytest -q

# Regenerate crds/*.yaml from the Python source of truth (stackscaler.model.crds).
crds: $(STAMP)
	$(BIN)/stackscaler crds --output-dir crds --docs docs/api.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
