"""Spike detection: a robust, weekday-aware baseline; alerts only past every threshold."""

from __future__ import annotations

import random
from datetime import date, timedelta

from pitcrew.costs.detect import Thresholds, detect, episodes
from pitcrew.costs.model import DailyCosts

START = date(2024, 1, 1)  # a Monday
SERVICES = ("Amazon EC2", "Amazon S3", "AWS Lambda", "Amazon RDS", "Amazon CloudWatch")


def noisy_days(n: int = 60, seed: int = 7, weekly: bool = True) -> list[DailyCosts]:
    rng = random.Random(seed)
    days = []
    for i in range(n):
        d = START + timedelta(days=i)
        dip = 0.4 if weekly and d.weekday() >= 5 else 1.0  # weekends cost much less
        groups = {s: 80.0 * (k + 1) * dip * rng.uniform(0.85, 1.15) for k, s in enumerate(SERVICES)}
        days.append(DailyCosts("aws", d, groups))
    return days


def test_one_spike_in_sixty_noisy_days_is_found() -> None:
    days = noisy_days()
    spike_day = START + timedelta(days=45)
    days[45].groups["Amazon S3"] = days[45].groups["Amazon S3"] * 2.5
    found = detect(days, START, Thresholds())
    assert [(a.group, a.day, a.kind) for a in found] == [("Amazon S3", spike_day, "spike")]
    assert found[0].baseline_days == 28 and found[0].ratio is not None and found[0].ratio > 2


def test_a_weekly_pattern_alone_raises_nothing() -> None:
    assert detect(noisy_days(seed=11), START, Thresholds()) == []


def test_below_either_threshold_is_not_an_anomaly() -> None:
    days = noisy_days(weekly=False)
    days[40].groups["Amazon EC2"] *= 1.4  # big in dollars, under min_ratio
    days[41].groups["tiny"] = 0.5  # a new group, under min_delta_usd
    days[42].groups["Amazon S3"] *= 2.5  # passes both: the only one
    found = detect(days, START, Thresholds(min_delta_usd=20, min_ratio=1.5))
    assert [(a.group, (a.day - START).days) for a in found] == [("Amazon S3", 42)]


def test_a_new_service_is_reported_once_as_new_spend() -> None:
    days = noisy_days(weekly=False)
    for i in range(30, 60):
        days[i].groups["Amazon Bedrock"] = 150.0
    found = detect(days, START, Thresholds())
    assert [(a.group, (a.day - START).days, a.kind) for a in found] == [
        ("Amazon Bedrock", 30, "new_spend")
    ]


def test_consecutive_days_are_one_anomaly_and_an_open_one_is_not_repeated() -> None:
    days = noisy_days(weekly=False)
    for i in (50, 51, 52):
        days[i].groups["Amazon RDS"] *= 3
    found = detect(days, START, Thresholds())
    new, last = episodes(found, {})
    assert [(a.group, (a.day - START).days, (a.last_day - START).days) for a in new] == [
        ("Amazon RDS", 50, 52)
    ]
    # The next run sees days 51-52 again: they continue the episode, nothing new.
    again, _ = episodes([a for a in found if a.day > START + timedelta(days=50)], last)
    assert again == []
