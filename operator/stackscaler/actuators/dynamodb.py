"""DynamoDB provisioned capacity: one dimension (read or write) of a table or a GSI.

**Observe.** DescribeTable, one call per table and tick however many of its
resources are due (the table's read and write, each index's): the requests
of one (region, role, table) are coalesced. The capacity is the provisioned
ReadCapacityUnits or WriteCapacityUnits of the table, or of the index named by
``target.index``; every unit serves at once (no warm-up). While the table is
not ACTIVE (or the index not ACTIVE) the target is busy: nothing is sent
until it is. NumberOfDecreasesToday and LastDecreaseDateTime of the table (or
the index: each has its own budget) become ``Capacity.decreases``, the
policy's :class:`~stackscaler.policy.budget.DecreaseBudget`. A table in
on-demand mode (PAY_PER_REQUEST) has no capacity to scale: a permanent error
naming the fix.

**Apply.** UpdateTable with ProvisionedThroughput (a GSI: its
GlobalSecondaryIndexUpdates entry), which takes both read and write units.
Changes of one table (or index) that arrive together, the read and the write
resource deciding in the same tick, are merged into one UpdateTable: one
decrease of the day's budget rather than two, and no second call refused
because the first left the table UPDATING. Right before the call the table is
described again, so the dimension no resource changes is sent as it is now,
never as an older observation saw it.

**Refusals.** ResourceInUseException (the table is being updated) is busy:
nothing changed, the next tick tries again. LimitExceededException on a
decrease means DynamoDB counts the day's decreases as spent (another client
spent one, or its count differs from DescribeTable's): :class:`DecreaseRefused`,
reported once by the reconciler (the Ready condition and one Event), and not
sent again for this table (or index) until the next decrease is earned by
AWS's rule (:meth:`DecreaseBudget.next_earned` from the refusal, at least an
hour); an increase is still sent meanwhile. The caller's retry mode does not
retry it (:mod:`stackscaler.aws.retries`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.warmup import Clock, aware, utcnow
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.batching import Coalescer
from stackscaler.errors import (
    DecreaseRefused,
    PermanentError,
    StackscalerError,
    TargetNotFound,
)
from stackscaler.model.spec import Resource, TableTarget
from stackscaler.model.table import TableDimension
from stackscaler.policy.budget import HOUR_SECONDS, DecreaseBudget

UPDATE_QUIET = 0.3
"""Seconds without another change of the same table after which its UpdateTable goes."""
UPDATE_WINDOW = 1.5
"""Seconds after the first change of a table its UpdateTable goes at the latest: the
resources of one table tick together (same poll interval, a 0.2 s jitter) and their
metrics come back in the same GetMetricData call, so their changes arrive within this."""
ACTIVE = "ACTIVE"
ON_DEMAND = "PAY_PER_REQUEST"

TableKey = tuple[str, RoleRef | None, str]
"""(region, role, table name)."""
UnitKey = tuple[str, RoleRef | None, str, str | None]
"""(region, role, table name, index name or None): what one UpdateTable entry changes
and what has its own decrease budget."""


@dataclass(frozen=True)
class Units:
    """The provisioned throughput of a table or an index, as DescribeTable reports it."""

    read: int
    write: int
    status: str
    decreases_today: int
    last_decrease: float | None
    """LastDecreaseDateTime, epoch seconds."""

    def of(self, dimension: TableDimension) -> int:
        return self.read if dimension is TableDimension.READ else self.write

    @property
    def budget(self) -> DecreaseBudget:
        return DecreaseBudget(self.decreases_today, self.last_decrease)


@dataclass(frozen=True)
class TableView:
    """One DescribeTable answer, read once."""

    name: str
    status: str
    billing_mode: str
    table: Units
    indexes: Mapping[str, Units]

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> TableView:
        status = str(doc.get("TableStatus", ""))
        billing = str((doc.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED")
        indexes = {
            str(ix.get("IndexName")): _units(ix.get("ProvisionedThroughput"), ix.get("IndexStatus"))
            for ix in doc.get("GlobalSecondaryIndexes") or ()
            if ix.get("IndexName")
        }
        return cls(
            name=str(doc.get("TableName", "")),
            status=status,
            billing_mode=billing,
            table=_units(doc.get("ProvisionedThroughput"), status),
            indexes=indexes,
        )

    def units(self, index: str | None) -> Units:
        if index is None:
            return self.table
        found = self.indexes.get(index)
        if found is None:
            have = ", ".join(sorted(self.indexes)) or "none"
            raise TargetNotFound(
                f"table {self.name} has no global secondary index {index} (it has {have})"
            )
        return found

    def busy(self, index: str | None) -> str | None:
        """Why no change can be sent now: the table or the index is not ACTIVE."""
        why = []
        if self.status != ACTIVE:
            why.append(f"table {self.name} is {self.status or 'in an unknown state'}")
        if index is not None and self.units(index).status != ACTIVE:
            why.append(f"index {index} is {self.units(index).status or 'in an unknown state'}")
        return "waiting while " + " and ".join(why) if why else None


def _units(throughput: Any, status: Any) -> Units:
    t = throughput if isinstance(throughput, Mapping) else {}
    last = t.get("LastDecreaseDateTime")
    return Units(
        read=int(t.get("ReadCapacityUnits") or 0),
        write=int(t.get("WriteCapacityUnits") or 0),
        status=str(status or ""),
        decreases_today=int(t.get("NumberOfDecreasesToday") or 0),
        last_decrease=aware(last).timestamp() if isinstance(last, datetime) else None,
    )


@dataclass(frozen=True)
class Change:
    """One resource's desired units of one dimension, waiting for its table's UpdateTable."""

    resource: str
    dimension: TableDimension
    desired: int
    seen: int
    """The units the resource's observation saw (what its decision started from)."""


@dataclass(frozen=True)
class Plan:
    """The UpdateTable of one table (or index) for a batch of changes. Pure."""

    read: int
    write: int
    before: Units
    lowers: bool
    """Some dimension goes down: one decrease of the budget."""

    @property
    def changed(self) -> bool:
        return (self.read, self.write) != (self.before.read, self.before.write)

    def describe(self) -> str:
        parts = [
            f"{name} {old} -> {new}"
            for name, old, new in (
                ("read", self.before.read, self.read),
                ("write", self.before.write, self.write),
            )
            if old != new
        ]
        return ", ".join(parts) + (" (one decrease)" if self.lowers else "")


def plan(now: Units, changes: Sequence[Change]) -> Plan:
    """Both dimensions of the one UpdateTable for ``changes``: each changed dimension
    at its resource's desired units (the last one asked, if two resources name it), the
    others as DescribeTable reports them now."""
    units = {TableDimension.READ: now.read, TableDimension.WRITE: now.write}
    for c in changes:
        units[c.dimension] = c.desired
    read, write = units[TableDimension.READ], units[TableDimension.WRITE]
    return Plan(read, write, now, read < now.read or write < now.write)


def _code(exc: BaseException) -> str | None:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", "")) or None
    return None


def _target(resource: Resource) -> TableTarget:
    if not isinstance(resource.target, TableTarget):
        raise PermanentError(
            f"{resource.key}: the DynamoDB actuator cannot scale a {resource.target.kind} target"
        )
    return resource.target


def _where(target: TableTarget) -> str:
    return f"table {target.name}" + (f" index {target.index}" if target.index else "")


class DynamoDbActuator:
    """Actuator for ``Table`` targets (TableCapacity)."""

    def __init__(
        self,
        caller: AwsCaller,
        *,
        clock: Clock = utcnow,
        quiet: float = UPDATE_QUIET,
        window: float = UPDATE_WINDOW,
    ) -> None:
        self._caller = caller
        self._clock = clock
        self._describes: Coalescer[TableKey, None, TableView] = Coalescer(
            self._describe_batch, quiet=0.05, window=0.5
        )
        self._updates: Coalescer[UnitKey, Change, ApplyResult] = Coalescer(
            self._update_batch, quiet=quiet, window=window
        )
        self._refused: dict[UnitKey, tuple[float, str]] = {}
        """Per table (or index): until when a decrease is not sent, and why (a refusal)."""

    def _keys(self, resource: Resource) -> tuple[TableTarget, UnitKey]:
        target = _target(resource)
        region = self._caller.clients.region(target.region)
        role = RoleRef.of(target.role_arn, resource.namespace)
        return target, (region, role, target.name, target.index)

    async def _describe(self, region: str, role: RoleRef | None, table: str) -> TableView:
        out = await self._caller.call(
            "dynamodb",
            "DescribeTable",
            region=region,
            role=role,
            resource=f"table {table}",
            TableName=table,
        )
        doc = out.get("Table")
        if not isinstance(doc, Mapping):
            raise TargetNotFound(f"table {table} does not exist")
        return TableView.from_api(doc)

    async def _describe_batch(
        self, key: TableKey, items: Sequence[None]
    ) -> list[TableView | BaseException]:
        try:
            view = await self._describe(*key)
        except StackscalerError as exc:
            return [exc for _ in items]
        return [view for _ in items]

    async def observe(self, resource: Resource) -> Capacity:
        target, (region, role, table, index) = self._keys(resource)
        view = await self._describes.submit((region, role, table), None)
        if view.billing_mode == ON_DEMAND:
            raise PermanentError(
                f"table {table} is in on-demand mode (PAY_PER_REQUEST): it has no provisioned "
                "capacity to scale; switch it to provisioned mode or delete this resource"
            )
        units = view.units(index)
        current = units.of(target.dimension)
        budget = units.budget
        now = self._clock().timestamp()
        return Capacity(
            current=current,
            ready=current,
            minimum=1,
            is_setpoint=True,
            busy=view.busy(index),
            decreases=budget,
            detail=(
                f"{_where(target)}: {current} {target.dimension.units_field} provisioned "
                f"({units.read} read, {units.write} write; {units.status}); decreases today "
                f"{budget.used(now)}, {budget.left(now)} left"
            ),
        )

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        target, key = self._keys(resource)
        if observed.busy:
            return ApplyResult(observed.current, False, detail=observed.busy)
        requested = max(1, desired)
        clamped = None if desired >= 1 else f"desired {desired} clamped to DynamoDB's minimum 1"
        change = Change(resource.key, target.dimension, requested, observed.current)
        result = await self._updates.submit(key, change)
        return ApplyResult(
            result.requested, result.changed, clamped or result.clamped, result.detail
        )

    async def _update_batch(
        self, key: UnitKey, changes: Sequence[Change]
    ) -> list[ApplyResult | BaseException]:
        """One UpdateTable for the changes of one table (or index) that came together."""
        region, role, table, index = key
        where = f"table {table}" + (f" index {index}" if index else "")
        try:
            view = await self._describe(region, role, table)
            units = view.units(index)
        except StackscalerError as exc:
            return [exc for _ in changes]
        busy = view.busy(index)
        if busy:
            return [ApplyResult(units.of(c.dimension), False, detail=busy) for c in changes]
        now = self._clock().timestamp()
        refused = self._refused.get(key)
        if refused is not None and now >= refused[0]:
            del self._refused[key]
            refused = None
        sent = list(changes)
        if refused is not None and plan(units, sent).lowers:
            # the day's decreases are spent: increases go alone, decreases wait
            sent = [c for c in changes if c.desired >= units.of(c.dimension)]
        update = plan(units, sent)
        outcome: str | BaseException = "not sent"
        if update.changed:
            outcome = await self._send(key, update, units, now)
        results: list[ApplyResult | BaseException] = []
        for c in changes:
            before = units.of(c.dimension)
            if isinstance(outcome, BaseException):
                results.append(outcome)
            elif c not in sent:
                assert refused is not None
                message = self._refusal(where, refused)
                results.append(ApplyResult(before, False, str(message), detail=str(message)))
            elif outcome == "in use":
                results.append(
                    ApplyResult(
                        before,
                        False,
                        detail=f"waiting while {where} is being updated (ResourceInUseException)",
                    )
                )
            elif before == c.desired or outcome == "not sent":
                results.append(ApplyResult(c.desired, False, detail=f"already {c.desired} units"))
            else:
                results.append(
                    ApplyResult(c.desired, True, detail=f"UpdateTable {where}: {update.describe()}")
                )
        return results

    def _refusal(self, where: str, refused: tuple[float, str]) -> DecreaseRefused:
        until, why = refused
        at = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        return DecreaseRefused(
            f"{where}: DynamoDB refused a decrease ({why}): it counts the UTC day's decreases "
            f"as spent; no decrease is sent before the next is earned at {at}, increases "
            "still are",
            retry_at=until,
        )

    async def _send(
        self, key: UnitKey, update: Plan, units: Units, now: float
    ) -> str | BaseException:
        """Send one UpdateTable: "sent", "in use" (the table is being updated), or the error."""
        region, role, table, index = key
        throughput = {"ReadCapacityUnits": update.read, "WriteCapacityUnits": update.write}
        params: dict[str, Any] = {"TableName": table}
        if index is None:
            params["ProvisionedThroughput"] = throughput
        else:
            params["GlobalSecondaryIndexUpdates"] = [
                {"Update": {"IndexName": index, "ProvisionedThroughput": throughput}}
            ]
        where = f"table {table}" + (f" index {index}" if index else "")
        try:
            await self._caller.call(
                "dynamodb", "UpdateTable", region=region, role=role, resource=where, **params
            )
        except StackscalerError as exc:
            code = _code(exc)
            if code == "ResourceInUseException":
                return "in use"
            if code == "LimitExceededException" and update.lowers:
                earned = units.budget.next_earned(now)
                # DynamoDB's count disagrees with what it described: wait at least an hour
                until = (
                    earned if earned > now and units.budget.left(now) == 0 else now + HOUR_SECONDS
                )
                stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
                self._refused[key] = (until, f"LimitExceededException at {stamp}")
                return self._refusal(where, self._refused[key])
            return exc
        return "sent"

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to whoever made it."""
