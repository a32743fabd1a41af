"""Cron expressions as the real engine reads them, and their next fire times.

The engine's ``iii-cron`` worker parses schedules with the Rust ``cron`` crate
(0.15), whose dialect differs from crontab(5) in ways a test must see:

* six or seven fields: ``second minute hour day-of-month month day-of-week
  [year]``; five fields are an error (position 0 is always seconds);
* days of the week are numbered 1-7 with **Sunday = 1** (``0`` is refused,
  ``1-5`` is Sunday to Thursday); names (``MON``, ``Tues``, ``friday``) and
  month names (``JAN``, ``february``) are case-insensitive;
* day-of-month and day-of-week must **both** match (crontab ORs them);
* ``?`` means "any" in the two day fields; ``*/n``, ``a-b/n`` and ``a/n``
  (from ``a`` to the field's maximum) step through a range; lists with ``,``;
* years run from 1970 to 2100; ``@yearly``, ``@monthly``, ``@weekly``,
  ``@daily`` and ``@hourly`` are shorthands;
* whitespace may sit around numbers and names inside a field (``1 - 5`` is a
  range), and a ``*`` needs no space after it (``******`` is six fields).

The grammar below follows the crate's parser combinator for combinator (the
same alternatives in the same order, with the same backtracking), so exactly
the expressions the engine accepts parse.  Times are UTC, as the engine's.
croniter was not used: it reads five-field crontab, numbers Sunday 0 and ORs
the day fields, so it would accept and schedule differently.
"""

from __future__ import annotations

import calendar
import datetime
from bisect import bisect_left
from typing import Optional, Union

import attrs

__all__ = ["CronError", "CronSchedule", "rfc3339"]

_WS = " \t\r\n"
_DIGITS = "0123456789"
_U32_MAX = 2**32 - 1


class CronError(ValueError):
    """A cron expression the engine would refuse (the message says why)."""


@attrs.frozen
class _Unit:
    name: str
    low: int
    high: int
    names: Optional[dict[str, int]] = None

    def by_name(self, name: str) -> int:
        if self.names is None:
            raise CronError(
                f"The '{self.name}' field does not support using names. '{name}' specified."
            )
        ordinal = self.names.get(name.lower())
        if ordinal is None:
            what = "day of the week" if self.name == "Days of Week" else "month name"
            raise CronError(f"'{name}' is not a valid {what}.")
        return ordinal

    def check(self, ordinal: int) -> int:
        if ordinal < self.low:
            raise CronError(
                f"{self.name} must be greater than or equal to {self.low}. ('{ordinal}' specified.)"
            )
        if ordinal > self.high:
            raise CronError(f"{self.name} must be less than {self.high}. ('{ordinal}' specified.)")
        return ordinal


_MONTHS = {
    **dict.fromkeys(("jan", "january"), 1),
    **dict.fromkeys(("feb", "february"), 2),
    **dict.fromkeys(("mar", "march"), 3),
    **dict.fromkeys(("apr", "april"), 4),
    "may": 5,
    **dict.fromkeys(("jun", "june"), 6),
    **dict.fromkeys(("jul", "july"), 7),
    **dict.fromkeys(("aug", "august"), 8),
    **dict.fromkeys(("sep", "september"), 9),
    **dict.fromkeys(("oct", "october"), 10),
    **dict.fromkeys(("nov", "november"), 11),
    **dict.fromkeys(("dec", "december"), 12),
}
_WEEKDAYS = {
    **dict.fromkeys(("sun", "sunday"), 1),
    **dict.fromkeys(("mon", "monday"), 2),
    **dict.fromkeys(("tue", "tues", "tuesday"), 3),
    **dict.fromkeys(("wed", "wednesday"), 4),
    **dict.fromkeys(("thu", "thurs", "thursday"), 5),
    **dict.fromkeys(("fri", "friday"), 6),
    **dict.fromkeys(("sat", "saturday"), 7),
}

SECONDS = _Unit("Seconds", 0, 59)
MINUTES = _Unit("Minutes", 0, 59)
HOURS = _Unit("Hours", 0, 23)
DAYS_OF_MONTH = _Unit("Days of Month", 1, 31)
MONTHS = _Unit("Months", 1, 12, _MONTHS)
DAYS_OF_WEEK = _Unit("Days of Week", 1, 7, _WEEKDAYS)
YEARS = _Unit("Years", 1970, 2100)

# -- the grammar -------------------------------------------------------------------------
#
# Specifiers, as the crate's parser builds them:
#   ("all",) | ("point", n) | ("range", a, b) | ("named_range", a, b)
# Root specifiers: a specifier | ("period", specifier, step) | ("named_point", name)

Spec = tuple[Union[str, int], ...]
Root = Union[Spec, tuple[str, Spec, int]]


def _ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _literal(s: str, i: int, text: str) -> Optional[int]:
    return i + len(text) if s.startswith(text, i) else None


def _ordinal(s: str, i: int) -> Optional[tuple[int, int]]:
    i = _ws(s, i)
    j = i
    while j < len(s) and s[j] in _DIGITS:
        j += 1
    if j == i:
        return None
    value = int(s[i:j])
    if value > _U32_MAX:  # does not fit the crate's u32: no match
        return None
    return value, _ws(s, j)


def _name(s: str, i: int) -> Optional[tuple[str, int]]:
    i = _ws(s, i)
    j = i
    while j < len(s) and s[j].isascii() and s[j].isalpha():
        j += 1
    if j == i:
        return None
    return s[i:j], _ws(s, j)


def _specifier(s: str, i: int, with_any: bool) -> Optional[tuple[Spec, int]]:
    if with_any and s.startswith("?", i):
        return ("all",), i + 1
    if s.startswith("*", i):
        return ("all",), i + 1
    first = _ordinal(s, i)
    if first is not None:
        dash = _literal(s, first[1], "-")
        if dash is not None:
            second = _ordinal(s, dash)
            if second is not None:
                return ("range", first[0], second[0]), second[1]
        return ("point", first[0]), first[1]
    name = _name(s, i)
    if name is not None:
        dash = _literal(s, name[1], "-")
        if dash is not None:
            other = _name(s, dash)
            if other is not None:
                return ("named_range", name[0], other[0]), other[1]
    return None


def _root(s: str, i: int, with_any: bool) -> Optional[tuple[Root, int]]:
    spec = _specifier(s, i, with_any)
    if spec is not None:
        slash = _literal(s, spec[1], "/")
        if slash is not None:
            step = _ordinal(s, slash)
            if step is not None:
                return ("period", spec[0], step[0]), step[1]
        return spec
    name = _name(s, i)
    if name is not None:
        return ("named_point", name[0]), name[1]
    return None


def _field(s: str, i: int, with_any: bool) -> Optional[tuple[list[Root], int]]:
    i = _ws(s, i)
    first = _root(s, i, with_any)
    if first is None:
        return None
    roots = [first[0]]
    i = first[1]
    while True:
        comma = _literal(s, i, ",")
        if comma is None:
            break
        item = _root(s, comma, with_any)
        if item is None:  # a dangling ',' is left for the next field (which fails on it)
            break
        roots.append(item[0])
        i = item[1]
    return roots, _ws(s, i)


# -- from specifiers to ordinals ---------------------------------------------------------


def _from_spec(unit: _Unit, spec: Spec) -> list[int]:
    kind = spec[0]
    if kind == "all":
        return list(range(unit.low, unit.high + 1))
    if kind == "point":
        return [int(spec[1])]
    if kind == "range":
        start, end = int(spec[1]), int(spec[2])
        try:
            unit.check(start)
            unit.check(end)
        except CronError:
            start = end + 1  # reported below, as the crate does
        if start > end:
            raise CronError(f"Invalid range for {unit.name}: {spec[1]}-{spec[2]}")
        return list(range(start, end + 1))
    start_name, end_name = str(spec[1]), str(spec[2])
    start, end = unit.by_name(start_name), unit.by_name(end_name)
    if start > end:
        raise CronError(f"Invalid named range for {unit.name}: {start_name}-{end_name}")
    return list(range(start, end + 1))


def _from_root(unit: _Unit, root: Root) -> list[int]:
    if root[0] == "period":
        spec, step = root[1], root[2]
        assert isinstance(spec, tuple) and isinstance(step, int)
        if step == 0:
            raise CronError("range step cannot be zero")
        if step > unit.high:
            raise CronError(f"{unit.name} must be between 1 and {unit.high}. ('{step}' specified.)")
        if spec[0] == "point":
            base = list(range(unit.check(int(spec[1])), unit.high + 1))
        else:
            base = _from_spec(unit, spec)
        return base[::step]
    if root[0] == "named_point":
        return [unit.by_name(str(root[1]))]
    return _from_spec(unit, root)  # type: ignore[arg-type]


def _ordinals(unit: _Unit, roots: list[Root]) -> tuple[int, ...]:
    if len(roots) == 1 and roots[0] == ("all",):
        return tuple(range(unit.low, unit.high + 1))
    found: set[int] = set()
    for root in roots:
        found.update(unit.check(n) for n in _from_root(unit, root))
    return tuple(sorted(found))


_SHORTHANDS: dict[str, tuple[tuple[int, ...], ...]] = {}


def _all(unit: _Unit) -> tuple[int, ...]:
    return tuple(range(unit.low, unit.high + 1))


def _shorthands() -> dict[str, tuple[tuple[int, ...], ...]]:
    if not _SHORTHANDS:
        zero = (0,)
        _SHORTHANDS.update(
            {
                "@yearly": (zero, zero, zero, (1,), (1,), _all(DAYS_OF_WEEK)),
                "@monthly": (zero, zero, zero, (1,), _all(MONTHS), _all(DAYS_OF_WEEK)),
                "@weekly": (zero, zero, zero, _all(DAYS_OF_MONTH), _all(MONTHS), (1,)),
                "@daily": (zero, zero, zero, _all(DAYS_OF_MONTH), _all(MONTHS), _all(DAYS_OF_WEEK)),
                "@hourly": (
                    zero,
                    zero,
                    _all(HOURS),
                    _all(DAYS_OF_MONTH),
                    _all(MONTHS),
                    _all(DAYS_OF_WEEK),
                ),
            }
        )
    return _SHORTHANDS


def _parse(expression: str) -> tuple[tuple[int, ...], ...]:
    start = _ws(expression, 0)
    for keyword, fields in _shorthands().items():
        if expression.startswith(keyword, start):
            end = _ws(expression, start + len(keyword))
            if end != len(expression):
                raise CronError(f"unexpected {expression[end:]!r} after {keyword}")
            return (*fields, _all(YEARS))
    units = (SECONDS, MINUTES, HOURS, DAYS_OF_MONTH, MONTHS, DAYS_OF_WEEK)
    out: list[tuple[int, ...]] = []
    i = 0
    for index, unit in enumerate(units):
        field = _field(expression, i, with_any=unit in (DAYS_OF_MONTH, DAYS_OF_WEEK))
        if field is None:
            if i >= len(expression):
                raise CronError(
                    f"expected 6 or 7 fields (second minute hour day-of-month month "
                    f"day-of-week [year]), got {index}"
                )
            raise CronError(f"unexpected {expression[i:]!r} in the {unit.name} field")
        out.append(_ordinals(unit, field[0]))
        i = field[1]
    if i < len(expression):
        field = _field(expression, i, with_any=False)
        if field is None:
            raise CronError(f"unexpected {expression[i:]!r} after the Days of Week field")
        years = _ordinals(YEARS, field[0])
        i = field[1]
        if i < len(expression):
            raise CronError(f"unexpected {expression[i:]!r} after the Years field")
    else:
        years = _all(YEARS)
    return (*out, years)


# -- the schedule ------------------------------------------------------------------------


def _next_in(values: tuple[int, ...], at_least: int) -> Optional[int]:
    index = bisect_left(values, at_least)
    return values[index] if index < len(values) else None


@attrs.frozen
class CronSchedule:
    """A parsed expression: the ordinals each field allows (UTC)."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    years: tuple[int, ...]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``; ``CronError`` says what the engine refuses."""
        return cls(expression, *_parse(expression))

    def includes(self, when: datetime.datetime) -> bool:
        """Whether the UTC time ``when`` (whole seconds) is on the schedule."""
        return (
            when.year in self.years
            and when.month in self.months
            and when.day in self.days_of_month
            and _weekday(when) in self.days_of_week
            and when.hour in self.hours
            and when.minute in self.minutes
            and when.second in self.seconds
        )

    def next_after(self, timestamp: float) -> Optional[float]:
        """The first fire time after ``timestamp`` (seconds since the epoch), in
        whole seconds, at least one second after ``floor(timestamp)`` as the crate
        counts; None once the schedule has no time left (after 2100)."""
        start = int(timestamp // 1) + 1
        if start < 0:
            start = 0
        when = datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
        found = self._search(when)
        return None if found is None else found.timestamp()

    def upcoming(self, timestamp: float, count: int) -> list[float]:
        """The next ``count`` fire times after ``timestamp`` (fewer if it runs out)."""
        out: list[float] = []
        current = timestamp
        for _ in range(count):
            nxt = self.next_after(current)
            if nxt is None:
                break
            out.append(nxt)
            current = nxt
        return out

    def _search(self, when: datetime.datetime) -> Optional[datetime.datetime]:
        utc = datetime.timezone.utc
        year, month, day = when.year, when.month, when.day
        hour, minute, second = when.hour, when.minute, when.second
        while True:
            if year not in self.years:
                nxt = _next_in(self.years, year)
                if nxt is None:
                    return None
                year, month, day, hour, minute, second = nxt, 1, 1, 0, 0, 0
            if month not in self.months:
                nxt = _next_in(self.months, month)
                if nxt is None:
                    year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
                    continue
                month, day, hour, minute, second = nxt, 1, 0, 0, 0
            last_day = calendar.monthrange(year, month)[1]
            if day > last_day:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute, second = 1, 0, 0, 0
                continue
            weekday = datetime.date(year, month, day).isoweekday() % 7 + 1
            if day not in self.days_of_month or weekday not in self.days_of_week:
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            if hour not in self.hours:
                nxt = _next_in(self.hours, hour)
                if nxt is None:
                    day, hour, minute, second = day + 1, 0, 0, 0
                    continue
                hour, minute, second = nxt, 0, 0
            if minute not in self.minutes:
                nxt = _next_in(self.minutes, minute)
                if nxt is None:
                    hour, minute, second = hour + 1, 0, 0
                    if hour > 23:
                        day, hour = day + 1, 0
                    continue
                minute, second = nxt, 0
            if second not in self.seconds:
                nxt = _next_in(self.seconds, second)
                if nxt is None:
                    minute, second = minute + 1, 0
                    if minute > 59:
                        hour, minute = hour + 1, 0
                        if hour > 23:
                            day, hour = day + 1, 0
                    continue
                second = nxt
            return datetime.datetime(year, month, day, hour, minute, second, tzinfo=utc)


def _weekday(when: datetime.date) -> int:
    """The crate's day-of-week number: Sunday 1 ... Saturday 7."""
    return when.isoweekday() % 7 + 1


def rfc3339(timestamp: float) -> str:
    """``timestamp`` the way the engine prints times (chrono's ``to_rfc3339``):
    ``+00:00`` offset, fractional seconds only when there are some, in 3 or 6
    digits."""
    micros = round(timestamp * 1_000_000)
    whole, frac = divmod(micros, 1_000_000)
    text = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    if frac == 0:
        return text + "+00:00"
    if frac % 1000 == 0:
        return f"{text}.{frac // 1000:03d}+00:00"
    return f"{text}.{frac:06d}+00:00"
