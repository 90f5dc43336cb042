"""A faster timestamp parser for botocore's responses, with botocore's meaning.

botocore parses every timestamp of every response (GetMetricData's
datapoints, each instance and activity of a DescribeAutoScalingGroups) with
``dateutil``, and converts epoch numbers through ``tzlocal``: at 2,000 tiers a
few percent of the operator's CPU. AWS sends ISO 8601 with a zone (query and
XML protocols) or epoch seconds (JSON protocols); both have an exact, cheap
standard-library reading. Anything else (RFC 822, a time without a zone) goes
to botocore's own parser, so the result is never different in meaning: an
aware datetime for the same instant. Installed with the documented
``ResponseParserFactory.set_parser_defaults(timestamp_parser=...)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.utils import parse_timestamp as botocore_parse_timestamp


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime for an AWS timestamp (ISO 8601 with a zone, or epoch seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    result: datetime = botocore_parse_timestamp(value)
    return result


def install(session: Any) -> None:
    """Make ``session``'s clients parse timestamps with :func:`parse_timestamp`."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
