# syntax=docker/dockerfile:1
#
# stackscaler operator image: `docker build -t stackscaler:0.1.0 .`
#
# Two stages. The builder turns the source into a wheel and installs it, with
# its runtime dependencies only (no `test` or `dev` extra), into a virtualenv
# at /opt/venv that has no pip, setuptools or wheel of its own. The final stage
# is a fresh python:3.11-slim with that virtualenv copied in, nothing else from
# the build: no compilers, no build tools, no tests, no source tree.
#
# The image runs as uid/gid 10001 and writes nothing outside /tmp, so it works
# with readOnlyRootFilesystem: true (mount an emptyDir at /tmp).
#
# BASE_IMAGE is the image both stages start from: python:3.11-slim unless you
# say otherwise. The tests build this Dockerfile with buildah on a base made
# from Debian bookworm's own packages (python3, python3-venv, ca-certificates),
# because no container registry is reachable where they run
# (tests/e2e/test_image.py; docs/install.md). Any base with Python 3.11+
# and its venv module works.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from: the package metadata and the package.
COPY pyproject.toml README.md ./
COPY operator ./operator

# A throwaway build virtualenv holds the pip that does the work (the base's
# own Python may have no pip, or refuse installs as externally managed). It
# builds the wheel of the package itself (setuptools and wheel are fetched into
# pip's isolated build environment and stay there), then populates the runtime
# environment, a virtualenv without pip, through --python. Behind a proxy or a
# private index, lend pip its configuration for this step only, as a build
# secret that never reaches a layer:
#   docker build --secret id=pipconf,src=$HOME/.config/pip/pip.conf .
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf \
    python3 -m venv /build \
 && /build/bin/python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python3 -m venv --without-pip /opt/venv \
 && /build/bin/python -m pip --python /opt/venv/bin/python install --prefer-binary /wheels/stackscaler-*.whl \
 && /opt/venv/bin/python -c "import stackscaler.cli" \
 && /opt/venv/bin/stackscaler run --help >/dev/null


FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
# Set the repository URL at build time: --build-arg SOURCE=https://...
ARG SOURCE=""

LABEL org.opencontainers.image.title="stackscaler" \
      org.opencontainers.image.description="Kubernetes operator that autoscales every elastic part of an AWS web stack: EC2 Auto Scaling groups, SQS worker pools, RDS read replicas, ElastiCache replicas and Kubernetes workloads." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# No .pyc written at run time (read-only root filesystem), logs unbuffered.
# HOME points at /tmp so that nothing that looks for a home directory
# (e.g. ~/.aws/config, which is optional) needs a writable one elsewhere.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    HOME=/tmp

RUN groupadd --system --gid 10001 stackscaler \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin stackscaler

# Owned by root, readable by everyone: the operator cannot modify its own code.
COPY --from=builder /opt/venv /opt/venv

# /metrics, /healthz, /readyz (stackscaler run --metrics-port, default 8080).
EXPOSE 8080

# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001

ENTRYPOINT ["stackscaler", "run"]
# Default arguments for in-cluster use; a pod's `args:` replaces them.
CMD ["--log-format", "json"]
