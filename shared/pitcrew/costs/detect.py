"""Spike detection per group against a robust, weekday-aware baseline.

For a day ``d`` of a group, the baseline looks at the four weeks before it (fewer, down to
two, for a young series):

- the expected cost is the median of the same weekday in those weeks, so weekend dips and
  Monday peaks are expected rather than alarming;
- the noise is the median absolute deviation (MAD) of every day of those weeks from its own
  weekday's median, scaled by 1.4826 to be comparable to a standard deviation.

A day is a spike when it beats the expected cost by ``min_delta_usd`` dollars AND by
``min_ratio`` times AND by ``min_score`` noise units: the dollar and ratio floors keep tiny
or merely noisy groups quiet, the score keeps volatile groups from alerting on their usual
swings. A group with at least a week of zero history that starts costing ``min_delta_usd``
is reported once as new spend.

The cheap dollar and ratio tests run first and the noise is only measured for the few days
that pass them, so 13 months of 300 groups take well under the time it takes to read them
from DynamoDB (``bench/costs.py``). Plain lists and sorting: no numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, timedelta

from pitcrew.costs.model import Anomaly, DailyCosts
from pitcrew.records import frozen

WEEK = 7
MIN_WEEKS = 2
MAX_WEEKS = 4
MAD_TO_SIGMA = 1.4826
NEW_SPEND_QUIET_DAYS = 7


@frozen
class Thresholds:
    min_delta_usd: float = 20.0
    min_ratio: float = 1.5
    min_score: float = 3.5


def _median4(a: float, b: float, c: float, d: float) -> float:
    s = sorted((a, b, c, d))
    return (s[1] + s[2]) / 2


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def _expected(x: Sequence[float], d: int, weeks: int) -> float:
    if weeks == MAX_WEEKS:
        return _median4(x[d - 7], x[d - 14], x[d - 21], x[d - 28])
    return _median([x[d - WEEK * k] for k in range(1, weeks + 1)])


def _noise(x: Sequence[float], d: int, weeks: int) -> float:
    """MAD of the window's days from their own weekday's median, as a sigma."""
    start = d - WEEK * weeks
    residuals: list[float] = []
    for offset in range(WEEK):
        same = [x[start + offset + WEEK * k] for k in range(weeks)]
        centre = _median(same)
        residuals.extend(abs(v - centre) for v in same)
    return _median(residuals) * MAD_TO_SIGMA


def spike_days(
    x: Sequence[float], check_from: int, thresholds: Thresholds
) -> list[tuple[int, float, float | None, int]]:
    """The indices of ``x`` (one value per day, no gaps) from ``check_from`` on that are
    spikes or new spend: ``(index, expected, score, baseline_days)``; score None for new
    spend."""
    found: list[tuple[int, float, float | None, int]] = []
    min_delta, min_ratio, min_score = (
        thresholds.min_delta_usd,
        thresholds.min_ratio,
        thresholds.min_score,
    )
    first_spend = next((i for i, v in enumerate(x) if v > 0), len(x))
    quiet = first_spend >= NEW_SPEND_QUIET_DAYS
    if quiet and check_from <= first_spend < len(x) and x[first_spend] >= min_delta:
        found.append((first_spend, 0.0, None, first_spend))
    # The baseline only looks at weeks since the group's first spend: the zeros before it
    # would make every day of a young group look like a spike.
    for d in range(max(check_from, first_spend + WEEK * MIN_WEEKS), len(x)):
        value = x[d]
        if value < min_delta:  # cannot beat any baseline by min_delta
            continue
        weeks = min(MAX_WEEKS, (d - first_spend) // WEEK)
        expected = _expected(x, d, weeks)
        delta = value - expected
        if delta < min_delta or value < min_ratio * expected:
            continue
        noise = max(_noise(x, d, weeks), 0.01 * expected, 0.01)
        score = delta / noise
        if score >= min_score:
            found.append((d, expected, score, WEEK * weeks))
    return found


def series(days: Sequence[DailyCosts]) -> tuple[date, list[str], dict[str, list[float]]]:
    """The days as one value list per group, gaps filled with zero cost."""
    if not days:
        return date.min, [], {}
    ordered = sorted(days, key=lambda c: c.day)
    first = ordered[0].day
    length = (ordered[-1].day - first).days + 1
    names = sorted({name for c in ordered for name in c.groups})
    values = {name: [0.0] * length for name in names}
    for costs in ordered:
        i = (costs.day - first).days
        for name, amount in costs.groups.items():
            values[name][i] = amount
    return first, names, values


def detect(days: Sequence[DailyCosts], check_from: date, thresholds: Thresholds) -> list[Anomaly]:
    """Every spike or new spend of every group on the days from ``check_from`` on, one
    ``Anomaly`` per day (``episodes`` merges consecutive ones). ``days`` is one provider's
    history: the days before ``check_from`` are the baseline."""
    if not days:
        return []
    provider = days[0].provider
    first, names, values = series(days)
    start = max(0, (check_from - first).days)
    found: list[Anomaly] = []
    for name in names:
        for index, expected, score, baseline_days in spike_days(values[name], start, thresholds):
            found.append(
                Anomaly(
                    provider=provider,
                    group=name,
                    day=first + timedelta(days=index),
                    amount_usd=values[name][index],
                    baseline_usd=expected,
                    kind="new_spend" if score is None else "spike",
                    score=score,
                    baseline_days=baseline_days,
                )
            )
    return found


def episodes(
    flagged: Iterable[Anomaly], open_until: dict[str, date], gap_days: int = 1
) -> tuple[list[Anomaly], dict[str, date]]:
    """One anomaly per episode: flagged days of a group at most ``gap_days`` apart belong to
    the same one. ``open_until`` holds, per group, the last flagged day of an episode already
    reported; days that continue it are not new. Returns the new anomalies (``last_day`` set)
    and the last day of every group's latest episode."""
    last = dict(open_until)
    new: list[Anomaly] = []
    current: dict[str, int] = {}  # group -> index in ``new`` of its episode still going on
    for anomaly in sorted(flagged, key=lambda a: (a.group, a.day)):
        previous = last.get(anomaly.group)
        if previous is not None and 0 <= (anomaly.day - previous).days <= gap_days + 1:
            last[anomaly.group] = anomaly.day
            if anomaly.group in current:
                index = current[anomaly.group]
                new[index] = replace(new[index], last_day=anomaly.day)
            continue
        if previous is not None and anomaly.day <= previous:
            continue  # inside an episode already reported
        current[anomaly.group] = len(new)
        new.append(replace(anomaly, last_day=anomaly.day))
        last[anomaly.group] = anomaly.day
    return sorted(new, key=lambda a: (a.day, a.group)), last
