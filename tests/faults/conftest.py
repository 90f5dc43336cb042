"""The fault suite uses the end-to-end fixtures (tests/e2e/conftest.py), re-exported here.

Also re-exported: the integration fixtures ``moto`` and ``boto`` (a clean moto
and plain boto3 clients, for the wire-level tests), and one fixture of its
own, ``aws_proxy``: a :class:`~tests.faults.support.ScriptedProxy` in front of
the session's moto, to start the operator against
(``operator(ns, env={"STACKSCALER_AWS_ENDPOINT_URL": aws_proxy.endpoint})``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import (
    api_client,
    aws,
    aws_env,
    controlplane,
    exporter_fixture,
    kube,
    kubectl,
    moto_server,
    namespace,
    operator,
    prometheus_server,
    recorder,
)
from tests.faults.support import CountingProxy, ProxyThread, ScriptedProxy
from tests.integration.conftest import MotoServer, boto, moto

__all__ = [
    "api_client",
    "aws",
    "aws_env",
    "boto",
    "controlplane",
    "exporter_fixture",
    "kube",
    "kubectl",
    "moto",
    "moto_server",
    "namespace",
    "operator",
    "prometheus_server",
    "recorder",
]


@pytest.fixture
def aws_proxy(moto_server: MotoServer) -> Iterator[ScriptedProxy]:
    """A scripted fault proxy in front of moto (request after request, the real wire)."""
    thread = ProxyThread(ScriptedProxy(moto_server.endpoint))
    thread.start()
    try:
        yield thread.proxy
    finally:
        thread.stop()


@pytest.fixture
def counting_proxies(moto_server: MotoServer) -> Iterator[Callable[[str], CountingProxy]]:
    """``counting_proxies(name)``: a new :class:`~tests.faults.support.CountingProxy` in
    front of moto (one per operator replica); every one is stopped at teardown."""
    threads: list[ProxyThread] = []

    def make(name: str) -> CountingProxy:
        proxy = CountingProxy(moto_server.endpoint, name)
        thread = ProxyThread(proxy)
        thread.start()
        threads.append(thread)
        return proxy

    try:
        yield make
    finally:
        for thread in threads:
            thread.stop()
