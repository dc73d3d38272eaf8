"""EventBridge schedule expressions and the scheduler that fires them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from pitcrew.local.schedule import (
    Rate,
    ScheduleError,
    Scheduler,
    aws_day_of_week,
    parse_schedule,
    scheduled_event,
)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expression: str, after: str, count: int = 3) -> list[str]:
    schedule = parse_schedule(expression)
    moment = at(after)
    found = []
    for _ in range(count):
        upcoming = schedule.next_after(moment)
        assert upcoming is not None
        found.append(upcoming.strftime("%Y-%m-%d %a %H:%M"))
        moment = upcoming
    return found


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
    ],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Rate)
    assert schedule.period.total_seconds() == seconds


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 minute)", "rate(5 minutes)"),
        ("rate(0 minutes)", "positive"),
        ("rate(5 weeks)", "minute(s), hour(s) or day(s)"),
        ("rate(five minutes)", "rate(VALUE UNIT)"),
        ("every 5 minutes", "rate(...) or cron(...)"),
        ("cron(0 12 * * ?)", "6 fields"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 12 * * ? *)", "minutes 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours 24 is outside 0-23"),
        ("cron(0 12 ? * 8 *)", "day-of-week 8 is outside 1-7"),
        ("cron(0 12 ? * MON#6 *)", "'#' takes 1-5"),
        ("cron(0 12 ? * MON/2 *)", "does not take '/'"),
        ("cron(0 12 * FOO ? *)", "'FOO' is not a valid month value"),
    ],
)
def test_invalid_expressions_say_why(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(expression)


def test_aws_numbers_days_of_the_week_from_sunday() -> None:
    assert aws_day_of_week(dt.date(2024, 11, 17)) == 1  # a Sunday
    assert aws_day_of_week(dt.date(2024, 11, 18)) == 2  # Monday
    assert aws_day_of_week(dt.date(2024, 11, 23)) == 7  # Saturday


def test_cron_every_day_at_a_time() -> None:
    assert fires("cron(0 6 * * ? *)", "2024-11-19T05:59") == [
        "2024-11-19 Tue 06:00",
        "2024-11-20 Wed 06:00",
        "2024-11-21 Thu 06:00",
    ]


def test_cron_is_strictly_after_the_given_moment() -> None:
    assert fires("cron(0 6 * * ? *)", "2024-11-19T06:00", 1) == ["2024-11-20 Wed 06:00"]


def test_cron_increments_and_lists() -> None:
    assert fires("cron(0/15 * * * ? *)", "2024-11-19T10:01") == [
        "2024-11-19 Tue 10:15",
        "2024-11-19 Tue 10:30",
        "2024-11-19 Tue 10:45",
    ]
    assert fires("cron(5,35 9-10 * * ? *)", "2024-11-19T09:10", 4) == [
        "2024-11-19 Tue 09:35",
        "2024-11-19 Tue 10:05",
        "2024-11-19 Tue 10:35",
        "2024-11-20 Wed 09:05",
    ]


def test_cron_day_of_week_uses_aws_numbering_and_names() -> None:
    # 2 = Monday in EventBridge (Unix cron would read it as Tuesday).
    assert fires("cron(0 8 ? * 2 *)", "2024-11-19T00:00", 2) == [
        "2024-11-25 Mon 08:00",
        "2024-12-02 Mon 08:00",
    ]
    assert fires("cron(0 8 ? * MON-FRI *)", "2024-11-22T09:00", 2) == [
        "2024-11-25 Mon 08:00",
        "2024-11-26 Tue 08:00",
    ]
    assert fires("cron(0 8 ? * SUN,7 *)", "2024-11-19T00:00", 2) == [
        "2024-11-23 Sat 08:00",
        "2024-11-24 Sun 08:00",
    ]


def test_cron_last_day_of_month_and_last_weekday() -> None:
    assert fires("cron(0 0 L * ? *)", "2024-01-15T00:00") == [
        "2024-01-31 Wed 00:00",
        "2024-02-29 Thu 00:00",  # leap year
        "2024-03-31 Sun 00:00",
    ]
    # August 2024 ends on a Saturday: its last weekday is Friday the 30th.
    assert fires("cron(0 0 LW * ? *)", "2024-08-01T00:00", 1) == ["2024-08-30 Fri 00:00"]


def test_cron_nearest_weekday() -> None:
    # 15 June 2024 is a Saturday -> Friday 14th; 15 September 2024 a Sunday -> Monday 16th.
    assert fires("cron(0 9 15W 6 ? 2024)", "2024-01-01T00:00", 1) == ["2024-06-14 Fri 09:00"]
    assert fires("cron(0 9 15W 9 ? 2024)", "2024-01-01T00:00", 1) == ["2024-09-16 Mon 09:00"]
    # 1 June 2024 is a Saturday: the nearest weekday in the month is Monday the 3rd.
    assert fires("cron(0 9 1W 6 ? 2024)", "2024-01-01T00:00", 1) == ["2024-06-03 Mon 09:00"]


def test_cron_nth_and_last_weekday_of_the_month() -> None:
    # 3#2: the second Tuesday.
    assert fires("cron(0 10 ? * 3#2 *)", "2024-11-01T00:00", 2) == [
        "2024-11-12 Tue 10:00",
        "2024-12-10 Tue 10:00",
    ]
    # 6L: the last Friday.
    assert fires("cron(0 10 ? * 6L *)", "2024-11-01T00:00", 2) == [
        "2024-11-29 Fri 10:00",
        "2024-12-27 Fri 10:00",
    ]


def test_cron_years_and_months() -> None:
    assert fires("cron(0 0 1 JAN,JUL ? 2025-2026)", "2024-03-01T00:00", 4) == [
        "2025-01-01 Wed 00:00",
        "2025-07-01 Tue 00:00",
        "2026-01-01 Thu 00:00",
        "2026-07-01 Wed 00:00",
    ]
    last = parse_schedule("cron(0 0 1 JAN,JUL ? 2025-2026)")
    assert last.next_after(at("2026-07-01T00:00")) is None


def test_scheduled_event_shape() -> None:
    rule_arn = "arn:aws:events:eu-west-1:123456789012:rule/pitcrew-Daily"
    event = scheduled_event(rule_arn, "123456789012", "eu-west-1", at("2024-11-19T06:00"))
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == [rule_arn]
    assert event["time"] == "2024-11-19T06:00:00Z"
    assert event["detail"] == {}
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }


@dataclass
class FakeRule:
    name: str
    scheduled_expression: str

    @property
    def arn(self) -> str:
        return f"arn:aws:events:us-east-1:123456789012:rule/{self.name}"


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_rate_rule_fires_one_period_after_it_appears_then_every_period() -> None:
    start = at("2024-11-19T10:00:30")
    clock = Clock(start)
    fired: list[tuple[str, dt.datetime]] = []
    rules = [FakeRule("every-minute", "rate(1 minute)")]
    scheduler = Scheduler(lambda: rules, lambda r, w: fired.append((r.name, w)), clock=clock)

    assert scheduler.tick() == 30.0  # capped by max_sleep_s; due in 60
    clock.now = start + dt.timedelta(seconds=59)
    assert scheduler.tick() == 1.0
    assert fired == []
    clock.now = start + dt.timedelta(seconds=60)
    scheduler.tick()
    clock.now = start + dt.timedelta(seconds=121)
    scheduler.tick()

    assert fired == [
        ("every-minute", start + dt.timedelta(seconds=60)),
        ("every-minute", start + dt.timedelta(seconds=120)),
    ]


def test_missed_firings_collapse_into_one() -> None:
    start = at("2024-11-19T10:00:00")
    clock = Clock(start)
    fired: list[dt.datetime] = []
    rules = [FakeRule("r", "rate(1 minute)")]
    scheduler = Scheduler(lambda: rules, lambda r, w: fired.append(w), clock=clock)
    scheduler.tick()
    clock.now = start + dt.timedelta(minutes=10, seconds=5)  # a laptop that slept

    scheduler.tick()
    clock.now = start + dt.timedelta(minutes=11)
    scheduler.tick()

    assert fired == [start + dt.timedelta(minutes=1)]
    clock.now = start + dt.timedelta(minutes=11, seconds=5)
    scheduler.tick()
    assert fired[-1] == start + dt.timedelta(minutes=11, seconds=5)


def test_cron_rules_fire_on_the_minute_and_bad_ones_never() -> None:
    clock = Clock(at("2024-11-19T05:59:10"))
    fired: list[tuple[str, dt.datetime]] = []
    rules = [FakeRule("daily", "cron(0 6 * * ? *)"), FakeRule("bad", "cron(nonsense)")]
    scheduler = Scheduler(lambda: rules, lambda r, w: fired.append((r.name, w)), clock=clock)

    assert scheduler.tick() == 30.0
    clock.now = at("2024-11-19T06:00:00")
    scheduler.tick()

    assert fired == [("daily", at("2024-11-19T06:00"))]


def test_with_the_real_clock_a_one_minute_rate_is_due_in_a_minute() -> None:
    fired: list[dt.datetime] = []
    rules = [FakeRule("r", "rate(1 minute)")]
    scheduler = Scheduler(lambda: rules, lambda r, w: fired.append(w), max_sleep_s=120)

    delay = scheduler.tick()

    assert 59.0 < delay <= 60.0
    assert fired == []
