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
# See docs/install.md. This image has not been built in this project's CI
# (there is no Docker engine there); tests/packaging/test_dockerfile.py checks
# this file statically.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from: the package metadata and the package.
COPY pyproject.toml README.md ./
COPY operator ./operator

# The wheel of the package itself (setuptools and wheel are fetched into pip's
# isolated build environment and stay there), then the runtime environment: a
# virtualenv without pip, populated by the builder's pip through --python.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --prefer-binary /wheels/stackscaler-*.whl \
 && /opt/venv/bin/python -c "import stackscaler.cli" \
 && /opt/venv/bin/stackscaler run --help >/dev/null


FROM python:3.11-slim

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
