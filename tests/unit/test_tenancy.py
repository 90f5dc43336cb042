"""Tenancy: the platform team's grants, and what a namespace outside them is told."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stackscaler.actuators.asg import group_capacity
from stackscaler.claims import Claimant, Claims, target_key
from stackscaler.metrics.prometheus import normalize_address
from stackscaler.model.spec import parse_resource
from stackscaler.tenancy import (
    InvalidTenancy,
    NotGranted,
    Tenancy,
    TenancySettings,
    parse_tenancy,
)
from tests.unit.test_reconcile import body

OWN = "123456789012"
OTHER = "999988887777"

SETTINGS: dict[str, Any] = {
    "accountId": OWN,
    "tenants": [
        {
            "name": "shop",
            "namespaces": ["shop", "shop-*"],
            "roles": [f"arn:aws:iam::{OTHER}:role/stackscaler-shop"],
            "externalId": "shop-7f3a",
            "regions": ["us-east-1"],
            "autoScalingGroups": ["shop-*"],
            "dbInstances": ["shop-db"],
            "dbInstanceClasses": ["db.t4g.*"],
            "replicationGroups": ["shop-cache"],
            "tables": ["shop-sessions"],
            "queues": ["shop-jobs"],
            "cloudWatchNamespaces": ["AWS/EC2", "Shop/*"],
            "prometheusServers": ["http://prometheus.monitoring:9090"],
            "maxCapacity": 50,
        },
        {"name": "blog", "namespaces": ["blog"], "autoScalingGroups": ["blog-*"]},
    ],
}


def resource(namespace: str = "shop", **spec: Any) -> Any:
    doc = body(**spec)
    doc["metadata"]["namespace"] = namespace
    return parse_resource(doc)


def web(namespace: str = "shop", target: dict[str, Any] | None = None, **spec: Any) -> Any:
    metrics = spec.pop(
        "metrics",
        [
            {
                "name": "cpu",
                "target": {"value": 50},
                "cloudWatch": {
                    "namespace": "AWS/EC2",
                    "metricName": "CPUUtilization",
                    "dimensions": [{"name": "AutoScalingGroupName", "value": "shop-web"}],
                },
            }
        ],
    )
    return resource(
        namespace,
        target=target or {"kind": "AutoScalingGroup", "name": "shop-web"},
        metrics=metrics,
        **spec,
    )


@pytest.fixture
def tenancy() -> Tenancy:
    return Tenancy(parse_tenancy(copy.deepcopy(SETTINGS)))


def denied(tenancy: Tenancy, r: Any) -> NotGranted:
    with pytest.raises(NotGranted) as info:
        tenancy.admit(r)
    return info.value


def test_a_granted_resource_is_admitted(tenancy: Tenancy) -> None:
    r = web()
    assert tenancy.admit(r) == r


@pytest.mark.parametrize(
    ("r", "field", "rule"),
    [
        (lambda: web("team-x"), "metadata.namespace", "tenants[].namespaces"),
        (
            lambda: web(target={"kind": "AutoScalingGroup", "name": "blog-web"}),
            "spec.target.name",
            "autoScalingGroups",
        ),
        (
            lambda: web(
                target={
                    "kind": "AutoScalingGroup",
                    "name": "shop-web",
                    "roleArn": "arn:aws:iam::444455556666:role/stackscaler-shop",
                }
            ),
            "spec.target.roleArn",
            "roles",
        ),
        (
            lambda: web(
                target={"kind": "AutoScalingGroup", "name": "shop-web", "region": "eu-west-1"}
            ),
            "spec.target.region",
            "regions",
        ),
        (lambda: web(maxCapacity=500), "spec.maxCapacity", "maxCapacity"),
        (
            lambda: web(
                metrics=[
                    {
                        "name": "p",
                        "target": {"value": 5},
                        "prometheus": {
                            "serverAddress": "http://metadata.internal:80/latest",
                            "query": "up",
                        },
                    }
                ]
            ),
            "spec.metrics[0].prometheus.serverAddress",
            "prometheusServers",
        ),
        (
            lambda: web(
                metrics=[
                    {
                        "name": "c",
                        "target": {"value": 5},
                        "cloudWatch": {"namespace": "AWS/RDS", "metricName": "CPUUtilization"},
                    }
                ]
            ),
            "spec.metrics[0].cloudWatch.namespace",
            "cloudWatchNamespaces",
        ),
        (
            lambda: web(
                metrics=[
                    {
                        "name": "s",
                        "target": {"value": 5},
                        "cloudWatch": {
                            "expression": "SEARCH('{AWS/SQS} MetricName=\"x\"', 'Sum', 60)"
                        },
                    }
                ]
            ),
            "spec.metrics[0].cloudWatch.expression",
            "allowMetricSearch",
        ),
    ],
    ids=[
        "namespace",
        "group",
        "role-of-another-account",
        "region",
        "max-capacity",
        "internal-url",
        "cloudwatch-namespace",
        "search",
    ],
)
def test_what_is_not_granted_is_denied_naming_field_and_rule(
    tenancy: Tenancy, r: Any, field: str, rule: str
) -> None:
    err = denied(tenancy, r())
    assert err.field == field and err.rule == rule
    assert str(err).startswith(f"{field}: ")
    assert "ask the platform team" in str(err)


def test_granted_cross_account_role_and_prometheus_path_prefix(tenancy: Tenancy) -> None:
    role = f"arn:aws:iam::{OTHER}:role/stackscaler-shop"
    tenancy.admit(web(target={"kind": "AutoScalingGroup", "name": "shop-web", "roleArn": role}))
    tenancy.admit(
        web(
            metrics=[
                {
                    "name": "p",
                    "target": {"value": 5},
                    "prometheus": {
                        "serverAddress": "http://prometheus.monitoring:9090/",
                        "query": "up",
                    },
                }
            ]
        )
    )
    assert tenancy.external_id("shop-eu") == "shop-7f3a"
    assert tenancy.external_id("blog") is None


def test_a_look_alike_prometheus_host_is_not_a_prefix(tenancy: Tenancy) -> None:
    err = denied(
        tenancy,
        web(
            metrics=[
                {
                    "name": "p",
                    "target": {"value": 5},
                    "prometheus": {
                        "serverAddress": "http://prometheus.monitoring:9090.evil.example",
                        "query": "up",
                    },
                }
            ]
        ),
    )
    assert err.rule == "prometheusServers"


def test_single_tenant_denies_only_other_accounts() -> None:
    open_ = Tenancy(TenancySettings(), account_id=OWN)
    own_role = f"arn:aws:iam::{OWN}:role/stackscaler-x"
    open_.admit(
        web("anything", target={"kind": "AutoScalingGroup", "name": "g", "roleArn": own_role})
    )
    err = denied(
        open_,
        web(
            "anything",
            target={
                "kind": "AutoScalingGroup",
                "name": "g",
                "roleArn": f"arn:aws:iam::{OTHER}:role/stackscaler-x",
            },
        ),
    )
    assert "not the operator's account" in str(err)
    unknown = Tenancy(TenancySettings())  # the account could not be found out
    assert "accountId" in str(
        denied(
            unknown, web("a", target={"kind": "AutoScalingGroup", "name": "g", "roleArn": own_role})
        )
    )


def test_default_role_is_filled_in_and_require_role_denies_the_operator_identity() -> None:
    settings = parse_tenancy(
        {
            "accountId": OWN,
            "tenants": [
                {
                    "name": "t",
                    "namespaces": ["team-*"],
                    "defaultRole": f"arn:aws:iam::{OWN}:role/stackscaler-{{namespace}}",
                    "requireRole": True,
                    "autoScalingGroups": ["*"],
                    "cloudWatchNamespaces": ["AWS/EC2"],
                }
            ],
        }
    )
    admitted = Tenancy(settings).admit(web("team-a"))
    assert admitted.target.role_arn == f"arn:aws:iam::{OWN}:role/stackscaler-team-a"
    assert admitted.scaling.metrics[0].source.role_arn == admitted.target.role_arn
    settings = parse_tenancy(
        {
            "tenants": [
                {"name": "t", "namespaces": ["*"], "requireRole": True, "autoScalingGroups": ["*"]}
            ]
        }
    )
    assert denied(Tenancy(settings), web("x")).rule == "requireRole"


def test_the_settings_file_is_checked_field_by_field(tmp_path: Path) -> None:
    f = tmp_path / "tenancy.yaml"
    f.write_text(
        """
accountId: 12345
tenants:
  - name: a
    namespaces: [a]
    roles: ["arn:aws:iam::*:role/x"]
    externalId: "has spaces"
    maxCapacity: -1
    autoScalingGroup: [typo]
  - namespaces: [b]
"""
    )
    with pytest.raises(InvalidTenancy) as info:
        TenancySettings.from_file(f)
    text = str(info.value)
    for expected in (
        "accountId: must be a 12-digit string",
        "tenants[0].roles[0]: not an IAM role ARN",
        "tenants[0].externalId",
        "tenants[0].maxCapacity",
        "tenants[0].autoScalingGroup: unknown field",
        "tenants[1].name: required",
    ):
        assert expected in text


def test_claims_the_oldest_owns_and_release_hands_over() -> None:
    claims = Claims()
    r = web()
    key = target_key(r, "us-east-1")
    young = Claimant("2026-06-01T00:00:00Z", "u2", "WebTier shop/b")
    old = Claimant("2026-01-01T00:00:00Z", "u1", "WebTier shop/a")
    claims.claim(key, young)
    claims.claim(key, old)
    assert claims.owner(key) == old
    claims.release("u1")
    assert claims.owner(key) == young
    other = target_key(web(target={"kind": "AutoScalingGroup", "name": "shop-api"}), "us-east-1")
    claims.claim(other, young)  # moving to another target releases the first
    assert claims.owner(key) is None and claims.owner(other) == young


def test_a_group_must_carry_the_tenants_tags() -> None:
    settings = parse_tenancy(
        {
            "tenants": [
                {
                    "name": "t",
                    "namespaces": ["shop"],
                    "autoScalingGroups": ["*"],
                    "cloudWatchNamespaces": ["AWS/EC2"],
                    "autoScalingGroupTags": {"stackscaler.dev/namespace": "{namespace}"},
                }
            ]
        }
    )
    tenancy = Tenancy(settings)
    r = tenancy.admit(web())
    tenancy.admit_tags(r, [("stackscaler.dev/namespace", "shop"), ("team", "x")])
    with pytest.raises(NotGranted) as info:
        tenancy.admit_tags(r, [("stackscaler.dev/namespace", "blog")])
    assert info.value.rule == "autoScalingGroupTags"
    assert "stackscaler.dev/namespace=shop" in str(info.value)


def test_group_capacity_reports_the_groups_tags() -> None:
    group = {
        "DesiredCapacity": 2,
        "MinSize": 0,
        "MaxSize": 5,
        "Instances": [],
        "Tags": [{"Key": "stackscaler.dev/namespace", "Value": "shop", "ResourceId": "g"}],
    }
    assert group_capacity(group).tags == (("stackscaler.dev/namespace", "shop"),)


def test_prometheus_grants_compare_in_the_normalized_form_and_bad_ones_fail_at_start() -> None:
    doc = copy.deepcopy(SETTINGS)
    doc["tenants"][0]["prometheusServers"] = ["http://127.0.0.1:9090"]
    tenancy = Tenancy(parse_tenancy(doc), normalize_address=normalize_address)

    def prom(address: str) -> Any:
        return web(
            metrics=[
                {
                    "name": "p",
                    "target": {"value": 5},
                    "prometheus": {"serverAddress": address, "query": "up"},
                }
            ]
        )

    tenancy.admit(prom("http://127.1:9090/"))  # another spelling of the granted address
    assert denied(tenancy, prom("http://2130706433:9091")).rule == "prometheusServers"
    doc["tenants"][0]["prometheusServers"] = ["http://user:pw@prom:9090"]
    with pytest.raises(InvalidTenancy) as info:
        Tenancy(parse_tenancy(doc), normalize_address=normalize_address)
    assert "tenants[0].prometheusServers[0]" in str(info.value)


def _table(name: str, **target: Any) -> Any:
    doc = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "TableCapacity",
        "metadata": {"name": "sessions-read", "namespace": "shop"},
        "spec": {
            "target": {"kind": "Table", "name": name, "dimension": "Read", **target},
            "maxCapacity": 40,
            "metrics": [
                {
                    "name": "latency",
                    "target": {"value": 20},
                    "cloudWatch": {
                        "namespace": "AWS/DynamoDB",
                        "metricName": "SuccessfulRequestLatency",
                    },
                }
            ],
        },
    }
    return parse_resource(doc)


def test_a_table_is_granted_by_name_its_own_metrics_with_it(tenancy: Tenancy) -> None:
    """The table's implicit AWS/DynamoDB metrics come with the table grant; a metric the
    spec adds still needs its CloudWatch namespace granted (the field path counts only
    the spec's own metrics)."""
    err = denied(tenancy, _table("shop-orders", region="us-east-1"))
    assert (err.field, err.rule) == ("spec.target.name", "tables")
    err = denied(tenancy, _table("shop-sessions", region="us-east-1"))
    assert (err.field, err.rule) == ("spec.metrics[0].cloudWatch.namespace", "cloudWatchNamespaces")
    granted = copy.deepcopy(SETTINGS)
    granted["tenants"][0]["cloudWatchNamespaces"].append("AWS/DynamoDB")
    admitted = Tenancy(parse_tenancy(granted)).admit(_table("shop-sessions", region="us-east-1"))
    assert [m.name for m in admitted.scaling.metrics] == ["consumed", "throttles", "latency"]
