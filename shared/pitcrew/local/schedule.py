"""EventBridge schedules: ``rate(...)`` and six-field ``cron(...)`` expressions, and the
scheduler that fires the emulator's schedule rules on time.

Cron expressions follow EventBridge, not Unix cron: six fields ``minutes hours day-of-month
month day-of-week year``, always UTC; day-of-week runs 1-7 for SUN-SAT; exactly one of
day-of-month and day-of-week is ``?``; ``L`` (last day of the month, or ``5L``: last Thursday),
``W`` (``15W``: the weekday nearest the 15th; ``LW``: last weekday) and ``#`` (``3#2``: second
Tuesday) are supported. A rate schedule fires first one period after the rule appears, then
every period.

A fired rule delivers the Scheduled Event (``detail-type: Scheduled Event``, ``source:
aws.events``, ``resources: [rule ARN]``, ``time``: the scheduled minute) to its targets.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("pitcrew.local")

UTC = dt.UTC
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MIN_YEAR, _MAX_YEAR = 1970, 2199


class ScheduleError(ValueError):
    """A schedule expression EventBridge would reject; the message says why."""


class Schedule(Protocol):
    expression: str

    def first_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first fire time after the rule appears at ``moment``."""

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The next fire time strictly after ``moment`` (None: never again)."""


def aws_day_of_week(day: dt.date) -> int:
    """EventBridge's day-of-week number: 1 = Sunday ... 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


# ---------------------------------------------------------------------------- rate


@dataclass(frozen=True)
class Rate:
    expression: str
    period: dt.timedelta

    def first_after(self, moment: dt.datetime) -> dt.datetime:
        return moment + self.period

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        return moment + self.period


_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def _parse_rate(expression: str) -> Rate:
    match = _RATE.fullmatch(expression.strip())
    if not match:
        raise ScheduleError(f"{expression!r}: expected rate(VALUE UNIT), e.g. rate(5 minutes)")
    value, unit = int(match.group(1)), match.group(2)
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in _RATE_UNITS:
        raise ScheduleError(f"{expression!r}: the unit must be minute(s), hour(s) or day(s)")
    if value <= 0:
        raise ScheduleError(f"{expression!r}: the value must be a positive whole number")
    if (value == 1) != (unit == singular):
        expected = f"1 {singular}" if value == 1 else f"{value} {singular}s"
        raise ScheduleError(f"{expression!r}: write rate({expected})")
    return Rate(expression, dt.timedelta(seconds=value * _RATE_UNITS[singular]))


# ---------------------------------------------------------------------------- cron


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    steps: bool = True


_MINUTES = _Field("minutes", 0, 59)
_HOURS = _Field("hours", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 1, 7, _DAYS, steps=False)
_YEAR = _Field("year", _MIN_YEAR, _MAX_YEAR)


def _number(text: str, field: _Field, expression: str) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names[upper]
    if not text.isdigit():
        raise ScheduleError(f"{expression!r}: {text!r} is not a valid {field.name} value")
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(
            f"{expression!r}: {field.name} {value} is outside {field.low}-{field.high}"
        )
    return value


def _values(text: str, field: _Field, expression: str) -> frozenset[int] | None:
    """The values a plain field allows (None: every value)."""
    if text == "*":
        return None
    allowed: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and not field.steps:
            raise ScheduleError(f"{expression!r}: {field.name} does not take '/'")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{expression!r}: bad increment in {part!r}")
            step = int(step_text)
        if base == "*":
            start, end = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, field, expression), _number(last, field, expression)
        else:
            start = _number(base, field, expression)
            end = field.high if slash else start
        if start <= end:
            allowed.update(range(start, end + 1, step))
        else:  # a range that wraps, e.g. FRI-MON or NOV-FEB
            span = list(range(start, field.high + 1)) + list(range(field.low, end + 1))
            allowed.update(span[::step])
    return frozenset(allowed)


@dataclass(frozen=True)
class _DayOfMonth:
    days: frozenset[int] | None = None  # None: any day
    last: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # nW

    def matches(self, day: dt.date) -> bool:
        month_days = calendar.monthrange(day.year, day.month)[1]
        if self.last:
            return day.day == month_days
        if self.last_weekday:
            target = dt.date(day.year, day.month, month_days)
            while target.weekday() >= 5:
                target -= dt.timedelta(days=1)
            return day == target
        if self.nearest_weekday is not None:
            wanted = min(self.nearest_weekday, month_days)
            target = dt.date(day.year, day.month, wanted)
            if target.weekday() == 5:  # Saturday: Friday before, unless that leaves the month
                target += dt.timedelta(days=-1 if wanted > 1 else 2)
            elif target.weekday() == 6:  # Sunday: Monday after, unless that leaves the month
                target += dt.timedelta(days=1 if wanted < month_days else -2)
            return day == target
        return self.days is None or day.day in self.days


@dataclass(frozen=True)
class _DayOfWeek:
    days: frozenset[int] | None = None  # None: any day
    last_of_month: int | None = None  # nL
    nth: tuple[int, int] | None = None  # n#k

    def matches(self, day: dt.date) -> bool:
        weekday = aws_day_of_week(day)
        if self.last_of_month is not None:
            month_days = calendar.monthrange(day.year, day.month)[1]
            return weekday == self.last_of_month and day.day + 7 > month_days
        if self.nth is not None:
            wanted, k = self.nth
            return weekday == wanted and (day.day - 1) // 7 + 1 == k
        return self.days is None or weekday in self.days


def _day_of_month(text: str, expression: str) -> _DayOfMonth:
    upper = text.upper()
    if upper == "L":
        return _DayOfMonth(last=True)
    if upper == "LW":
        return _DayOfMonth(last_weekday=True)
    if upper.endswith("W"):
        return _DayOfMonth(nearest_weekday=_number(upper[:-1], _DOM, expression))
    return _DayOfMonth(days=_values(text, _DOM, expression))


def _day_of_week(text: str, expression: str) -> _DayOfWeek:
    upper = text.upper()
    if upper == "L":
        return _DayOfWeek(days=frozenset({7}))
    if upper.endswith("L"):
        return _DayOfWeek(last_of_month=_number(upper[:-1], _DOW, expression))
    if "#" in upper:
        day_text, _, k_text = upper.partition("#")
        if not k_text.isdigit() or not 1 <= int(k_text) <= 5:
            raise ScheduleError(f"{expression!r}: '#' takes 1-5, as in 3#2")
        return _DayOfWeek(nth=(_number(day_text, _DOW, expression), int(k_text)))
    return _DayOfWeek(days=_values(text, _DOW, expression))


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    day_of_month: _DayOfMonth
    months: frozenset[int] | None
    day_of_week: _DayOfWeek
    years: frozenset[int] | None

    def first_after(self, moment: dt.datetime) -> dt.datetime | None:
        return self.next_after(moment)

    def matches_day(self, day: dt.date) -> bool:
        return (
            (self.years is None or day.year in self.years)
            and (self.months is None or day.month in self.months)
            and self.day_of_month.matches(day)
            and self.day_of_week.matches(day)
        )

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        hours = sorted(self.hours) if self.hours is not None else range(24)
        minutes = sorted(self.minutes) if self.minutes is not None else range(60)
        day = start.date()
        while day.year <= _MAX_YEAR:
            if self.years is not None and day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later:
                    return None
                day = dt.date(min(later), 1, 1)
                continue
            if self.months is not None and day.month not in self.months:
                day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
                continue
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=UTC
                        )
                        if candidate >= start:
                            return candidate
            day += dt.timedelta(days=1)
        return None


def _parse_cron(expression: str) -> Cron:
    match = re.fullmatch(r"cron\((.*)\)", expression.strip())
    if not match:
        raise ScheduleError(f"{expression!r}: expected cron(...)")
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(
            f"{expression!r}: EventBridge cron has 6 fields (minutes hours day-of-month month "
            f"day-of-week year), got {len(fields)}"
        )
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(
            f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'"
        )
    return Cron(
        expression=expression,
        minutes=_values(minutes, _MINUTES, expression),
        hours=_values(hours, _HOURS, expression),
        day_of_month=_DayOfMonth() if dom == "?" else _day_of_month(dom, expression),
        months=_values(month, _MONTH, expression),
        day_of_week=_DayOfWeek() if dow == "?" else _day_of_week(dow, expression),
        years=_values(year, _YEAR, expression),
    )


def parse_schedule(expression: str) -> Rate | Cron:
    """A ``rate(...)`` or ``cron(...)`` expression, validated as EventBridge does."""
    text = expression.strip()
    if text.startswith("rate("):
        return _parse_rate(text)
    if text.startswith("cron("):
        return _parse_cron(text)
    raise ScheduleError(f"{expression!r}: a schedule is rate(...) or cron(...)")


# ---------------------------------------------------------------------------- the scheduler


def iso_minute(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(
    rule_arn: str, account_id: str, region: str, when: dt.datetime
) -> dict[str, Any]:
    """The Scheduled Event a schedule rule delivers at ``when``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": iso_minute(when),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class _Entry:
    schedule: Rate | Cron | None
    next_at: dt.datetime | None


class Scheduler:
    """Fires schedule rules on time.

    ``rules()`` lists the rules to keep (objects with ``arn``, ``name`` and
    ``scheduled_expression``; new ones are picked up, removed ones dropped) and ``fire(rule,
    when)`` delivers one firing. ``clock`` and ``sleep`` are injectable: tests pass a fake
    clock whose sleep advances it; by default time is real and ``stop()`` wakes the sleeper.
    """

    def __init__(
        self,
        rules: Callable[[], list[Any]],
        fire: Callable[[Any, dt.datetime], None],
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], object] | None = None,
        max_sleep_s: float = 30.0,
    ) -> None:
        self._rules = rules
        self._fire = fire
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._max_sleep_s = max_sleep_s
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._thread: threading.Thread | None = None

    def tick(self) -> float:
        """Fire every rule that is due now; the seconds until the next one is due."""
        now = self._clock()
        soonest = now + dt.timedelta(seconds=self._max_sleep_s)
        seen = set()
        for rule in self._rules():
            key = (rule.arn, rule.scheduled_expression)
            seen.add(key)
            entry = self._entries.get(key)
            if entry is None:
                try:
                    schedule = parse_schedule(rule.scheduled_expression)
                except ScheduleError as exc:
                    log.warning("schedule rule %s never fires: %s", rule.name, exc)
                    entry = self._entries[key] = _Entry(None, None)
                else:
                    first = schedule.first_after(now)
                    entry = self._entries[key] = _Entry(schedule, first)
            if entry.schedule is None or entry.next_at is None:
                continue
            if entry.next_at <= now:
                self._safe_fire(rule, entry.next_at)
                upcoming = entry.schedule.next_after(entry.next_at)
                # After a pause (a laptop asleep), missed firings collapse into the one above.
                if upcoming is not None and upcoming <= now:
                    upcoming = entry.schedule.next_after(now)
                entry.next_at = upcoming
            if entry.next_at is not None:
                soonest = min(soonest, entry.next_at)
        for key in set(self._entries) - seen:
            del self._entries[key]
        return max((soonest - now).total_seconds(), 0.0)

    def _safe_fire(self, rule: Any, when: dt.datetime) -> None:
        try:
            self._fire(rule, when)
        except Exception:
            log.exception("schedule rule %s: delivery failed", rule.name)

    def run(self) -> None:
        while not self._stop.is_set():
            delay = self.tick()
            if self._stop.is_set():
                break
            self._sleep(max(delay, 0.05))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
