"""A day of costs with more groups than one DynamoDB item holds (400 KB: about 7,000 groups
grouped by two keys) is kept in part items, on the stack's costs table (moto, which enforces
the item size limit): read back whole, rewritten without leftovers, never read torn."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import DailyCosts
from pitcrew.errors import TransientServiceError

DAY = date(2026, 3, 2)


def many_groups(count: int, amount: float = 1.25) -> dict[str, float]:
    # SERVICE x LINKED_ACCOUNT names, as Cost Explorer's two-key grouping makes them.
    return {
        f"Amazon Elastic Compute Cloud - Compute|{100000000000 + n}": amount + n / 1000
        for n in range(count)
    }


def stored(history: CostHistory) -> list[dict[str, Any]]:
    return list(history.table.query("pk = :pk", values={":pk": "daily#aws"}))


@pytest.mark.usefixtures("stack")
def test_a_day_too_large_for_one_item_is_kept_in_parts_and_read_whole() -> None:
    history = CostHistory()
    groups = many_groups(20_000)

    history.put_day(DailyCosts("aws", DAY, groups))

    (back,) = history.days("aws", DAY, date(2026, 3, 3))
    assert back.groups == pytest.approx(groups)
    assert back.total == pytest.approx(sum(groups.values()))
    items = stored(history)
    assert len(items) > 2  # the day and its parts
    assert all(len(str(item["groups"]).encode()) < 400_000 for item in items)


@pytest.mark.usefixtures("stack")
def test_rewriting_a_large_day_leaves_no_parts_of_the_old_write() -> None:
    history = CostHistory()
    history.put_day(DailyCosts("aws", DAY, many_groups(20_000)))
    history.put_day(DailyCosts("aws", DAY, many_groups(15_000, amount=2.0)))

    (back,) = history.days("aws", DAY, date(2026, 3, 3))
    assert len(back.groups) == 15_000 and min(back.groups.values()) == 2.0
    (day,) = [item for item in stored(history) if "#" not in item["sk"]]
    parts = [item for item in stored(history) if "#" in item["sk"]]
    assert len(parts) == int(day["parts"]) - 1
    assert all(item["sk"].startswith(f"2026-03-02#{day['write']}#") for item in parts)

    history.put_day(DailyCosts("aws", DAY, {"Amazon S3": 3.0}))
    assert [item["sk"] for item in stored(history)] == ["2026-03-02"]
    (small,) = history.days("aws", DAY, date(2026, 3, 3))
    assert small.groups == {"Amazon S3": 3.0}


@pytest.mark.usefixtures("stack")
def test_a_day_whose_parts_are_gone_mid_rewrite_is_not_read_torn() -> None:
    history = CostHistory()
    history.put_day(DailyCosts("aws", DAY, many_groups(20_000)))
    part = next(item for item in stored(history) if "#" in item["sk"])
    history.table.delete({"pk": "daily#aws", "sk": part["sk"]})

    with pytest.raises(TransientServiceError, match="kept changing while read"):
        history.days("aws", DAY, date(2026, 3, 3))


@pytest.mark.usefixtures("stack")
def test_the_days_around_a_large_one_are_read_as_before() -> None:
    history = CostHistory()
    history.put_day(DailyCosts("aws", date(2026, 3, 1), {"Amazon EC2": 10.0}))
    history.put_day(DailyCosts("aws", DAY, many_groups(9_000)))
    history.put_day(DailyCosts("aws", date(2026, 3, 3), {"Amazon EC2": 12.0}))

    days = history.days("aws", date(2026, 3, 1), date(2026, 3, 4))

    assert [d.day.isoformat() for d in days] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert len(days[1].groups) == 9_000
    assert [d.day for d in history.days("aws", date(2026, 3, 1), DAY)] == [date(2026, 3, 1)]
