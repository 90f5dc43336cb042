"""Tests for stackscaler.model.cron: parsing, matching and DST-aware fire-time search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackscaler.model.cron import CronExpression, CronSyntaxError

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
ZONE_UTC = ZoneInfo("UTC")
ALL = frozenset
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


# Aware datetimes: utc(2026, 1, 5, 13, 0), ny(2026, 1, 5, 8, 0) is New York wall time, ...
utc = partial(datetime, tzinfo=UTC)
ny = partial(datetime, tzinfo=NEW_YORK)
berlin = partial(datetime, tzinfo=BERLIN)


# --------------------------------------------------------------------------- parse

EVERY_MINUTE = frozenset(range(60))
EVERY_HOUR = frozenset(range(24))
EVERY_DOM = frozenset(range(1, 32))
EVERY_MONTH = frozenset(range(1, 13))
EVERY_DOW = frozenset(range(7))


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        # minute
        ("* * * * *", "minutes", EVERY_MINUTE),
        ("5 * * * *", "minutes", {5}),
        ("05 * * * *", "minutes", {5}),
        ("0,59 * * * *", "minutes", {0, 59}),
        ("10-13 * * * *", "minutes", {10, 11, 12, 13}),
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("*/1 * * * *", "minutes", EVERY_MINUTE),
        ("*/45 * * * *", "minutes", {0, 45}),
        ("*/100 * * * *", "minutes", {0}),
        ("10-30/10 * * * *", "minutes", {10, 20, 30}),
        ("10-31/10 * * * *", "minutes", {10, 20, 30}),
        ("50/3 * * * *", "minutes", {50, 53, 56, 59}),
        ("1,5-7,*/20 * * * *", "minutes", {0, 1, 5, 6, 7, 20, 40}),
        ("7-7 * * * *", "minutes", {7}),
        ("59/5 * * * *", "minutes", {59}),
        # hour
        ("0 9-17 * * *", "hours", set(range(9, 18))),
        ("0 */6 * * *", "hours", {0, 6, 12, 18}),
        ("0 23 * * *", "hours", {23}),
        ("0 22/1 * * *", "hours", {22, 23}),
        # day of month
        ("0 0 1,15 * *", "days_of_month", {1, 15}),
        ("0 0 */10 * *", "days_of_month", {1, 11, 21, 31}),
        ("0 0 31 * *", "days_of_month", {31}),
        # month, with names in any case and inside ranges and steps
        ("0 0 1 JAN *", "months", {1}),
        ("0 0 1 dec *", "months", {12}),
        ("0 0 1 Jun-Aug *", "months", {6, 7, 8}),
        ("0 0 1 JAN,apr,Jul,OCT *", "months", {1, 4, 7, 10}),
        ("0 0 1 */3 *", "months", {1, 4, 7, 10}),
        ("0 0 1 FEB/4 *", "months", {2, 6, 10}),
        ("0 0 1 3-MAY *", "months", {3, 4, 5}),
        # day of week: names, 7 = Sunday, ranges through 7
        ("0 0 * * MON-FRI", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * mon-fri", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * 1-5", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * 7", "days_of_week", {0}),
        ("0 0 * * 0", "days_of_week", {0}),
        ("0 0 * * SUN", "days_of_week", {0}),
        ("0 0 * * 0,7", "days_of_week", {0}),
        ("0 0 * * 5-7", "days_of_week", {5, 6, 0}),
        ("0 0 * * 0-7", "days_of_week", EVERY_DOW),
        ("0 0 * * SAT,sun", "days_of_week", {6, 0}),
        ("0 0 * * */2", "days_of_week", {0, 2, 4, 6}),
        ("0 0 * * 1/2", "days_of_week", {1, 3, 5}),
        ("0 0 * * 1-7/3", "days_of_week", {1, 4, 0}),
        ("0 0 * * *", "days_of_week", EVERY_DOW),
        ("0 0 * * TUE-THU,SAT", "days_of_week", {2, 3, 4, 6}),
    ],
)
def test_parse_field_values(text: str, field: str, expected: set[int]) -> None:
    assert getattr(CronExpression.parse(text), field) == frozenset(expected)


def test_parse_full_expression() -> None:
    expr = CronExpression.parse("0 8 * * 1-5")
    assert expr == CronExpression(
        expression="0 8 * * 1-5",
        minutes=frozenset({0}),
        hours=frozenset({8}),
        days_of_month=EVERY_DOM,
        months=EVERY_MONTH,
        days_of_week=frozenset({1, 2, 3, 4, 5}),
        dom_restricted=False,
        dow_restricted=True,
    )


@pytest.mark.parametrize(
    "text",
    [
        "  0 8 * * 1-5",
        "0 8 * * 1-5  ",
        "0\t8  *\t* 1-5",
        "\n0 8 * * 1-5\n",
    ],
)
def test_parse_tolerates_whitespace(text: str) -> None:
    expr = CronExpression.parse(text)
    assert expr.expression == text
    assert (expr.minutes, expr.hours, expr.days_of_week) == (
        frozenset({0}),
        frozenset({8}),
        frozenset({1, 2, 3, 4, 5}),
    )


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("  @DAILY ", "0 0 * * *"),
    ],
)
def test_parse_macros(macro: str, equivalent: str) -> None:
    got = CronExpression.parse(macro)
    want = CronExpression.parse(equivalent)
    assert got.expression == macro
    assert (
        got.minutes,
        got.hours,
        got.days_of_month,
        got.months,
        got.days_of_week,
        got.dom_restricted,
        got.dow_restricted,
    ) == (
        want.minutes,
        want.hours,
        want.days_of_month,
        want.months,
        want.days_of_week,
        want.dom_restricted,
        want.dow_restricted,
    )


@pytest.mark.parametrize(
    ("text", "dom_restricted", "dow_restricted"),
    [
        ("0 0 * * *", False, False),
        ("0 0 1 * *", True, False),
        ("0 0 * * 1", False, True),
        ("0 0 1 * 1", True, True),
        # Vixie: restricted means "does not start with '*'", whatever the values.
        ("0 0 */1 * *", False, False),
        ("0 0 */2 * */2", False, False),
        ("0 0 1-31 * 0-7", True, True),
        ("0 0 1/1 * *", True, False),
    ],
)
def test_parse_restricted_flags(text: str, dom_restricted: bool, dow_restricted: bool) -> None:
    expr = CronExpression.parse(text)
    assert (expr.dom_restricted, expr.dow_restricted) == (dom_restricted, dow_restricted)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # field count
        ("", ["expected 5 fields", "got 0"]),
        ("   ", ["expected 5 fields", "got 0"]),
        ("* * * *", ["expected 5 fields (minute hour day-of-month month day-of-week)", "got 4"]),
        ("0 0 0 * * *", ["got 6", "seconds"]),
        ("0 0 0 * * * 2026", ["got 7", "seconds and year"]),
        ("1, 2 * * * *", ["got 6", "spaces are not allowed inside a field"]),
        # out of range, per field
        ("60 * * * *", ["minute field '60'", "value 60 out of range 0-59"]),
        ("* 24 * * *", ["hour field '24'", "value 24 out of range 0-23"]),
        ("* * 0 * *", ["day-of-month field '0'", "value 0 out of range 1-31"]),
        ("* * 32 * *", ["day-of-month field '32'", "value 32 out of range 1-31"]),
        ("* * * 13 *", ["month field '13'", "value 13 out of range 1-12"]),
        ("* * * 0 *", ["month field '0'", "value 0 out of range 1-12"]),
        (
            "* * * * 8",
            ["day-of-week field '8': value 8 out of range 0-7 (0 or 7 is Sunday)"],
        ),
        ("1,2,99 * * * *", ["minute field '1,2,99'", "value 99"]),
        ("0-60 * * * *", ["minute field '0-60'", "value 60 out of range 0-59"]),
        # reversed range
        ("5-1 * * * *", ["minute field '5-1'", "range 5-1 is reversed"]),
        ("0 0 * * FRI-SUN", ["day-of-week field 'FRI-SUN'", "reversed", "5-7"]),
        ("0 0 * DEC-JAN *", ["month field 'DEC-JAN'", "range DEC-JAN is reversed"]),
        # steps
        ("*/0 * * * *", ["minute field '*/0'", "step 0"]),
        ("0 1-5/0 * * *", ["hour field '1-5/0'", "step 0"]),
        ("*/x * * * *", ["minute field '*/x'", "step 'x'", "positive whole number"]),
        ("5/ * * * *", ["minute field '5/'", "step ''"]),
        ("*/-1 * * * *", ["minute field '*/-1'", "step '-1'"]),
        ("*/2/3 * * * *", ["minute field '*/2/3'", "step '2/3'"]),
        ("/5 * * * *", ["minute field '/5'", "use '*/5'"]),
        # empty fields and list elements
        ("1,,2 * * * *", ["minute field '1,,2'", "empty list element"]),
        ("1, * * * *", ["minute field '1,'", "empty list element"]),
        (",1 * * * *", ["minute field ',1'", "empty list element"]),
        ("1- * * * *", ["minute field '1-'", "missing value in '1-'"]),
        ("-5 * * * *", ["minute field '-5'", "missing range start"]),
        ("1-2-3 * * * *", ["minute field '1-2-3'", "more than one '-'"]),
        # junk
        ("x * * * *", ["minute field 'x'", "invalid value 'x'", "0-59"]),
        ("5% * * * *", ["minute field '5%'", "invalid value '5%'"]),
        ("1.5 * * * *", ["minute field '1.5'", "invalid value '1.5'"]),
        ("*-5 * * * *", ["minute field '*-5'", "misplaced '*' in '*-5'"]),
        ("** * * * *", ["minute field '**'", "misplaced '*' in '**'"]),
        ("JAN * * * *", ["minute field 'JAN'", "invalid value 'JAN'", "0-59"]),
        ("0 0 * FOO *", ["month field 'FOO'", "invalid value 'FOO'", "JAN-DEC"]),
        ("0 0 * * MONDAY", ["day-of-week field 'MONDAY'", "invalid value 'MONDAY'", "SUN-SAT"]),
        ("0 0 * * MON-FOO", ["day-of-week field 'MON-FOO'", "invalid value 'FOO'"]),
        ("0 0 * MON *", ["month field 'MON'", "invalid value 'MON'"]),
        ("0 0 * * JAN", ["day-of-week field 'JAN'", "invalid value 'JAN'"]),
        ("\u0661 * * * *", ["minute field '\u0661'", "invalid value"]),
        # Quartz extensions
        ("0 0 ? * 1", ["day-of-month field '?'", "'?' is not supported", "use '*'"]),
        ("0 0 1 * ?", ["day-of-week field '?'", "'?' is not supported"]),
        ("0 0 L * *", ["day-of-month field 'L'", "'L' is not supported"]),
        ("0 0 15W * *", ["day-of-month field '15W'", "'15W' is not supported"]),
        ("0 0 LW * *", ["day-of-month field 'LW'", "not supported"]),
        ("0 0 * * 5L", ["day-of-week field '5L'", "'5L' is not supported"]),
        ("0 0 * * 5#3", ["day-of-week field '5#3'", "'#'", "not supported"]),
        # macros
        ("@reboot", ["'@reboot' is not supported"]),
        ("@every 5m", ["unknown macro '@every'", "@daily"]),
        ("@daily 0", ["macro '@daily' must stand alone", "'0'"]),
    ],
)
def test_parse_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpression.parse(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="minute field"):
        CronExpression.parse("99 * * * *")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="days_of_week"):
        CronExpression("x", ALL({0}), ALL({0}), EVERY_DOM, EVERY_MONTH, ALL({7}), False, True)
    with pytest.raises(ValueError, match="minutes must not be empty"):
        CronExpression("x", ALL(), ALL({0}), EVERY_DOM, EVERY_MONTH, EVERY_DOW, False, False)


def test_expression_is_frozen_and_hashable() -> None:
    expr = CronExpression.parse("0 8 * * 1-5")
    with pytest.raises(AttributeError):
        expr.expression = "other"  # type: ignore[misc]
    assert hash(expr) == hash(CronExpression.parse("0 8 * * 1-5"))


# --------------------------------------------------------------------------- matches


@pytest.mark.parametrize(
    ("text", "wall", "expected"),
    [
        ("0 8 * * 1-5", datetime(2026, 1, 5, 8, 0), True),  # Monday
        ("0 8 * * 1-5", datetime(2026, 1, 5, 8, 0, 59), True),  # seconds ignored
        ("0 8 * * 1-5", datetime(2026, 1, 5, 8, 1), False),
        ("0 8 * * 1-5", datetime(2026, 1, 5, 9, 0), False),
        ("0 8 * * 1-5", datetime(2026, 1, 10, 8, 0), False),  # Saturday
        ("0 8 * * 7", datetime(2026, 1, 11, 8, 0), True),  # Sunday
        ("0 8 * * 0", datetime(2026, 1, 11, 8, 0), True),
        ("0 8 * FEB *", datetime(2026, 1, 11, 8, 0), False),
        # both restricted: OR rule. 2026-01-13 is a Tuesday, 2026-01-16 a Friday.
        ("0 0 13 * 5", datetime(2026, 1, 13, 0, 0), True),  # the 13th, not a Friday
        ("0 0 13 * 5", datetime(2026, 1, 16, 0, 0), True),  # a Friday, not the 13th
        ("0 0 13 * 5", datetime(2026, 1, 14, 0, 0), False),  # neither
        ("0 0 1-31 * 1", datetime(2026, 1, 14, 0, 0), True),  # '1-31' is restricted
        # only one restricted: AND rule (the '*' side matches every day)
        ("0 0 13 * *", datetime(2026, 1, 16, 0, 0), False),
        ("0 0 * * 5", datetime(2026, 1, 13, 0, 0), False),
        ("0 0 * * 5", datetime(2026, 1, 16, 0, 0), True),
        # a field starting with '*' is unrestricted even with a step: AND rule
        ("0 0 */2 * 5", datetime(2026, 1, 16, 0, 0), False),  # Friday, even day
        ("0 0 */2 * 5", datetime(2026, 1, 23, 0, 0), True),  # Friday, odd day
        ("0 0 */2 * 5", datetime(2026, 1, 13, 0, 0), False),  # odd day, Tuesday
        ("0 0 13 * */1", datetime(2026, 1, 13, 0, 0), True),
        ("0 0 13 * */1", datetime(2026, 1, 16, 0, 0), False),
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0), True),
        ("@weekly", datetime(2026, 1, 11, 0, 0), True),
        ("@weekly", datetime(2026, 1, 12, 0, 0), False),
    ],
)
def test_matches(text: str, wall: datetime, expected: bool) -> None:
    assert CronExpression.parse(text).matches(wall) is expected


def test_matches_rejects_aware_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        CronExpression.parse("* * * * *").matches(utc(2026, 1, 1, 0, 0))


# --------------------------------------------------------------------------- searches

Case = tuple[str, datetime, ZoneInfo, timedelta, datetime | None]

LAST_FIRE_CASES: list[Case] = [
    # weekday business hours in New York (EST = UTC-5, EDT = UTC-4)
    ("0 8 * * 1-5", ny(2026, 1, 5, 9, 0), NEW_YORK, DAY, utc(2026, 1, 5, 13, 0)),
    ("0 8 * * 1-5", ny(2026, 1, 5, 7, 59), NEW_YORK, DAY, None),
    (
        "0 8 * * 1-5",
        ny(2026, 1, 5, 7, 59),
        NEW_YORK,
        4 * DAY,
        utc(2026, 1, 2, 13, 0),
    ),
    ("0 8 * * 1-5", ny(2026, 1, 10, 10, 0), NEW_YORK, DAY, None),  # Saturday
    (
        "0 8 * * 1-5",
        ny(2026, 1, 10, 10, 0),
        NEW_YORK,
        3 * DAY,
        utc(2026, 1, 9, 13, 0),
    ),
    ("0 8 * * 1-5", ny(2026, 7, 6, 9, 0), NEW_YORK, DAY, utc(2026, 7, 6, 12, 0)),
    # `now` given in another zone means the same instant
    ("0 8 * * 1-5", utc(2026, 7, 6, 13, 0), NEW_YORK, DAY, utc(2026, 7, 6, 12, 0)),
    # minute resolution: 08:00:30 is "at" the 08:00 fire; the window edge is inclusive
    ("0 8 * * 1-5", ny(2026, 1, 5, 8, 0, 30), NEW_YORK, DAY, utc(2026, 1, 5, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 5, 8, 0), NEW_YORK, timedelta(0), utc(2026, 1, 5, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 6, 8, 0), NEW_YORK, DAY, utc(2026, 1, 6, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 6, 7, 59), NEW_YORK, DAY - 2 * MINUTE, None),
    (
        "0 8 * * 1-5",
        ny(2026, 1, 6, 7, 59),
        NEW_YORK,
        DAY - MINUTE,
        utc(2026, 1, 5, 13),
    ),
    ("0 8 * * 1-5", ny(2026, 1, 6, 7, 59), NEW_YORK, DAY, utc(2026, 1, 5, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 5, 9, 0), NEW_YORK, -DAY, None),
    # a window spanning midnight: starts 22:00 on weekdays, so Saturday 01:00 is inside
    ("0 22 * * 1-5", ny(2026, 1, 10, 1, 0), NEW_YORK, DAY, utc(2026, 1, 10, 3, 0)),
    ("0 6 * * *", ny(2026, 1, 10, 1, 0), NEW_YORK, DAY, utc(2026, 1, 9, 11, 0)),
    ("59 23 31 12 *", utc(2027, 1, 1, 0, 0), ZONE_UTC, MINUTE, utc(2026, 12, 31, 23, 59)),
    ("*/15 * * * *", utc(2026, 1, 1, 0, 7), ZONE_UTC, DAY, utc(2026, 1, 1, 0, 0)),
    ("* * * * *", utc(2026, 1, 1, 0, 7, 59), ZONE_UTC, DAY, utc(2026, 1, 1, 0, 7)),
    # Feb 29 in a 400-day lookback
    ("0 0 29 2 *", utc(2029, 1, 15), ZONE_UTC, 400 * DAY, utc(2028, 2, 29)),
    ("0 0 29 2 *", utc(2029, 1, 15), ZONE_UTC, 300 * DAY, None),
    ("0 0 29 2 *", utc(2027, 6, 1), ZONE_UTC, 400 * DAY, None),
    ("0 0 29 2 *", utc(2028, 2, 29, 0, 0, 1), ZONE_UTC, timedelta(0), utc(2028, 2, 29)),
    ("0 0 29 2 *", ny(2029, 1, 15), NEW_YORK, 400 * DAY, utc(2028, 2, 29, 5)),
    ("0 0 31 2 *", utc(2029, 1, 15), ZONE_UTC, 400 * DAY, None),  # never fires
    ("@yearly", utc(2026, 6, 1), ZONE_UTC, 400 * DAY, utc(2026, 1, 1)),
    # spring forward: 2026-03-08 02:00-02:59 does not exist in New York
    ("30 2 * * *", ny(2026, 3, 8, 12, 0), NEW_YORK, DAY, None),
    (
        "30 2 * * *",
        ny(2026, 3, 8, 12, 0),
        NEW_YORK,
        2 * DAY,
        utc(2026, 3, 7, 7, 30),
    ),
    ("30 2 * * *", ny(2026, 3, 9, 3, 0), NEW_YORK, DAY, utc(2026, 3, 9, 6, 30)),
    ("0 3 * * *", ny(2026, 3, 8, 12, 0), NEW_YORK, DAY, utc(2026, 3, 8, 7, 0)),
    ("59 1 * * *", ny(2026, 3, 8, 12, 0), NEW_YORK, DAY, utc(2026, 3, 8, 6, 59)),
    ("*/30 * * * *", ny(2026, 3, 8, 3, 0), NEW_YORK, DAY, utc(2026, 3, 8, 7, 0)),
    ("*/30 * * * *", utc(2026, 3, 8, 6, 59), NEW_YORK, DAY, utc(2026, 3, 8, 6, 30)),  # 01:30
    # fall back: 2026-11-01 01:00-01:59 happens twice; it fires at the first (EDT) pass
    ("30 1 * * *", utc(2026, 11, 1, 7, 0), NEW_YORK, DAY, utc(2026, 11, 1, 5, 30)),
    ("30 1 * * *", utc(2026, 11, 1, 6, 45), NEW_YORK, DAY, utc(2026, 11, 1, 5, 30)),  # 2nd pass
    ("30 1 * * *", utc(2026, 11, 1, 6, 30), NEW_YORK, DAY, utc(2026, 11, 1, 5, 30)),
    ("30 1 * * *", utc(2026, 11, 1, 6, 30), NEW_YORK, 30 * MINUTE, None),
    ("30 1 * * *", utc(2026, 11, 1, 5, 29), NEW_YORK, DAY, utc(2026, 10, 31, 5, 30)),
    ("45 1 * * *", utc(2026, 11, 1, 6, 15), NEW_YORK, DAY, utc(2026, 11, 1, 5, 45)),  # 01:15 EST
    ("0 * * * *", utc(2026, 11, 1, 6, 59), NEW_YORK, DAY, utc(2026, 11, 1, 5, 0)),  # 01:59 EST
    ("0 * * * *", utc(2026, 11, 1, 7, 0), NEW_YORK, DAY, utc(2026, 11, 1, 7, 0)),  # 02:00 EST
    ("0 2 * * *", utc(2026, 11, 1, 7, 0), NEW_YORK, DAY, utc(2026, 11, 1, 7, 0)),
    # Berlin: CET = UTC+1, CEST = UTC+2; spring forward 2026-03-29 02:00 -> 03:00
    ("0 8 * * *", berlin(2026, 1, 15, 9, 0), BERLIN, DAY, utc(2026, 1, 15, 7, 0)),
    ("0 8 * * *", berlin(2026, 7, 15, 9, 0), BERLIN, DAY, utc(2026, 7, 15, 6, 0)),
    ("30 2 * * *", berlin(2026, 3, 29, 12, 0), BERLIN, DAY, None),
    ("30 2 * * *", berlin(2026, 3, 30, 12, 0), BERLIN, DAY, utc(2026, 3, 30, 0, 30)),
    ("30 2 * * *", berlin(2026, 10, 25, 12, 0), BERLIN, DAY, utc(2026, 10, 25, 0, 30)),
    ("0 0 * * MON-FRI", berlin(2026, 1, 5, 0, 30), BERLIN, DAY, utc(2026, 1, 4, 23, 0)),
]


@pytest.mark.parametrize(("text", "now", "tz", "lookback", "expected"), LAST_FIRE_CASES)
def test_last_fire_at_or_before(
    text: str, now: datetime, tz: ZoneInfo, lookback: timedelta, expected: datetime | None
) -> None:
    got = CronExpression.parse(text).last_fire_at_or_before(now, tz, lookback)
    assert got == expected
    if got is not None:
        assert got.tzinfo is UTC


NEXT_FIRE_CASES: list[Case] = [
    ("0 8 * * 1-5", ny(2026, 1, 5, 7, 0), NEW_YORK, DAY, utc(2026, 1, 5, 13, 0)),
    ("0 8 * * 1-5", ny(2026, 1, 9, 9, 0), NEW_YORK, 2 * DAY, None),  # Friday
    (
        "0 8 * * 1-5",
        ny(2026, 1, 9, 9, 0),
        NEW_YORK,
        3 * DAY,
        utc(2026, 1, 12, 13, 0),
    ),
    # minute resolution: 08:00:30 is not before the 08:00 fire; the window end is inclusive
    ("0 8 * * 1-5", ny(2026, 1, 5, 8, 0, 30), NEW_YORK, DAY, utc(2026, 1, 6, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 5, 7, 59, 59), NEW_YORK, MINUTE, utc(2026, 1, 5, 13)),
    ("0 8 * * 1-5", ny(2026, 1, 5, 7, 58), NEW_YORK, MINUTE, None),
    ("0 8 * * 1-5", ny(2026, 1, 5, 7, 0), NEW_YORK, timedelta(0), None),
    # a window spanning midnight
    ("0 6 * * *", ny(2026, 1, 9, 22, 0), NEW_YORK, DAY, utc(2026, 1, 10, 11, 0)),
    ("0 0 * * *", ny(2026, 1, 9, 23, 59), NEW_YORK, DAY, utc(2026, 1, 10, 5, 0)),
    ("0 0 1 1 *", utc(2026, 12, 31, 23, 59), ZONE_UTC, MINUTE, utc(2027, 1, 1)),
    # Feb 29
    ("0 0 29 2 *", utc(2027, 6, 1), ZONE_UTC, 400 * DAY, utc(2028, 2, 29)),
    ("0 0 29 2 *", utc(2026, 6, 1), ZONE_UTC, 400 * DAY, None),
    ("0 0 29 2 *", utc(2028, 2, 29), ZONE_UTC, 400 * DAY, None),
    ("0 0 31 2 *", utc(2026, 6, 1), ZONE_UTC, 400 * DAY, None),
    # spring forward in New York: 02:30 on 2026-03-08 is skipped
    ("30 2 * * *", ny(2026, 3, 7, 3, 0), NEW_YORK, DAY, None),
    (
        "30 2 * * *",
        ny(2026, 3, 7, 3, 0),
        NEW_YORK,
        2 * DAY,
        utc(2026, 3, 9, 6, 30),
    ),
    ("*/30 * * * *", utc(2026, 3, 8, 6, 30), NEW_YORK, DAY, utc(2026, 3, 8, 7, 0)),  # 03:00 EDT
    # fall back in New York: only the first 01:30 fires
    ("30 1 * * *", utc(2026, 11, 1, 5, 0), NEW_YORK, DAY, utc(2026, 11, 1, 5, 30)),
    ("30 1 * * *", utc(2026, 11, 1, 5, 30), NEW_YORK, 12 * 60 * MINUTE, None),
    ("30 1 * * *", utc(2026, 11, 1, 5, 30), NEW_YORK, 2 * DAY, utc(2026, 11, 2, 6, 30)),
    ("*/15 1 * * *", utc(2026, 11, 1, 5, 45), NEW_YORK, DAY, None),
    ("*/15 1 * * *", utc(2026, 11, 1, 5, 44), NEW_YORK, DAY, utc(2026, 11, 1, 5, 45)),
    ("0 * * * *", utc(2026, 11, 1, 5, 0), NEW_YORK, DAY, utc(2026, 11, 1, 7, 0)),  # 02:00 EST
    ("0 * * * *", utc(2026, 11, 1, 6, 0), NEW_YORK, DAY, utc(2026, 11, 1, 7, 0)),  # from 01:00 EST
    ("45 1 * * *", utc(2026, 11, 1, 6, 15), NEW_YORK, DAY, None),  # from 01:15 EST
    # Berlin
    ("0 8 * * *", berlin(2026, 7, 15, 7, 0), BERLIN, DAY, utc(2026, 7, 15, 6, 0)),
    ("30 2 * * *", berlin(2026, 3, 28, 12, 0), BERLIN, DAY, None),
    ("30 2 * * *", berlin(2026, 10, 25, 0, 0), BERLIN, DAY, utc(2026, 10, 25, 0, 30)),
    ("@hourly", utc(2026, 1, 1, 0, 0, 1), ZONE_UTC, DAY, utc(2026, 1, 1, 1, 0)),
]


@pytest.mark.parametrize(("text", "now", "tz", "lookahead", "expected"), NEXT_FIRE_CASES)
def test_next_fire_after(
    text: str, now: datetime, tz: ZoneInfo, lookahead: timedelta, expected: datetime | None
) -> None:
    got = CronExpression.parse(text).next_fire_after(now, tz, lookahead)
    assert got == expected
    if got is not None:
        assert got.tzinfo is UTC


def test_naive_now_raises() -> None:
    expr = CronExpression.parse("0 8 * * *")
    naive = datetime(2026, 1, 5, 9, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        expr.last_fire_at_or_before(naive, NEW_YORK, DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        expr.next_fire_after(naive, NEW_YORK, DAY)


def test_huge_windows_do_not_overflow() -> None:
    expr = CronExpression.parse("0 0 31 2 *")  # never fires
    now = utc(2026, 1, 1)
    assert expr.last_fire_at_or_before(now, ZONE_UTC, timedelta(days=3)) is None
    assert expr.next_fire_after(now, ZONE_UTC, timedelta(days=3)) is None
    daily = CronExpression.parse("@daily")
    assert daily.last_fire_at_or_before(now, ZONE_UTC, timedelta.max) == now
    assert daily.next_fire_after(now, ZONE_UTC, timedelta.max) == utc(2026, 1, 2)


# --------------------------------------------------------------------------- properties


def brute_last(
    expr: CronExpression, now: datetime, tz: ZoneInfo, lookback: timedelta
) -> datetime | None:
    """Walk every UTC minute backwards; an instant fires if its wall time matches and
    it is the first (fold=0) occurrence of that wall time."""
    instant = now.astimezone(UTC).replace(second=0, microsecond=0)
    lower = instant - lookback
    while instant >= lower:
        wall = instant.astimezone(tz)
        if wall.fold == 0 and expr.matches(wall.replace(tzinfo=None)):
            return instant
        instant -= MINUTE
    return None


def brute_next(
    expr: CronExpression, now: datetime, tz: ZoneInfo, lookahead: timedelta
) -> datetime | None:
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    instant, upper = start + MINUTE, start + lookahead
    while instant <= upper:
        wall = instant.astimezone(tz)
        if wall.fold == 0 and expr.matches(wall.replace(tzinfo=None)):
            return instant
        instant += MINUTE
    return None


@st.composite
def cron_fields(
    draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] = (), implicit_high: int = -1
) -> str:
    """One random field: '*', values, ranges and steps, sometimes as names, in a list."""
    top = implicit_high if implicit_high >= 0 else high

    def value(v: int) -> str:
        index = v - low if low == 1 else v
        if names and index < len(names) and draw(st.booleans()):
            name = names[index]
            return draw(st.sampled_from([name, name.lower(), name.title()]))
        return str(v)

    elements: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["*", "value", "range", "*/n", "a-b/n", "a/n"]))
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, high))
        n = draw(st.integers(1, top - low + 1))
        if kind == "*":
            elements.append("*")
        elif kind == "value":
            elements.append(value(a))
        elif kind == "range":
            elements.append(f"{value(a)}-{value(b)}")
        elif kind == "*/n":
            elements.append(f"*/{n}")
        elif kind == "a-b/n":
            elements.append(f"{value(a)}-{value(b)}/{n}")
        else:
            elements.append(f"{value(a)}/{n}")
    return ",".join(elements)


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@st.composite
def cron_expressions(draw: st.DrawFn) -> CronExpression:
    text = " ".join(
        [
            draw(cron_fields(0, 59)),
            draw(cron_fields(0, 23)),
            # keep the day fields loose so that a 3-day window usually contains fires
            draw(st.one_of(st.just("*"), cron_fields(1, 31))),
            draw(st.one_of(st.just("*"), cron_fields(1, 12, MONTHS))),
            draw(st.one_of(st.just("*"), cron_fields(0, 7, WEEKDAYS, implicit_high=6))),
        ]
    )
    return CronExpression.parse(text)


DST_EDGES = [
    utc(2026, 3, 8, 7, 0),  # New York spring forward
    utc(2026, 11, 1, 6, 0),  # New York fall back
    utc(2026, 4, 4, 15, 0),  # Lord Howe fall back (30 minutes)
    utc(2026, 10, 3, 15, 30),  # Lord Howe spring forward (30 minutes)
    utc(2028, 2, 29, 12, 0),
]

instants = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)).map(
        lambda dt: dt.replace(tzinfo=UTC)
    ),
    st.tuples(
        st.sampled_from(DST_EDGES),
        st.integers(-4 * 24 * 60, 4 * 24 * 60),
        st.integers(0, 59),
    ).map(lambda t: t[0] + timedelta(minutes=t[1], seconds=t[2])),
)

ZONES = [ZONE_UTC, NEW_YORK, ZoneInfo("Australia/Lord_Howe")]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("tz", ZONES, ids=str)
@PROPERTY_SETTINGS
@given(expr=cron_expressions(), now=instants)
def test_last_fire_matches_brute_force(tz: ZoneInfo, expr: CronExpression, now: datetime) -> None:
    lookback = 3 * DAY
    expected = brute_last(expr, now, tz, lookback)
    assert expr.last_fire_at_or_before(now, tz, lookback) == expected
    # `now` may be given in any zone
    assert expr.last_fire_at_or_before(now.astimezone(tz), tz, lookback) == expected
    if expected is not None:
        assert expr.next_fire_after(expected - MINUTE, tz, MINUTE) == expected
        assert expr.next_fire_after(expected - timedelta(seconds=1), tz, DAY) == expected


@pytest.mark.parametrize("tz", ZONES, ids=str)
@PROPERTY_SETTINGS
@given(expr=cron_expressions(), now=instants)
def test_next_fire_matches_brute_force(tz: ZoneInfo, expr: CronExpression, now: datetime) -> None:
    lookahead = 3 * DAY
    expected = brute_next(expr, now, tz, lookahead)
    assert expr.next_fire_after(now, tz, lookahead) == expected
    if expected is not None:
        assert expr.last_fire_at_or_before(expected + timedelta(seconds=59), tz, MINUTE) == expected
