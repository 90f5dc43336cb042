"""The fast timestamp parser means what botocore's parser means, on every form AWS sends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from stackscaler.aws import timestamps
from stackscaler.aws.timestamps import parse_timestamp

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def forms(at: datetime) -> list[Any]:
    """The ways AWS writes ``at``: ISO 8601 with Z or an offset, with or without a
    fraction, and epoch seconds (JSON protocols), integral or not."""
    other = timezone(timedelta(hours=5, minutes=30))
    return [
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03}Z",
        at.isoformat(),
        at.astimezone(other).isoformat(),
        int(at.timestamp()),
        at.timestamp(),
    ]


@given(instants)
def test_same_instant_as_botocore_for_every_form_aws_sends(at: datetime) -> None:
    for value in forms(at):
        ours, theirs = parse_timestamp(value), botocore_parse_timestamp(value)
        assert ours.tzinfo is not None
        assert ours == theirs, value  # aware datetimes: equal means the same instant


@given(st.sampled_from(["Thu, 26 Nov 2026 12:00:00 GMT", "2026-11-26T12:00:00", "1795801775"]))
def test_other_forms_are_botocores_answer(value: str) -> None:
    assert parse_timestamp(value) == botocore_parse_timestamp(value)


BODY = (
    b'<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/'
    b'2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups><member>'
    b"<AutoScalingGroupName>web</AutoScalingGroupName>"
    b"<CreatedTime>2026-11-26T12:00:30.250Z</CreatedTime>"
    b"</member></AutoScalingGroups></DescribeAutoScalingGroupsResult>"
    b"</DescribeAutoScalingGroupsResponse>"
)


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_installed_clients_parse_with_it(endpoint: str) -> None:
    """A real answer over HTTP, parsed by the client's endpoint: the zone object tells
    whose parser made the datetime (botocore's is dateutil's)."""

    def created(install: bool) -> datetime:
        session = botocore.session.Session()
        if install:
            timestamps.install(session)
        asg = session.create_client(
            "autoscaling",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        at: datetime = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["CreatedTime"]
        return at

    ours, theirs = created(True), created(False)
    assert ours == theirs == datetime(2026, 11, 26, 12, 0, 30, 250000, tzinfo=UTC)
    assert ours.tzinfo is UTC and theirs.tzinfo is not UTC
