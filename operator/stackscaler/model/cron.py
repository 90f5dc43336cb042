"""Standard 5-field cron expressions, evaluated in a time zone's wall-clock time.

The dialect is Vixie/POSIX cron as a Kubernetes ``CronJob`` accepts it::

    minute hour day-of-month month day-of-week

with ``*``, numbers, ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n``
(``a`` up to the field's maximum), comma lists, month names ``JAN``-``DEC``
and weekday names ``SUN``-``SAT`` (case-insensitive, also inside ranges),
``7`` for Sunday, and the macros ``@yearly``/``@annually``, ``@monthly``,
``@weekly``, ``@daily``/``@midnight`` and ``@hourly``. Quartz extensions
(``?``, ``L``, ``W``, ``#``, a seconds or a year field) are rejected.

When both day-of-month and day-of-week are restricted (their text does not
start with ``*``), a day matches if *either* matches (the Vixie rule);
otherwise both must match.

Fire times are wall times of the schedule's time zone. A wall time that does
not exist (inside a spring-forward gap) does not fire that day; an ambiguous
wall time (inside a fall-back overlap) fires once, at its first occurrence.

All comparisons are at minute resolution: ``now`` is truncated to its minute
(in UTC), so a fire at 08:00:00 is "at or before" ``now`` = 08:00:30 and is
not "after" it.

Pure: no I/O and no clock; time is always an argument.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["CronExpression", "CronSyntaxError"]


class CronSyntaxError(ValueError):
    """Raised by :meth:`CronExpression.parse`.

    The message names the field, the bad token and the fix, e.g.
    ``day-of-week field '8': value 8 out of range 0-7 (0 or 7 is Sunday)`` or
    ``expected 5 fields (minute hour day-of-month month day-of-week), got 4``.
    """


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int  # largest literal value accepted
    implicit_high: int  # upper end of '*' and of 'a/n'
    names: Mapping[str, int]
    range_text: str  # shown in "out of range" messages
    expected: str  # shown in "invalid value" messages


_MONTH_NAMES: Final[Mapping[str, int]] = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_WEEKDAY_NAMES: Final[Mapping[str, int]] = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}

_MINUTE: Final = _FieldSpec("minute", 0, 59, 59, {}, "0-59", "a number 0-59")
_HOUR: Final = _FieldSpec("hour", 0, 23, 23, {}, "0-23", "a number 0-23")
_DAY_OF_MONTH: Final = _FieldSpec("day-of-month", 1, 31, 31, {}, "1-31", "a number 1-31")
_MONTH: Final = _FieldSpec(
    "month", 1, 12, 12, _MONTH_NAMES, "1-12", "a number 1-12 or a month name JAN-DEC"
)
# '*' and 'a/n' stop at 6 (Saturday): Sunday is 0, and 7 is only an alias of it.
_DAY_OF_WEEK: Final = _FieldSpec(
    "day-of-week",
    0,
    7,
    6,
    _WEEKDAY_NAMES,
    "0-7 (0 or 7 is Sunday)",
    "a number 0-7 (0 or 7 is Sunday) or a weekday name SUN-SAT",
)
_FIELDS: Final = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)
_FIELD_LIST: Final = "minute hour day-of-month month day-of-week"

_MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DIGITS: Final = re.compile(r"[0-9]+")
_QUARTZ_L_W: Final = re.compile(r"L|LW|L-[0-9]+|[0-9]+[LW]")
_FIELD_JOINERS: Final = (",", "-", "/")


def _field_error(spec: _FieldSpec, text: str, detail: str) -> CronSyntaxError:
    return CronSyntaxError(f"{spec.name} field '{text}': {detail}")


def _parse_value(spec: _FieldSpec, text: str, element: str, token: str) -> int:
    """One number or name of an element (``token`` is a range end or a single value)."""
    if _DIGITS.fullmatch(token):
        value = int(token)
        if not spec.low <= value <= spec.high:
            raise _field_error(spec, text, f"value {value} out of range {spec.range_text}")
        return value
    upper = token.upper()
    if upper in spec.names:
        return spec.names[upper]
    if token == "":
        raise _field_error(spec, text, f"missing value in '{element}'; expected {spec.expected}")
    if _QUARTZ_L_W.fullmatch(upper):
        raise _field_error(
            spec,
            text,
            f"'{token}' is not supported: 'L' and 'W' are Quartz extensions, "
            "not standard cron; list the values explicitly",
        )
    if "*" in token:
        raise _field_error(
            spec,
            text,
            f"misplaced '*' in '{element}'; use '*', '*/n' or 'a-b'",
        )
    raise _field_error(spec, text, f"invalid value '{token}'; expected {spec.expected}")


def _parse_element(spec: _FieldSpec, text: str, element: str) -> range:
    base, slash, step_text = element.partition("/")
    step = 1
    if slash:
        if not _DIGITS.fullmatch(step_text):
            raise _field_error(
                spec,
                text,
                f"step '{step_text}' in '{element}' must be a positive whole number",
            )
        step = int(step_text)
        if step == 0:
            raise _field_error(spec, text, f"step 0 in '{element}' must be at least 1")
        if base == "":
            raise _field_error(
                spec, text, f"missing start before '/' in '{element}'; use '*/{step}'"
            )

    if base == "*":
        return range(spec.low, spec.implicit_high + 1, step)

    start_text, dash, end_text = base.partition("-")
    if dash and start_text == "":
        raise _field_error(
            spec, text, f"missing range start in '{element}' (negative values are not allowed)"
        )
    start = _parse_value(spec, text, element, start_text)
    if dash:
        if "-" in end_text:
            raise _field_error(spec, text, f"'{element}' has more than one '-'; use 'a-b'")
        end = _parse_value(spec, text, element, end_text)
        if start > end:
            fix = "write e.g. 5-7 or FRI-SAT,SUN" if spec is _DAY_OF_WEEK else "split it in two"
            raise _field_error(
                spec,
                text,
                f"range {start_text}-{end_text} is reversed: the start must not exceed the "
                f"end (wrap-around ranges are not supported; {fix})",
            )
    elif slash:
        end = max(start, spec.implicit_high)
    else:
        end = start
    return range(start, end + 1, step)


def _parse_field(spec: _FieldSpec, text: str) -> frozenset[int]:
    if text == "":
        raise _field_error(spec, text, f"field is empty; expected {spec.expected} or '*'")
    if "?" in text:
        raise _field_error(
            spec, text, "'?' is not supported (it is a Quartz extension); use '*' for 'any'"
        )
    if "#" in text:
        raise _field_error(
            spec,
            text,
            "'#' (n-th weekday of the month) is not supported (it is a Quartz extension)",
        )
    values: set[int] = set()
    for element in text.split(","):
        if element == "":
            raise _field_error(spec, text, "empty list element; remove the stray ','")
        values.update(_parse_element(spec, text, element))
    if spec is _DAY_OF_WEEK and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _split_fields(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("@"):
        parts = stripped.split()
        macro = parts[0].lower()
        if macro == "@reboot":
            raise CronSyntaxError("'@reboot' is not supported: it is not a time schedule")
        if macro not in _MACROS:
            known = ", ".join(_MACROS)
            raise CronSyntaxError(f"unknown macro '{parts[0]}'; expected one of {known}")
        if len(parts) > 1:
            raise CronSyntaxError(
                f"macro '{parts[0]}' must stand alone, found extra text '{' '.join(parts[1:])}'"
            )
        return _MACROS[macro].split()
    fields = stripped.split()
    if len(fields) != len(_FIELDS):
        message = f"expected 5 fields ({_FIELD_LIST}), got {len(fields)}"
        if any(f.startswith(_FIELD_JOINERS) or f.endswith(_FIELD_JOINERS) for f in fields):
            message += "; spaces are not allowed inside a field (write '1,2' not '1, 2')"
        elif len(fields) in (6, 7):
            message += "; seconds and year fields are not supported"
        raise CronSyntaxError(message)
    return fields


# --------------------------------------------------------------------------- evaluation

_UTC: Final = UTC
_ONE_DAY: Final = timedelta(days=1)
_ZERO: Final = timedelta(0)
# Search windows are clamped to these so that date arithmetic cannot overflow.
_EARLIEST: Final = datetime(2, 1, 1, tzinfo=_UTC)
_LATEST: Final = datetime(9998, 12, 31, tzinfo=_UTC)


def _minute_floor_utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(
            f"now must be timezone-aware, got naive {now.isoformat()}; "
            "pass e.g. datetime.now(timezone.utc)"
        )
    return now.astimezone(_UTC).replace(second=0, microsecond=0)


def _earlier(instant: datetime, delta: timedelta) -> datetime:
    try:
        return max(instant - delta, _EARLIEST)
    except OverflowError:
        return _EARLIEST


def _later(instant: datetime, delta: timedelta) -> datetime:
    try:
        return min(instant + delta, _LATEST)
    except OverflowError:
        return _LATEST


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall time of ``instant`` in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def _upper_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """A wall time W such that every wall time after W fires after ``instant``.

    Wall times map to instants monotonically (taking the first occurrence of
    ambiguous ones), except that ``instant`` may lie in the *second* pass of a
    fall-back overlap, where first occurrences of later wall times still lie
    before it; W then moves forward by the size of the overlap.
    """
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:
        first = local.replace(fold=0).utcoffset()
        second = local.utcoffset()
        if first is not None and second is not None and first > second:
            wall += first - second
    return wall


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The first instant showing ``wall`` in ``tz``, or None if ``wall`` does not exist."""
    instant = wall.replace(tzinfo=tz).astimezone(_UTC)  # fold=0: the first occurrence
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return None  # in a spring-forward gap
    return instant


def _first_of_next_month(day: date) -> date:
    if day.month == 12:
        return date(day.year + 1, 1, 1)
    return date(day.year, day.month + 1, 1)


def _check_set(name: str, values: frozenset[int], low: int, high: int) -> None:
    if not values:
        raise ValueError(f"{name} must not be empty")
    if min(values) < low or max(values) > high:
        raise ValueError(f"{name} must lie within {low}-{high}, got {sorted(values)}")


@dataclass(frozen=True)
class CronExpression:
    """A parsed 5-field cron expression; build it with :meth:`parse`."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool

    _minute_seq: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hour_seq: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_set("minutes", self.minutes, 0, 59)
        _check_set("hours", self.hours, 0, 23)
        _check_set("days_of_month", self.days_of_month, 1, 31)
        _check_set("months", self.months, 1, 12)
        _check_set("days_of_week", self.days_of_week, 0, 6)
        object.__setattr__(self, "_minute_seq", tuple(sorted(self.minutes)))
        object.__setattr__(self, "_hour_seq", tuple(sorted(self.hours)))

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse ``text``; raise :class:`CronSyntaxError` naming the bad field and token."""
        minute, hour, dom, month, dow = _split_fields(text)
        return cls(
            expression=text,
            minutes=_parse_field(_MINUTE, minute),
            hours=_parse_field(_HOUR, hour),
            days_of_month=_parse_field(_DAY_OF_MONTH, dom),
            months=_parse_field(_MONTH, month),
            days_of_week=_parse_field(_DAY_OF_WEEK, dow),
            dom_restricted=not dom.startswith("*"),
            dow_restricted=not dow.startswith("*"),
        )

    # ----------------------------------------------------------------- matching

    def _day_matches(self, day: date) -> bool:
        dom_ok = day.day in self.days_of_month
        dow_ok = day.isoweekday() % 7 in self.days_of_week
        if self.dom_restricted and self.dow_restricted:
            return dom_ok or dow_ok
        return dom_ok and dow_ok

    def matches(self, wall: datetime) -> bool:
        """Whether the naive wall-clock time ``wall`` matches; seconds are ignored.

        This is a pure calendar match: it knows nothing of time zones, so it is
        True for wall times that a zone skips. Raises ValueError for an aware
        datetime (convert it to the schedule's wall time first).
        """
        if wall.tzinfo is not None:
            raise ValueError(
                f"matches() takes a naive wall-clock time, got aware {wall.isoformat()}; "
                "use dt.astimezone(tz).replace(tzinfo=None)"
            )
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_matches(wall.date())
        )

    # ----------------------------------------------------------------- searching

    def last_fire_at_or_before(
        self, now: datetime, tz: ZoneInfo, lookback: timedelta
    ) -> datetime | None:
        """The latest fire time t with ``now - lookback <= t <= now``, in UTC, or None.

        ``now`` must be aware; it is truncated to its minute. The schedule's
        wall times are those of ``tz``.
        """
        upper = _minute_floor_utc(now)
        if lookback < _ZERO:
            return None
        lower = _earlier(upper, lookback)
        return self._search_backward(lower, upper, tz)

    def next_fire_after(self, now: datetime, tz: ZoneInfo, lookahead: timedelta) -> datetime | None:
        """The earliest fire time t with ``now < t <= now + lookahead``, in UTC, or None.

        ``now`` must be aware; it is truncated to its minute. The schedule's
        wall times are those of ``tz``.
        """
        after = _minute_floor_utc(now)
        if lookahead <= _ZERO:
            return None
        upper = _later(after, lookahead)
        return self._search_forward(after, upper, tz)

    def _search_backward(self, lower: datetime, upper: datetime, tz: ZoneInfo) -> datetime | None:
        # Mapping each existing wall time to its first occurrence is monotonic, so
        # candidates are walked in descending wall order and the first one inside
        # [lower, upper] is the answer; the first one below `lower` ends the search.
        start = _upper_wall(upper, tz)
        start_day = start.date()
        # A wall time before lower's own wall time is always before `lower`.
        stop_day = _wall(lower, tz).date()
        hours, minutes = self._hour_seq, self._minute_seq
        months = self.months
        day = start_day
        while day >= stop_day:
            if day.month not in months:
                day = day.replace(day=1) - _ONE_DAY
                continue
            if self._day_matches(day):
                first_day = day == start_day
                hour_end = bisect_right(hours, start.hour) if first_day else len(hours)
                for hour_index in range(hour_end - 1, -1, -1):
                    hour = hours[hour_index]
                    if first_day and hour == start.hour:
                        minute_end = bisect_right(minutes, start.minute)
                    else:
                        minute_end = len(minutes)
                    for minute_index in range(minute_end - 1, -1, -1):
                        wall = datetime.combine(day, time(hour, minutes[minute_index]))
                        fire = _wall_to_utc(wall, tz)
                        if fire is None or fire > upper:
                            continue
                        return fire if fire >= lower else None
            day -= _ONE_DAY
        return None

    def _search_forward(self, after: datetime, upper: datetime, tz: ZoneInfo) -> datetime | None:
        # Wall times up to after's own wall time are never after `after`.
        start = _wall(after, tz)
        start_day = start.date()
        stop_day = _upper_wall(upper, tz).date()
        hours, minutes = self._hour_seq, self._minute_seq
        months = self.months
        day = start_day
        while day <= stop_day:
            if day.month not in months:
                day = _first_of_next_month(day)
                continue
            if self._day_matches(day):
                first_day = day == start_day
                hour_start = bisect_left(hours, start.hour) if first_day else 0
                for hour in hours[hour_start:]:
                    if first_day and hour == start.hour:
                        minute_start = bisect_right(minutes, start.minute)
                    else:
                        minute_start = 0
                    for minute in minutes[minute_start:]:
                        wall = datetime.combine(day, time(hour, minute))
                        fire = _wall_to_utc(wall, tz)
                        if fire is None or fire <= after:
                            continue
                        return fire if fire <= upper else None
            day += _ONE_DAY
        return None
