# stackscaler developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit crds controlplane clean

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

test: $(STAMP) controlplane lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict -p stackscaler

unit: $(STAMP)
	$(BIN)/pytest -q

# Build kube-apiserver and etcd from the upstream Go modules pinned in
# tests/controlplane/go.mod into .cache/controlplane/<versions>/ (no-op when built).
# Without Go it says how to get it; the tests that need it then skip, except under
# CI=true, where they fail.
controlplane: $(STAMP)
	@if command -v go >/dev/null 2>&1; then $(BIN)/stackscaler dev controlplane build; \
	elif [ "$$CI" = "true" ]; then echo "CI=true but Go is missing: cannot build the control plane" >&2; exit 1; \
	else echo "Go is not installed: tests that need the control plane will be skipped (see README)" >&2; fi

# Regenerate crds/*.yaml from the Python source of truth (stackscaler.model.crds).
crds: $(STAMP)
	$(BIN)/stackscaler crds --output-dir crds --docs docs/api.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
