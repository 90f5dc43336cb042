"""Tenancy: what each namespace may make the operator touch, set by the platform team.

One operator acts with wide AWS power for every namespace it watches, so what
a namespace may reach is the platform team's decision, read from a file at
start-up (``stackscaler run --tenancy FILE``; the chart's ``tenancy`` value),
never from a custom resource. :meth:`Tenancy.admit` checks one parsed resource
against it before any AWS or Prometheus call is made for it: a denial names
the field, the value, the tenant and the rule, and the resource does nothing.

Without a tenancy file the operator runs single-tenant: every namespace may
use every target, queue, metric and Prometheus server, but a ``roleArn`` in
another AWS account than the operator's own is still denied (deny by default
for anything cross-account). With a file, a namespace that no tenant lists is
denied everything, and every list grants only what it names::

    accountId: "123456789012"        # the operator's account (else sts:GetCallerIdentity)
    tenants:
      - name: shop
        namespaces: [shop, shop-*]   # shell-style patterns on namespace names
        roles:                       # role ARNs the namespace may name in roleArn
          - arn:aws:iam::111122223333:role/stackscaler-shop-*
        defaultRole: arn:aws:iam::123456789012:role/stackscaler-{namespace}
        requireRole: true            # never act as the operator's own identity
        externalId: shop-7f3a        # sent with every AssumeRole for this tenant
        regions: [eu-west-1]
        autoScalingGroups: [shop-*]
        dbInstances: [shop-*]        # ReadReplicaPool sources (instances or clusters)
        dbInstanceClasses: [db.t4g.*, db.r6g.large]
        replicationGroups: [shop-*]
        tables: [shop-*]             # DynamoDB tables (TableCapacity; their indexes too)
        autoScalingGroupTags:        # and the group must carry these tags
          stackscaler.dev/namespace: "{namespace}"
        queues: [shop-*]             # SQS queue names
        cloudWatchNamespaces: [AWS/EC2, AWS/ApplicationELB, Shop/*]
        allowMetricSearch: false     # SEARCH(...) and SELECT ... expressions
        prometheusServers: [http://prometheus.monitoring:9090]
        maxCapacity: 50              # no resource of the tenant may ask for more

Patterns: ``*`` matches any run of characters, ``?`` one; nothing else is
special. A role pattern must spell out its account (12 digits): a wildcard
there would grant every account. ``{namespace}`` in ``defaultRole`` is the
resource's namespace. Kubernetes workloads are always in the resource's own
namespace and need no grant (the operator's RBAC covers that).

This module is pure but for :meth:`TenancySettings.from_file`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from stackscaler.errors import FieldError, PermanentError
from stackscaler.model.spec import (
    AutoScalingGroupTarget,
    CloudWatchSource,
    DBClusterTarget,
    DBInstanceTarget,
    MetricSpec,
    PrometheusSource,
    ReplicationGroupTarget,
    Resource,
    SqsSource,
    TableTarget,
    WorkloadTarget,
)
from stackscaler.model.table import TABLE_METRICS

ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(.+)$")
QUEUE_URL = re.compile(r"^https://[^/]+/(\d{12})/([^/?#]+)$")
_SEARCH = re.compile(r"\b(SEARCH|SELECT)\b", re.IGNORECASE)
_LISTS = (
    "namespaces",
    "roles",
    "regions",
    "autoScalingGroups",
    "dbInstances",
    "dbInstanceClasses",
    "replicationGroups",
    "tables",
    "queues",
    "cloudWatchNamespaces",
    "prometheusServers",
)
_TENANT_FIELDS = (
    "name",
    *_LISTS,
    "defaultRole",
    "requireRole",
    "autoScalingGroupTags",
    "externalId",
    "allowMetricSearch",
    "maxCapacity",
)
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")


class InvalidTenancy(PermanentError):
    """The tenancy settings file is invalid; each problem names its field."""

    def __init__(self, errors: Sequence[FieldError], *, source: str = "") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(e) for e in self.errors))


class NotGranted(PermanentError):
    """A resource names something its namespace was not granted."""

    def __init__(self, field: str, message: str, *, rule: str) -> None:
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Tenant:
    name: str
    namespaces: tuple[str, ...]
    roles: tuple[str, ...] = ()
    default_role: str | None = None
    require_role: bool = False
    external_id: str | None = None
    regions: tuple[str, ...] = ("*",)
    auto_scaling_groups: tuple[str, ...] = ()
    db_instances: tuple[str, ...] = ()
    db_instance_classes: tuple[str, ...] = ()
    replication_groups: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    """DynamoDB table name patterns (a TableCapacity of the table or of its indexes)."""
    queues: tuple[str, ...] = ()
    cloud_watch_namespaces: tuple[str, ...] = ()
    allow_metric_search: bool = False
    prometheus_servers: tuple[str, ...] = ()
    max_capacity: int | None = None
    auto_scaling_group_tags: tuple[tuple[str, str], ...] = ()
    """Tags a group must carry (``{namespace}`` in a value is the resource's namespace)."""

    def serves(self, namespace: str) -> bool:
        return _any(self.namespaces, namespace)


OPEN = Tenant(
    "(single-tenant)",
    ("*",),
    regions=("*",),
    auto_scaling_groups=("*",),
    db_instances=("*",),
    db_instance_classes=("*",),
    replication_groups=("*",),
    tables=("*",),
    queues=("*",),
    cloud_watch_namespaces=("*",),
    allow_metric_search=True,
    prometheus_servers=("*",),
)
"""What every namespace may use without a tenancy file (roles: own account only)."""


@dataclass(frozen=True)
class TenancySettings:
    """The platform team's grants; ``tenants`` empty and ``enforced`` False: single-tenant."""

    tenants: tuple[Tenant, ...] = ()
    account_id: str | None = None
    enforced: bool = False

    def tenant_for(self, namespace: str) -> Tenant | None:
        if not self.enforced:
            return OPEN
        return next((t for t in self.tenants if t.serves(namespace)), None)

    @classmethod
    def from_file(cls, path: str | Path) -> TenancySettings:
        """Read and check a tenancy file (blocking: call at start-up)."""
        p = Path(path)
        try:
            doc = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise InvalidTenancy(
                [FieldError("(file)", f"cannot read: {exc.strerror or exc}")], source=str(p)
            ) from exc
        except yaml.YAMLError as exc:
            raise InvalidTenancy(
                [FieldError("(file)", f"not valid YAML: {exc}")], source=str(p)
            ) from exc
        return parse_tenancy(doc, source=str(p))


def parse_tenancy(doc: Any, *, source: str = "") -> TenancySettings:
    """Typed settings from a parsed document; every problem named by its field."""
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise InvalidTenancy(
            [FieldError("(root)", "must be a mapping with tenants")], source=source
        )
    for key in doc:
        if key not in ("accountId", "tenants"):
            errors.append(FieldError(str(key), "unknown field; expected accountId or tenants"))
    account = doc.get("accountId")
    if account is not None and not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        errors.append(FieldError("accountId", f"must be a 12-digit string, got {account!r}"))
        account = None
    raw = doc.get("tenants")
    if not isinstance(raw, list):
        errors.append(FieldError("tenants", "required: a list of tenants"))
        raw = []
    tenants = []
    names: set[str] = set()
    for i, t in enumerate(raw):
        tenant = _tenant(t, f"tenants[{i}]", errors)
        if tenant is None:
            continue
        if tenant.name in names:
            errors.append(FieldError(f"tenants[{i}].name", f"{tenant.name!r} is used twice"))
        names.add(tenant.name)
        tenants.append(tenant)
    if errors:
        raise InvalidTenancy(errors, source=source)
    return TenancySettings(tuple(tenants), account, enforced=True)


def _strings(value: Any, path: str, errors: list[FieldError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.append(FieldError(path, "must be a list of non-empty strings"))
        return ()
    return tuple(value)


def _tenant(raw: Any, path: str, errors: list[FieldError]) -> Tenant | None:
    if not isinstance(raw, dict):
        errors.append(FieldError(path, "must be a mapping"))
        return None
    before = len(errors)
    for key in raw:
        if key not in _TENANT_FIELDS:
            errors.append(
                FieldError(
                    f"{path}.{key}", f"unknown field; expected one of {', '.join(_TENANT_FIELDS)}"
                )
            )
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        errors.append(FieldError(f"{path}.name", "required: a non-empty string"))
    if "namespaces" not in raw:
        errors.append(FieldError(f"{path}.namespaces", "required: the namespaces it applies to"))
    lists = {k: _strings(raw[k], f"{path}.{k}", errors) for k in _LISTS if k in raw}
    for i, role in enumerate(lists.get("roles", ())):
        m = ROLE_ARN.match(role)
        if m is None:
            errors.append(FieldError(f"{path}.roles[{i}]", f"not an IAM role ARN: {role!r}"))
    default_role = raw.get("defaultRole")
    if default_role is not None and (
        not isinstance(default_role, str)
        or ROLE_ARN.match(default_role.replace("{namespace}", "ns")) is None
    ):
        errors.append(
            FieldError(f"{path}.defaultRole", f"not an IAM role ARN template: {default_role!r}")
        )
    external_id = raw.get("externalId")
    if external_id is not None and not (
        isinstance(external_id, str) and _EXTERNAL_ID.match(external_id)
    ):
        errors.append(
            FieldError(f"{path}.externalId", "must be 2-1224 characters of [A-Za-z0-9+=,.@:/_-]")
        )
    flags = {}
    for key in ("requireRole", "allowMetricSearch"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            errors.append(FieldError(f"{path}.{key}", f"must be true or false, got {value!r}"))
        flags[key] = value is True
    max_capacity = raw.get("maxCapacity")
    if max_capacity is not None and (
        isinstance(max_capacity, bool) or not isinstance(max_capacity, int) or max_capacity < 0
    ):
        errors.append(
            FieldError(f"{path}.maxCapacity", f"must be an integer >= 0, got {max_capacity!r}")
        )
    tags = raw.get("autoScalingGroupTags", {})
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items()
    ):
        errors.append(
            FieldError(f"{path}.autoScalingGroupTags", "must be a mapping of tag key to value")
        )
        tags = {}
    if len(errors) > before:
        return None
    return Tenant(
        name=str(name),
        namespaces=lists["namespaces"],
        roles=lists.get("roles", ()),
        default_role=default_role,
        require_role=flags["requireRole"],
        external_id=external_id,
        regions=lists.get("regions", ("*",)),
        auto_scaling_groups=lists.get("autoScalingGroups", ()),
        db_instances=lists.get("dbInstances", ()),
        db_instance_classes=lists.get("dbInstanceClasses", ()),
        replication_groups=lists.get("replicationGroups", ()),
        tables=lists.get("tables", ()),
        queues=lists.get("queues", ()),
        cloud_watch_namespaces=lists.get("cloudWatchNamespaces", ()),
        allow_metric_search=flags["allowMetricSearch"],
        prometheus_servers=lists.get("prometheusServers", ()),
        max_capacity=max_capacity,
        auto_scaling_group_tags=tuple(sorted(tags.items())),
    )


def _any(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, _glob(p)) for p in patterns)


def _glob(pattern: str) -> str:
    """Only * and ? are special: brackets match themselves."""
    return pattern.replace("[", "[[]")


def role_account(arn: str) -> str | None:
    m = ROLE_ARN.match(arn)
    return m.group(2) if m else None


class Tenancy:
    """Admission of parsed resources against the settings (pure)."""

    def __init__(
        self,
        settings: TenancySettings,
        *,
        account_id: str | None = None,
        normalize_address: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.account_id = settings.account_id or account_id
        """The operator's own account; None when unknown (then every roleArn is denied)."""
        self._normalize: Callable[[str], str] = normalize_address or (lambda a: str(a).rstrip("/"))
        self._servers = self._granted_servers()

    def _granted_servers(self) -> dict[str, tuple[str, ...]]:
        """Each tenant's Prometheus grants in the normalized form, checked once at start-up."""
        out: dict[str, tuple[str, ...]] = {}
        errors: list[FieldError] = []
        for i, tenant in enumerate(self.settings.tenants):
            forms = []
            for j, granted in enumerate(tenant.prometheus_servers):
                try:
                    forms.append(self._normalize(granted))
                except ValueError as exc:
                    errors.append(FieldError(f"tenants[{i}].prometheusServers[{j}]", str(exc)))
            out[tenant.name] = tuple(forms)
        if errors:
            raise InvalidTenancy(errors)
        return out

    def external_id(self, namespace: str) -> str | None:
        tenant = self.settings.tenant_for(namespace)
        return None if tenant is None else tenant.external_id

    def admit(self, resource: Resource) -> Resource:
        """The resource as it will act (defaultRole filled in), or NotGranted."""
        namespace = resource.namespace or "default"
        tenant = self.settings.tenant_for(namespace)
        if tenant is None:
            raise NotGranted(
                "metadata.namespace",
                f"namespace {namespace!r} is not granted by any tenant of the operator's "
                "tenancy settings; ask the platform team to add it",
                rule="tenants[].namespaces",
            )
        resource = self._with_default_role(resource, tenant, namespace)
        _Check(self, tenant, namespace).resource(resource)
        return resource

    def admit_tags(self, resource: Resource, tags: Iterable[tuple[str, str]]) -> None:
        """The target's own tags against the tenant's required ones (NotGranted if missing)."""
        if not isinstance(resource.target, AutoScalingGroupTarget):
            return
        namespace = resource.namespace or "default"
        tenant = self.settings.tenant_for(namespace)
        if tenant is None or not tenant.auto_scaling_group_tags:
            return
        have = dict(tags)
        for key, template in tenant.auto_scaling_group_tags:
            want = template.replace("{namespace}", namespace)
            if have.get(key) != want:
                raise _Check(self, tenant, namespace).deny(
                    "spec.target.name",
                    f"Auto Scaling group {resource.target.name!r} without the tag {key}={want}",
                    "autoScalingGroupTags",
                )

    def _with_default_role(self, resource: Resource, tenant: Tenant, namespace: str) -> Resource:
        if tenant.default_role is None:
            return resource
        role = tenant.default_role.replace("{namespace}", namespace)
        target = resource.target
        if not isinstance(target, WorkloadTarget) and target.role_arn is None:
            target = replace(target, role_arn=role)
        metrics = tuple(_metric_with_role(m, role) for m in resource.scaling.metrics)
        queue = resource.queue
        if queue is not None and queue.source.role_arn is None:
            queue = replace(queue, source=replace(queue.source, role_arn=role))
        return replace(
            resource, target=target, scaling=replace(resource.scaling, metrics=metrics), queue=queue
        )


def _metric_with_role(m: MetricSpec, role: str) -> MetricSpec:
    src = m.source
    if isinstance(src, CloudWatchSource | SqsSource) and src.role_arn is None:
        return replace(m, source=replace(src, role_arn=role))
    return m


class _Check:
    def __init__(self, tenancy: Tenancy, tenant: Tenant, namespace: str) -> None:
        self.tenancy, self.tenant, self.namespace = tenancy, tenant, namespace

    def deny(self, field: str, what: str, rule: str) -> NotGranted:
        return NotGranted(
            field,
            f"{what} is not granted to namespace {self.namespace!r} "
            f"(tenant {self.tenant.name!r}, rule {rule}); ask the platform team to grant it",
            rule=rule,
        )

    def resource(self, r: Resource) -> None:
        t = self.tenant
        if t.max_capacity is not None and r.scaling.max_capacity > t.max_capacity:
            raise self.deny(
                "spec.maxCapacity",
                f"maxCapacity {r.scaling.max_capacity} (the tenant's limit is {t.max_capacity})",
                "maxCapacity",
            )
        self.target(r)
        for i, m in enumerate(r.scaling.metrics):
            if i < self._implicit(r):  # a table's own metrics: granted with the table
                continue
            if isinstance(m.source, SqsSource):
                self.queue(m.source, "spec.queue")
            elif isinstance(m.source, CloudWatchSource):
                self.cloudwatch(m.source, f"spec.metrics[{self._index(r, m, i)}].cloudWatch")
            elif isinstance(m.source, PrometheusSource):
                self.prometheus(m.source, f"spec.metrics[{self._index(r, m, i)}].prometheus")

    @staticmethod
    def _implicit(r: Resource) -> int:
        """How many of the metrics are a table's implicit ones (consumed, throttles), read
        from the table's own AWS/DynamoDB metrics as the target's region and role."""
        return len(TABLE_METRICS) if isinstance(r.target, TableTarget) else 0

    @classmethod
    def _index(cls, r: Resource, m: MetricSpec, i: int) -> int:
        """Index in spec.metrics (the queue metric or a table's, when there are, come first)."""
        return i - (1 if r.queue is not None else 0) - cls._implicit(r)

    def role(self, arn: str | None, field: str) -> str | None:
        """The role's account (None: the operator's own identity)."""
        t = self.tenant
        if arn is None:
            if t.require_role:
                raise self.deny(
                    f"{field}.roleArn",
                    "acting as the operator's own identity (no roleArn)",
                    "requireRole",
                )
            return self.tenancy.account_id
        account = role_account(arn)
        own = self.tenancy.account_id
        if t.default_role is not None and arn == t.default_role.replace(
            "{namespace}", self.namespace
        ):
            return account
        if self.tenancy.settings.enforced:
            if not _any(t.roles, arn):
                raise self.deny(f"{field}.roleArn", f"role {arn!r}", "roles")
            return account
        if own is None:
            raise self.deny(
                f"{field}.roleArn",
                f"role {arn!r} (the operator's own account is unknown, so it cannot tell that "
                "the role is not cross-account; set accountId in the tenancy settings)",
                "accountId",
            )
        if account != own:
            raise self.deny(
                f"{field}.roleArn",
                f"role {arn!r} in account {account}, not the operator's account {own} "
                "(cross-account roles need a tenancy file that grants them)",
                "roles",
            )
        return account

    def region(self, region: str | None, field: str) -> None:
        if region is not None and not _any(self.tenant.regions, region):
            raise self.deny(f"{field}.region", f"region {region!r}", "regions")

    def target(self, r: Resource) -> None:
        target = r.target
        t = self.tenant
        if isinstance(target, WorkloadTarget):
            return
        self.role(target.role_arn, "spec.target")
        self.region(target.region, "spec.target")
        if isinstance(target, AutoScalingGroupTarget):
            patterns, rule, what = t.auto_scaling_groups, "autoScalingGroups", "Auto Scaling group"
        elif isinstance(target, DBInstanceTarget | DBClusterTarget):
            patterns, rule, what = t.db_instances, "dbInstances", "database"
            cls = target.template.instance_class
            if cls is not None and not _any(t.db_instance_classes, cls):
                raise self.deny(
                    "spec.target.replicaTemplate.instanceClass",
                    f"instance class {cls!r}",
                    "dbInstanceClasses",
                )
        elif isinstance(target, ReplicationGroupTarget):
            patterns, rule, what = t.replication_groups, "replicationGroups", "replication group"
        elif isinstance(target, TableTarget):
            patterns, rule, what = t.tables, "tables", "DynamoDB table"
        else:  # pragma: no cover - every target kind is listed above
            raise self.deny("spec.target.kind", f"target kind {target.kind!r}", "targets")
        if not _any(patterns, target.name):
            raise self.deny("spec.target.name", f"{what} {target.name!r}", rule)

    def queue(self, src: SqsSource, field: str) -> None:
        account = self.role(src.role_arn, field)
        self.region(src.region, field)
        name = src.name
        if src.url is not None:
            m = QUEUE_URL.match(src.url)
            if m is None:
                raise self.deny(f"{field}.url", f"queue URL {src.url!r}", "queues")
            url_account, name = m.group(1), m.group(2)
            if account is None or url_account != account:
                raise self.deny(
                    f"{field}.url",
                    f"queue {name!r} in account {url_account} (the identity used is in "
                    f"{account or 'an unknown account'})",
                    "roles",
                )
        if name is None or not _any(self.tenant.queues, name):
            raise self.deny(f"{field}.name", f"queue {name!r}", "queues")

    def cloudwatch(self, src: CloudWatchSource, field: str) -> None:
        self.role(src.role_arn, field)
        self.region(src.region, field)
        t = self.tenant
        searches = src.expression is not None and _SEARCH.search(src.expression)
        if searches and not t.allow_metric_search:
            raise self.deny(
                f"{field}.expression",
                "a SEARCH or SELECT expression (it can read any metric of the account)",
                "allowMetricSearch",
            )
        if src.namespace is not None and not _any(t.cloud_watch_namespaces, src.namespace):
            raise self.deny(
                f"{field}.namespace",
                f"CloudWatch namespace {src.namespace!r}",
                "cloudWatchNamespaces",
            )
        for i, q in enumerate(src.queries):
            if not _any(t.cloud_watch_namespaces, q.namespace):
                raise self.deny(
                    f"{field}.queries[{i}].namespace",
                    f"CloudWatch namespace {q.namespace!r}",
                    "cloudWatchNamespaces",
                )

    def prometheus(self, src: PrometheusSource, field: str) -> None:
        granted = self.tenant.prometheus_servers
        if granted == ("*",):
            return
        try:
            address = self.tenancy._normalize(src.server_address)
        except ValueError:
            address = None
        forms = self.tenancy._servers.get(self.tenant.name, ())
        if address is None or not any(_prefix(address, g) for g in forms):
            raise self.deny(
                f"{field}.serverAddress",
                f"Prometheus server {src.server_address!r}",
                "prometheusServers",
            )


def _prefix(address: str, granted: str) -> bool:
    """``granted`` is ``address`` or a path prefix of it at a ``/`` boundary."""
    return address == granted or address.startswith(granted.rstrip("/") + "/")
