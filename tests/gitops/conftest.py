"""The GitOps tests use the end-to-end fixtures (tests/e2e/conftest.py), re-exported here."""

from __future__ import annotations

from tests.e2e.conftest import (
    api_client,
    aws,
    aws_env,
    controlplane,
    kube,
    kubectl,
    moto_server,
    namespace,
    operator,
    recorder,
)

__all__ = [
    "api_client",
    "aws",
    "aws_env",
    "controlplane",
    "kube",
    "kubectl",
    "moto_server",
    "namespace",
    "operator",
    "recorder",
]
