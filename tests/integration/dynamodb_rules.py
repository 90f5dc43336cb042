"""A thin proxy in front of moto that enforces what moto's DynamoDB does not.

moto 5.2.5 (moto/dynamodb/models/__init__.py, ``update_table``) applies every
UpdateTable at once and without limit: it never reports a table or an index
as UPDATING, never refuses a change while one is in progress, never counts
decreases (NumberOfDecreasesToday stays 0, and an update drops it) and never
refuses a decrease for the UTC day's budget. This proxy forwards every request
to moto unchanged and adds, per table and per global secondary index, as AWS
does:

* the decrease budget: an UpdateTable that lowers a table's (or an index's)
  read or write units is one decrease; past the first four of a UTC day, one
  more an hour after the last, at most 27 a day; beyond it the proxy answers
  LimitExceededException (AWS's code and a message like AWS's);
* ``spent_elsewhere``: decreases DynamoDB counts that DescribeTable does not
  show yet (another client's, or a count that differs), so a decrease the
  operator thinks it may make is refused;
* UPDATING: for ``updating_seconds`` after a change, DescribeTable reports the
  table (or the index) UPDATING and another UpdateTable is answered
  ResourceInUseException;
* DescribeTable answers carry NumberOfDecreasesToday and LastDecreaseDateTime
  as counted here (with the x-amz-crc32 header recomputed: botocore checks it).
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.integration.aws_faults import HOP_BY_HOP, LoopbackProxy, operation_of

DAY, HOUR = 86_400, 3_600
Key = tuple[str, str | None]
"""(table, index or None)."""


@dataclass
class Budget:
    decreases: list[float] = field(default_factory=list)
    spent_elsewhere: int = 0

    def today(self, now: float) -> list[float]:
        return [t for t in self.decreases if t // DAY == now // DAY]

    def allows(self, now: float) -> bool:
        done = self.today(now)
        used = len(done) + self.spent_elsewhere
        if used >= 27:
            return False
        if used < 4:
            return True
        last = max(done, default=now)
        return now - last >= HOUR


class DynamoDbRules(LoopbackProxy):
    def __init__(
        self,
        upstream: str,
        *,
        updating_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(upstream)
        self.updating_seconds = updating_seconds
        self.clock = clock
        self.budgets: dict[Key, Budget] = {}
        self.updating_until: dict[Key, float] = {}
        self.received: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Error codes answered, by code."""
        self.updates: list[dict[str, Any]] = []
        """The UpdateTable bodies forwarded to moto."""

    def budget(self, table: str, index: str | None = None) -> Budget:
        return self.budgets.setdefault((table, index), Budget())

    async def _upstream(
        self, request: web.Request, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as up:
            payload = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
            return up.status, out, payload

    async def _describe(self, request: web.Request, headers: dict[str, str], table: str) -> Any:
        h = {**headers, "X-Amz-Target": "DynamoDB_20120810.DescribeTable"}
        _, _, payload = await self._upstream(request, json.dumps({"TableName": table}).encode(), h)
        return json.loads(payload).get("Table", {})

    def _error(self, code: str, message: str) -> web.Response:
        self.refused[code] += 1
        return web.json_response(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message},
            status=400,
            content_type="application/x-amz-json-1.0",
        )

    async def _update(self, request: web.Request, body: bytes, headers: dict[str, str]) -> Any:
        doc = json.loads(body)
        table = str(doc["TableName"])
        before = await self._describe(request, headers, table)
        now = self.clock()
        changes: list[tuple[Key, dict[str, Any], dict[str, Any]]] = []
        if "ProvisionedThroughput" in doc:
            changes.append(
                (
                    (table, None),
                    before.get("ProvisionedThroughput", {}),
                    doc["ProvisionedThroughput"],
                )
            )
        for u in doc.get("GlobalSecondaryIndexUpdates") or ():
            upd = u.get("Update")
            if upd:
                old = next(
                    (
                        g.get("ProvisionedThroughput", {})
                        for g in before.get("GlobalSecondaryIndexes") or ()
                        if g.get("IndexName") == upd["IndexName"]
                    ),
                    {},
                )
                changes.append(((table, upd["IndexName"]), old, upd["ProvisionedThroughput"]))
        for key, _, _ in changes:
            if now < self.updating_until.get((table, None), 0) or now < self.updating_until.get(
                key, 0
            ):
                return self._error(
                    "ResourceInUseException",
                    f"Attempt to change a resource which is still in use: Table is being "
                    f"updated: {table}",
                )
        lowered = [
            key
            for key, old, new in changes
            if new["ReadCapacityUnits"] < old.get("ReadCapacityUnits", 0)
            or new["WriteCapacityUnits"] < old.get("WriteCapacityUnits", 0)
        ]
        for key in lowered:
            if not self.budget(*key).allows(now):
                return self._error(
                    "LimitExceededException",
                    "Subscriber limit exceeded: Provisioned throughput decreases are limited "
                    "within a given UTC day. After the first 4 decreases, each subsequent "
                    "decrease in the same UTC day can be performed at most once every 3600 "
                    "seconds.",
                )
        status, out, payload = await self._upstream(request, body, headers)
        if status == 200:
            self.updates.append(doc)
            for key in lowered:
                self.budget(*key).decreases.append(now)
            for key, _, _ in changes:
                self.updating_until[key] = now + self.updating_seconds
        return web.Response(body=payload, status=status, headers=out)

    def _throughput(self, key: Key, t: dict[str, Any], now: float) -> None:
        b = self.budgets.get(key)
        if b is None:
            t["NumberOfDecreasesToday"] = 0
            return
        done = b.today(now)
        t["NumberOfDecreasesToday"] = len(done)
        if b.decreases:
            t["LastDecreaseDateTime"] = max(b.decreases)

    async def _describe_answer(
        self, request: web.Request, body: bytes, headers: dict[str, str]
    ) -> web.Response:
        status, out, payload = await self._upstream(request, body, headers)
        if status != 200:
            return web.Response(body=payload, status=status, headers=out)
        doc = json.loads(payload)
        table = doc.get("Table", {})
        name, now = str(table.get("TableName")), self.clock()
        if now < self.updating_until.get((name, None), 0):
            table["TableStatus"] = "UPDATING"
        self._throughput((name, None), table.setdefault("ProvisionedThroughput", {}), now)
        for g in table.get("GlobalSecondaryIndexes") or ():
            key = (name, g.get("IndexName"))
            if now < self.updating_until.get(key, 0):
                g["IndexStatus"] = "UPDATING"
            self._throughput(key, g.setdefault("ProvisionedThroughput", {}), now)
        data = json.dumps(doc).encode()
        out = {k: v for k, v in out.items() if k.lower() != "x-amz-crc32"}
        out["x-amz-crc32"] = str(zlib.crc32(data) & 0xFFFFFFFF)
        return web.Response(body=data, status=200, headers=out)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        op = operation_of(request, body)
        self.received[op] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if op == "UpdateTable":
            return await self._update(request, body, headers)  # type: ignore[no-any-return]
        if op == "DescribeTable":
            return await self._describe_answer(request, body, headers)
        status, out, payload = await self._upstream(request, body, headers)
        return web.Response(body=payload, status=status, headers=out)
