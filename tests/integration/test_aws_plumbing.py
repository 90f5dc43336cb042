"""The AWS plumbing against moto: clients, error translation, call counting."""

from __future__ import annotations

from typing import Any

import pytest

from stackscaler.aws import AwsCaller
from stackscaler.errors import TargetNotFound


async def test_call_runs_off_loop_and_counts(aws: AwsCaller, boto: Any) -> None:
    boto("sqs").create_queue(QueueName="jobs")
    out = await aws.call("sqs", "GetQueueUrl", region=None, resource="queue jobs", QueueName="jobs")
    assert out["QueueUrl"].endswith("/jobs")
    assert aws.clients.calls[("sqs", "GetQueueUrl")] == 1
    assert aws.clients.attempts[("sqs", "GetQueueUrl")] == 1


async def test_not_found_is_translated(aws: AwsCaller) -> None:
    with pytest.raises(TargetNotFound) as info:
        await aws.call("sqs", "GetQueueUrl", region=None, resource="queue nope", QueueName="nope")
    assert "queue nope" in str(info.value)
