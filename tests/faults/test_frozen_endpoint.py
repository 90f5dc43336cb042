"""An AWS endpoint that stops answering, and a roleArn that froze every tier.

Finding 4 of issue 10: with the AWS endpoint frozen for 64 s every status
said ``Ready=True Reconciled``. Now every tick has a deadline; past it the
tick says ``Ready=False TickLate``, the operator stays ready and alive (its
ticks complete: restarting it would not bring AWS back), and it scales again
once AWS answers.

Finding 1: one WebTier with a ``roleArn`` deadlocked the AWS client cache;
every AWS call of every resource hung, /healthz stayed 200, and SIGTERM did
not stop the process. Now the role's tier and a tier without a role both
scale, and SIGTERM stops the operator cleanly.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    OperatorProcess,
    Recorder,
    condition,
    eventually,
    suffix,
)
from tests.faults.specs import cpu_web_tier
from tests.integration.aws_faults import ThreadedFaultProxy
from tests.integration.conftest import MotoServer

pytestmark = pytest.mark.controlplane

ROLE = "arn:aws:iam::123456789012:role/stackscaler-web"  # moto's account: the operator's own


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[ThreadedFaultProxy]:
    p = ThreadedFaultProxy(moto_server.endpoint)
    p.start()
    try:
        yield p
    finally:
        p.proxy.thaw()
        p.stop()


def probe(op: OperatorProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(op.url + path, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_frozen_endpoint_is_reported_late_and_recovers(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    namespace: str,
    proxy: ThreadedFaultProxy,
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 50.0)  # on target
    kube.apply(cpu_web_tier(namespace, "web", group))
    rec: Recorder = recorder("WebTier", namespace, "web")
    op = operator(namespace, env={"STACKSCALER_AWS_ENDPOINT_URL": proxy.proxy.endpoint})

    def reconciled() -> None:
        ready = condition(kube.status("WebTier", namespace, "web"), "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Reconciled"), ready

    eventually(reconciled, what="Ready=True before the freeze")
    proxy.proxy.freeze(60)
    frozen = time.time()

    def late() -> dict[str, Any]:
        ready = condition(kube.status("WebTier", namespace, "web"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "TickLate"), ready
        return ready

    ready = eventually(late, what="Ready=False TickLate while AWS is frozen")
    assert "within 10 s" in ready["message"]  # 0.8 x 5 s, raised to the 10 s floor
    # ticks complete (late): the operator is ready and alive, nothing to restart
    assert probe(op, "/readyz") == 200
    assert probe(op, "/healthz") == 200
    assert aws.desired(group) == 2  # read from moto directly, not through the frozen proxy

    proxy.proxy.thaw()
    aws.cpu(group, 100.0)
    thawed = time.time()

    def scaled() -> None:
        eventually(reconciled, what="Ready=True after the thaw", timeout=5)
        assert aws.desired(group) > 2

    eventually(scaled, what="scaling again once AWS answers", timeout=120)
    during = [t for t in rec.since(frozen) if t.seen < thawed]
    assert all(condition(t.status, "Ready")["status"] == "False" for t in during[1:]), [
        condition(t.status, "Ready") for t in during
    ]
    assert probe(op, "/healthz") == 200


def test_a_role_arn_tier_never_freezes_the_operator(
    *, aws: Aws, kube: Kube, operator: Any, namespace: str
) -> None:
    with_role, without = f"role-{suffix()}", f"plain-{suffix()}"
    for group in (with_role, without):
        aws.group_with_template(group, desired=2, max_size=50)
        aws.cpu(group, 100.0)
    kube.apply(
        cpu_web_tier(namespace, "with-role", with_role, roleArn=ROLE),
        cpu_web_tier(namespace, "without", without),
    )
    op = operator(namespace)

    def both_scaled() -> None:
        assert aws.desired(with_role) == 4
        assert aws.desired(without) == 4

    eventually(both_scaled, what="the roleArn tier and the plain tier both scaled out")

    def both_ready() -> None:
        # AWS changes before the status that records the action is written
        for name in ("with-role", "without"):
            ready = condition(kube.status("WebTier", namespace, name), "Ready")
            assert ready["status"] == "True", (name, ready)

    eventually(both_ready, what="both tiers Ready after their scale-out was recorded")
    assert probe(op, "/healthz") == 200
    assert op.stop() == 0  # SIGTERM stops it, cleanly, within the fixture's 20 s
    assert not op.problems()
