"""docs/iam-policy.json grants exactly the AWS actions the operator calls.

The scanner reads the package's source with ``ast`` (nothing is imported or
run) and collects every AWS operation the code can reach:

* ``<caller>.call("<service>", "<Operation>", ..., region=..., resource=...)``,
  the AwsCaller entry point of every metric source and actuator. Service and
  operation are string literals or names bound to them in the enclosing
  function or at module level (``op = "A" if x else "B"``, ``_, op = (..., "A")
  if x else (..., "B")``, ``for op in ("A", "B")``). AwsCaller dispatches with
  ``getattr(client, xform_name(operation))``; these call sites are what feeds it.
* direct boto3 client calls: a name bound to ``<x>.client("<service>")`` or
  ``<x>.get("<service>", ...)`` (ClientCache.get), then called as
  ``name.<snake_case_operation>(...)`` or ``name.get_paginator("<op>")``:
  ``sts.assume_role(...)`` -> ``sts:AssumeRole``. The snake-case method is
  mapped back to its API operation with botocore's own service model, which
  also rejects operations that do not exist.

Whatever the scanner cannot resolve statically is a failure, not a skip: an
AWS call whose operation is computed at run time would escape the check.

Two exceptions, each listed with its reason: DEPENDENT_ACTIONS are authorized
by AWS for a call the code makes (``sts:TagSession`` for the session tags of
``sts:AssumeRole``), NO_PERMISSION_NEEDED are called but need no grant
(``sts:GetCallerIdentity``).

IAM action names: for the eight services used here, every IAM action is named
after its API operation under the service prefix (``rds:CreateDBInstanceReadReplica``
for ``CreateDBInstanceReadReplica``), as the Service Authorization Reference
lists them; a new service must be added to IAM_PREFIX on purpose.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

from stackscaler.actuators.rds_replicas import OWNER_TAG, OWNER_UID_TAG
from stackscaler.aws import RoleRef, default_assume_role_params

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "stackscaler"
POLICY = ROOT / "docs" / "iam-policy.json"
INSTALL_DOC = ROOT / "docs" / "install.md"

IAM_PREFIX: dict[str, str] = {
    # boto3 service name -> IAM service prefix
    "autoscaling": "autoscaling",
    "cloudwatch": "cloudwatch",
    "dynamodb": "dynamodb",
    "ec2": "ec2",
    "elasticache": "elasticache",
    "rds": "rds",
    "sqs": "sqs",
    "sts": "sts",
}

DEPENDENT_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    # action the code never calls itself -> (the called actions that need it, why)
    "rds:AddTagsToResource": (
        frozenset({"rds:CreateDBInstanceReadReplica", "rds:CreateDBInstance"}),
        "RDS authorizes the Tags of a create call as rds:AddTagsToResource (tag-on-create)",
    ),
    "sts:TagSession": (
        frozenset({"sts:AssumeRole"}),
        "STS authorizes the session Tags of an AssumeRole call (stackscaler always sends "
        "the namespace tag) as sts:TagSession",
    ),
}

NO_PERMISSION_NEEDED: dict[str, str] = {
    # action the code calls -> why no policy has to grant it
    "sts:GetCallerIdentity": "STS answers it for every identity, even under an explicit Deny "
    "(GetCallerIdentity in the STS API Reference: no permissions are required)",
}

EXCLUDED: dict[str, str] = {
    # package sub-directory -> why its AWS calls need no permission in production
    "demo": "the demo drives moto on loopback with fake credentials and an explicit "
    "endpoint; it never reaches AWS and is not part of `stackscaler run`",
}

ASG_MANAGED_TAG = "stackscaler.dev/managed"
NON_OPERATIONS = frozenset({"close", "can_paginate"})
"""boto3 client methods that make no API call."""


# --- the scanner ------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    action: str
    where: str


@dataclass
class Scan:
    found: list[Found] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def actions(self) -> set[str]:
        return {f.action for f in self.found}

    def where(self, action: str) -> list[str]:
        return sorted(f.where for f in self.found if f.action == action)

    def extend(self, other: Scan) -> None:
        self.found.extend(other.found)
        self.problems.extend(other.problems)


@functools.cache
def _botocore() -> Any:
    return botocore.session.get_session()


@functools.cache
def _services() -> frozenset[str]:
    return frozenset(_botocore().get_available_services())


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """snake_case method -> API operation, from botocore's model of ``service``."""
    model = _botocore().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


_Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef


class _Module:
    def __init__(self, source: str, name: str) -> None:
        self.name = name
        self.tree = ast.parse(source, filename=name)
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        self.scan = Scan()
        self.clients: dict[tuple[int, str], frozenset[str] | None] = {}
        """(id of scope, or 0 for ``self.<attr>``, name) -> services of a bound boto3 client."""

    # -- static values -------------------------------------------------------------

    def scope(self, node: ast.AST) -> _Scope:
        current = self.parent.get(node)
        while current is not None:
            if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef):
                return current
            current = self.parent.get(current)
        return self.tree

    def _bindings(self, scope: _Scope, name: str) -> list[tuple[str, ast.AST, int | None]]:
        """How ``name`` is bound in ``scope``: (kind, value, index in a tuple target)."""
        nodes = ast.walk(scope) if scope is not self.tree else iter(self.tree.body)
        out: list[tuple[str, ast.AST, int | None]] = []
        value: ast.AST
        for node in nodes:
            if isinstance(node, ast.Assign):
                targets, value, kind = node.targets, node.value, "value"
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
                targets, value, kind = [node.target], node.value, "value"
            elif isinstance(node, ast.For | ast.AsyncFor):
                targets, value, kind = [node.target], node.iter, "each"
            elif isinstance(node, ast.AugAssign):
                targets, value, kind = [node.target], node, "opaque"
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id == name:
                    out.append((kind, value, None))
                elif isinstance(target, ast.Tuple | ast.List):
                    for i, element in enumerate(target.elts):
                        if isinstance(element, ast.Name) and element.id == name:
                            out.append((kind, value, i))
        return out

    def strings(
        self,
        node: ast.AST,
        at: ast.AST,
        index: int | None = None,
        seen: frozenset[str] = frozenset(),
    ) -> frozenset[str] | None:
        """The strings ``node`` (element ``index`` of it) can be, or None when not static."""
        if isinstance(node, ast.IfExp):
            body = self.strings(node.body, at, index, seen)
            orelse = self.strings(node.orelse, at, index, seen)
            return None if body is None or orelse is None else body | orelse
        if index is not None:
            if isinstance(node, ast.Tuple | ast.List) and index < len(node.elts):
                if any(isinstance(e, ast.Starred) for e in node.elts):
                    return None
                return self.strings(node.elts[index], at, None, seen)
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return frozenset({node.value})
        if isinstance(node, ast.Name) and node.id not in seen:
            return self.name_strings(node.id, at, seen | {node.id})
        return None

    def name_strings(self, name: str, at: ast.AST, seen: frozenset[str]) -> frozenset[str] | None:
        scope = self.scope(at)
        for candidate in (scope, self.tree) if scope is not self.tree else (self.tree,):
            bindings = self._bindings(candidate, name)
            if not bindings:
                continue
            out: frozenset[str] = frozenset()
            for kind, value, index in bindings:
                if kind == "opaque":
                    return None
                if kind == "each":
                    if not isinstance(value, ast.Tuple | ast.List | ast.Set):
                        return None
                    parts = [self.strings(e, at, index, seen) for e in value.elts]
                else:
                    parts = [self.strings(value, at, index, seen)]
                for part in parts:
                    if part is None:
                        return None
                    out |= part
            return out
        return None

    # -- AWS calls -----------------------------------------------------------------

    def where(self, node: ast.AST) -> str:
        return f"{self.name}:{getattr(node, 'lineno', '?')}"

    def add(self, service: str, operation: str, node: ast.AST) -> None:
        if service not in IAM_PREFIX:
            self.scan.problems.append(
                f"{self.where(node)}: AWS service {service!r} is not in IAM_PREFIX; "
                "add its IAM prefix (and its actions to docs/iam-policy.json)"
            )
            return
        if operation not in _operations(service).values():
            self.scan.problems.append(
                f"{self.where(node)}: {service} has no operation {operation!r} in botocore's model"
            )
            return
        self.scan.found.append(Found(f"{IAM_PREFIX[service]}:{operation}", self.where(node)))

    def caller_call(self, node: ast.Call) -> None:
        services = self.strings(node.args[0], node)
        operations = self.strings(node.args[1], node)
        if services is None or operations is None:
            self.scan.problems.append(
                f"{self.where(node)}: cannot tell statically which AWS "
                f"{'service' if services is None else 'operation'} this call makes; "
                "pass a string literal or a name bound to string literals"
            )
            return
        for service in sorted(services):
            for operation in sorted(operations):
                self.add(service, operation, node)

    def factory(self, node: ast.AST) -> tuple[bool, frozenset[str] | None]:
        """(is it a boto3 client factory call, the services it makes a client for)."""
        if not isinstance(node, ast.Call) or not node.args:
            return False, None
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        services = self.strings(node.args[0], node)
        if name == "client":
            return True, services
        # ClientCache.get(service, region, role): a one-argument get() is a dict's
        # (``status.get("forecast")`` names no client even though Forecast is a service)
        if name == "get" and len(node.args) >= 2 and services and services <= _services():
            return True, services
        return False, None

    def bind_clients(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            is_factory, services = self.factory(node.value)
            if not is_factory:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    self.clients[(id(self.scope(node)), target.id)] = services
                elif isinstance(target, ast.Attribute):
                    self.clients[(0, target.attr)] = services

    def receiver(self, node: ast.expr) -> tuple[bool, frozenset[str] | None]:
        """(is ``node`` a boto3 client, its services)."""
        if isinstance(node, ast.Name):
            for scope in (self.scope(node), self.tree):
                key = (id(scope), node.id)
                if key in self.clients:
                    return True, self.clients[key]
            return False, None
        if isinstance(node, ast.Attribute) and (0, node.attr) in self.clients:
            return True, self.clients[(0, node.attr)]
        return self.factory(node)

    def client_call(self, node: ast.Call) -> None:
        assert isinstance(node.func, ast.Attribute)
        is_client, services = self.receiver(node.func.value)
        method = node.func.attr
        if not is_client or method in NON_OPERATIONS:
            return
        if services is None:
            self.scan.problems.append(
                f"{self.where(node)}: {method}() on a boto3 client whose service "
                "cannot be told statically"
            )
            return
        for service in sorted(services):
            operations = _operations(service) if service in _services() else {}
            if method == "get_paginator":
                names = self.strings(node.args[0], node) if node.args else None
                if names is None:
                    self.scan.problems.append(f"{self.where(node)}: paginator name not static")
                    continue
                for snake in sorted(names):
                    self.add(service, operations.get(snake, snake), node)
            elif method in operations:
                self.add(service, operations[method], node)
            else:
                self.scan.problems.append(
                    f"{self.where(node)}: {method}() is not an operation of {service}"
                )

    def run(self) -> Scan:
        self.bind_clients()
        calls = [
            node
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
            assert isinstance(node.func, ast.Attribute)
            if (
                node.func.attr == "call"
                and len(node.args) >= 2
                and any(k.arg in ("region", "resource") for k in node.keywords)
            ):
                self.caller_call(node)
            else:
                self.client_call(node)
        return self.scan


def scan_source(source: str, name: str = "<source>") -> Scan:
    return _Module(source, name).run()


def package_sources(root: Path = PACKAGE) -> dict[str, str]:
    """Every module of the package but the EXCLUDED directories, by relative path."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in EXCLUDED:
            continue
        out[relative.as_posix()] = path.read_text()
    return out


def scan_sources(sources: Mapping[str, str]) -> Scan:
    scan = Scan()
    for name, source in sources.items():
        scan.extend(scan_source(source, name))
    return scan


# --- the policy -------------------------------------------------------------------

_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
_SID = re.compile(r"^[A-Za-z0-9]+$")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_problems(policy: Any) -> list[str]:
    """What is wrong with the shape of an identity policy document (empty when fine)."""
    if not isinstance(policy, dict):
        return ["the policy is not a JSON object"]
    problems = []
    if set(policy) != {"Version", "Statement"}:
        problems.append(f"top-level keys must be Version and Statement, got {sorted(policy)}")
    if policy.get("Version") != "2012-10-17":
        problems.append(f"Version must be 2012-10-17, got {policy.get('Version')!r}")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "Statement must be a non-empty list"]
    sids: set[str] = set()
    granted: set[str] = set()
    for i, statement in enumerate(statements):
        at = f"Statement[{i}]"
        if not isinstance(statement, dict):
            problems.append(f"{at} is not an object")
            continue
        at = f"{at} ({statement.get('Sid')})"
        if unknown := set(statement) - _STATEMENT_KEYS:
            problems.append(f"{at}: unexpected keys {sorted(unknown)}")
        for key in ("Sid", "Effect", "Action", "Resource"):
            if key not in statement:
                problems.append(f"{at}: missing {key}")
        sid = statement.get("Sid")
        if not isinstance(sid, str) or not _SID.match(sid):
            problems.append(f"{at}: Sid must be alphanumeric")
        elif sid in sids:
            problems.append(f"{at}: duplicate Sid")
        else:
            sids.add(sid)
        if statement.get("Effect") != "Allow":
            problems.append(f"{at}: Effect must be Allow")
        actions = _as_list(statement.get("Action", []))
        if not actions or not all(isinstance(a, str) and _ACTION.match(a) for a in actions):
            problems.append(f"{at}: Action must be service:Operation names, no wildcards")
        for action in actions:
            if action in granted:
                problems.append(f"{at}: {action} is granted by more than one statement")
            granted.add(action)
        resources = _as_list(statement.get("Resource", []))
        if not resources or not all(
            isinstance(r, str) and (r == "*" or r.startswith("arn:")) for r in resources
        ):
            problems.append(f"{at}: Resource must be * or ARNs")
        condition = statement.get("Condition", {})
        if not isinstance(condition, dict) or not all(
            isinstance(keys, dict)
            and all(isinstance(v, str | list) for v in keys.values())
            and keys
            for keys in condition.values()
        ):
            problems.append(f"{at}: Condition must map operators to {{key: value(s)}}")
    return problems


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    return {
        action
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
    }


def expected_actions(called: Iterable[str]) -> set[str]:
    called = set(called)
    return (called - NO_PERMISSION_NEEDED.keys()) | {
        action for action, (needed_by, _) in DEPENDENT_ACTIONS.items() if needed_by & called
    }


def compare(scan: Scan, granted: set[str]) -> str | None:
    """A message listing both directions of a mismatch, or None when they agree."""
    expected = expected_actions(scan.actions)
    missing = sorted(expected - granted)
    extra = sorted(granted - expected)
    if not missing and not extra:
        return None
    lines = ["docs/iam-policy.json does not match the AWS actions the code calls."]
    lines.append(f"Called by the code but not granted ({len(missing)}):")
    for action in missing:
        why = scan.where(action) or [DEPENDENT_ACTIONS.get(action, (None, "?"))[1]]
        lines.append(f"  - {action}  ({', '.join(why)})")
    lines.append(f"Granted but never called ({len(extra)}):")
    lines.extend(f"  - {action}" for action in extra)
    return "\n".join(lines)


def statements_for(policy: Mapping[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if action in _as_list(s["Action"])]


def condition_keys(statement: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for keys in statement.get("Condition", {}).values() for k, v in keys.items()}


@functools.cache
def _package_scan() -> Scan:
    return scan_sources(package_sources())


def _policy() -> dict[str, Any]:
    return json.loads(POLICY.read_text())  # type: ignore[no-any-return]


# --- the real code and the real policy ----------------------------------------------


def test_policy_document_shape() -> None:
    assert policy_problems(_policy()) == []


def test_scanner_resolves_every_aws_call_in_the_package() -> None:
    assert _package_scan().problems == []


def test_scanner_finds_the_known_call_sites() -> None:
    scan = _package_scan()
    # a literal call, the operations chosen through a tuple-unpacked IfExp, and
    # the direct boto3 call of the STS client
    assert "actuators/asg.py" in " ".join(scan.where("autoscaling:SetDesiredCapacity"))
    assert scan.where("elasticache:IncreaseReplicaCount") == scan.where(
        "elasticache:DecreaseReplicaCount"
    )
    assert scan.where("elasticache:IncreaseReplicaCount")
    assert [w.split(":")[0] for w in scan.where("sts:AssumeRole")] == ["aws/clients.py"]


def test_policy_grants_exactly_the_actions_the_code_calls() -> None:
    message = compare(_package_scan(), granted_actions(_policy()))
    assert message is None, message


def test_write_actions_are_scoped_by_resource_or_condition() -> None:
    for statement in _policy()["Statement"]:
        writes = [
            a
            for a in _as_list(statement["Action"])
            if not a.split(":")[1].startswith(("Describe", "Get", "List"))
        ]
        if writes:
            assert statement["Resource"] != "*" or statement.get("Condition"), (
                f"{statement['Sid']} grants {writes} on every resource without a condition"
            )


def test_replica_ownership_conditions_use_the_tags_the_actuator_writes() -> None:
    policy = _policy()
    for action in ("rds:CreateDBInstanceReadReplica", "rds:CreateDBInstance"):
        for statement in statements_for(policy, action):
            keys = condition_keys(statement)
            assert f"aws:RequestTag/{OWNER_UID_TAG}" in keys, statement["Sid"]
            assert f"aws:RequestTag/{OWNER_TAG}" in keys, statement["Sid"]
    for statement in statements_for(policy, "rds:AddTagsToResource"):
        assert f"aws:RequestTag/{OWNER_UID_TAG}" in condition_keys(statement)
    [delete] = statements_for(policy, "rds:DeleteDBInstance")
    assert f"aws:ResourceTag/{OWNER_UID_TAG}" in condition_keys(delete)


def test_assume_role_and_tag_session_are_granted_on_the_same_roles() -> None:
    """The default AssumeRole carries session tags: without sts:TagSession it is denied."""
    tags = default_assume_role_params(RoleRef("arn:aws:iam::123456789012:role/r", "ns"))["Tags"]
    assert tags, "the default AssumeRole sends no session tags: sts:TagSession is not needed"
    [statement] = statements_for(_policy(), "sts:AssumeRole")
    assert set(_as_list(statement["Action"])) == {"sts:AssumeRole", "sts:TagSession"}
    assert statement["Resource"] != "*"


def test_asg_writes_need_the_documented_managed_tag() -> None:
    policy = _policy()
    for action in ("autoscaling:SetDesiredCapacity", "autoscaling:UpdateAutoScalingGroup"):
        [statement] = statements_for(policy, action)
        assert condition_keys(statement) == {f"autoscaling:ResourceTag/{ASG_MANAGED_TAG}": "true"}
    assert f"{ASG_MANAGED_TAG}=true" in INSTALL_DOC.read_text().replace('"', "")


def test_table_actions_only_on_tagged_tables_never_on_every_resource() -> None:
    """DescribeTable and UpdateTable (a GSI's capacity too) on table ARNs carrying the
    documented managed tag: no other DynamoDB action, no other resource."""
    policy = _policy()
    dynamo = {a for a in granted_actions(policy) if a.startswith("dynamodb:")}
    assert dynamo == {"dynamodb:DescribeTable", "dynamodb:UpdateTable"}
    for action in dynamo:
        [statement] = statements_for(policy, action)
        assert statement["Resource"] == "arn:aws:dynamodb:*:*:table/*"
        assert condition_keys(statement) == {f"aws:ResourceTag/{ASG_MANAGED_TAG}": "true"}
    assert "dynamodb tag-resource" in INSTALL_DOC.read_text()


def test_excluded_demo_only_reaches_an_explicit_endpoint() -> None:
    """The exclusion holds only while every boto3 client of the demo gets endpoint_url."""
    for directory in EXCLUDED:
        modules = sorted((PACKAGE / directory).rglob("*.py"))
        assert modules, f"EXCLUDED names {directory}/, which no longer exists"
        for path in modules:
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "client"
                ):
                    endpoint = [k for k in node.keywords if k.arg == "endpoint_url"]
                    assert endpoint, f"{path.name}:{node.lineno}: boto3 client without endpoint_url"
                    value = endpoint[0].value
                    assert not (isinstance(value, ast.Constant) and value.value is None)


# --- the scanner and the comparison can fail ------------------------------------------

SYNTHETIC = """
import boto3

async def scale(caller, grow):
    await caller.call("autoscaling", "SetDesiredCapacity", region=None, resource="g")
    op = "IncreaseReplicaCount" if grow else "DecreaseReplicaCount"
    await caller.call("elasticache", op, region=None, resource="r")
    _, read = (1, "GetQueueAttributes") if grow else (2, "GetQueueUrl")
    await caller.call("sqs", read, region=None, resource="q")
    for name in ("DescribeDBInstances", "DescribeDBClusters"):
        await caller.call("rds", name, region=None, resource="d")

class Direct:
    def __init__(self, session):
        self.cw = session.client("cloudwatch")

    def run(self, cache):
        sts = cache.get("sts", "us-east-1", None)
        sts.get_caller_identity()
        boto3.client("sqs").delete_message(QueueUrl="u", ReceiptHandle="r")
        self.cw.get_paginator("get_metric_data")
        self.cw.close()
        settings = {}
        settings.get("region").upper()
"""


def test_scanner_resolves_literals_names_loops_and_direct_clients() -> None:
    scan = scan_source(SYNTHETIC, "synthetic.py")
    assert scan.problems == []
    assert scan.actions == {
        "autoscaling:SetDesiredCapacity",
        "elasticache:IncreaseReplicaCount",
        "elasticache:DecreaseReplicaCount",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusters",
        "sts:GetCallerIdentity",
        "sqs:DeleteMessage",
        "cloudwatch:GetMetricData",
    }


def test_scanner_reports_what_it_cannot_check() -> None:
    source = """
async def f(caller, operation, session, service):
    await caller.call("autoscaling", operation, region=None, resource="g")
    await caller.call("s3", "GetObject", region=None, resource="b")
    await caller.call("autoscaling", "SetDesiredCapcity", region=None, resource="g")
    session.client(service).describe_instances()
    session.client("sqs").not_an_operation()
"""
    problems = scan_source(source, "bad.py").problems
    assert len(problems) == 5, problems
    assert "bad.py:3: cannot tell statically which AWS operation" in problems[0]
    assert "'s3' is not in IAM_PREFIX" in problems[1]
    assert "no operation 'SetDesiredCapcity'" in problems[2]
    assert "describe_instances() on a boto3 client whose service" in problems[3]
    assert "not_an_operation() is not an operation of sqs" in problems[4]


def test_comparison_fails_on_a_new_call_and_on_an_unused_grant() -> None:
    sources = dict(package_sources())
    sources["new.py"] = (
        "async def purge(caller):\n"
        '    await caller.call("sqs", "PurgeQueue", region=None, resource="q")\n'
    )
    policy = copy.deepcopy(_policy())
    policy["Statement"][0]["Action"].append("rds:RebootDBInstance")
    assert policy_problems(policy) == []
    message = compare(scan_sources(sources), granted_actions(policy))
    assert message is not None
    missing, extra = message.split("Granted but never called")
    assert "sqs:PurgeQueue  (new.py:2)" in missing
    assert "rds:RebootDBInstance" in extra
    assert "rds:RebootDBInstance" not in missing
    assert "sqs:PurgeQueue" not in extra


def test_dependent_action_is_expected_only_with_the_calls_that_need_it() -> None:
    scan = _package_scan()
    without_creates = Scan(
        [f for f in scan.found if f.action not in DEPENDENT_ACTIONS["rds:AddTagsToResource"][0]]
    )
    granted = granted_actions(_policy())
    message = compare(without_creates, granted)
    assert message is not None
    extra = message.split("Granted but never called")[1]
    assert "rds:AddTagsToResource" in extra
    assert "rds:CreateDBInstanceReadReplica" in extra


def test_policy_shape_check_rejects_broken_documents() -> None:
    good = _policy()
    broken = copy.deepcopy(good)
    broken["Version"] = "2008-10-17"
    broken["Statement"][1]["Sid"] = broken["Statement"][0]["Sid"]
    broken["Statement"][2]["Action"] = ["autoscaling:*"]
    del broken["Statement"][3]["Resource"]
    broken["Statement"][4]["Effect"] = "Deny"
    problems = policy_problems(broken)
    assert any("Version must be 2012-10-17" in p for p in problems)
    assert any("duplicate Sid" in p for p in problems)
    assert any("no wildcards" in p for p in problems)
    assert any("missing Resource" in p for p in problems)
    assert any("Effect must be Allow" in p for p in problems)
    assert policy_problems({"Version": "2012-10-17", "Statement": []}) == [
        "Statement must be a non-empty list"
    ]
