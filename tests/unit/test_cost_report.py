"""Pure parts of cost watch: ?days parsing, Prometheus label escaping, reading promotions and
incidents defensively, the forecast's month arithmetic, and the AWS anomaly shape."""

from __future__ import annotations

from datetime import date

import pytest

from pitcrew.costs.model import DailyCosts
from pitcrew.costs.providers import aws_anomaly
from pitcrew.costs.related import RecentChanges, fix_pr_change, promotion_change
from pitcrew.costs.report import _escape, parse_days
from pitcrew.costs.tracker import month_end, run_rate
from pitcrew.errors import BadRequestError


@pytest.mark.parametrize(("raw", "days"), [(None, 30), ("", 30), ("1", 1), (" 396 ", 396)])
def test_days_accepted(raw: str | None, days: int) -> None:
    assert parse_days(raw) == days


@pytest.mark.parametrize(
    "raw", ["0", "397", "-1", "7d", "1e3", "2.5", "\u00b2", "\u0663", "9" * 5000]
)
def test_days_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(BadRequestError, match="days must be") as refused:
        parse_days(raw)
    assert len(str(refused.value)) < 120  # a huge value is not echoed back whole


def test_label_values_are_escaped_as_the_text_format_wants() -> None:
    assert _escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_merged_fix_prs_and_promotions_are_read_and_anything_else_ignored() -> None:
    incident = {
        "id": "01J",
        "pull_request": {
            "number": 7,
            "url": "https://gh/pr/7",
            "title": "raise memory",
            "state": "merged",
        },
        "timeline": [{"at": "2024-03-09T10:00:00Z", "event": "fix merged"}],
    }
    assert fix_pr_change(incident) == {
        "kind": "fix_pr",
        "title": "raise memory",
        "at": "2024-03-09T10:00:00+00:00",
        "url": "https://gh/pr/7",
    }
    assert fix_pr_change({"pull_request": {"state": "open"}}) is None
    assert fix_pr_change({"pull_request": "nonsense", "timeline": 3}) is None
    promotion = {
        "app": "payments-api",
        "version": "v1.42.0",
        "target": "prod",
        "status": "succeeded",
        "finished_at": "2024-03-08T16:00:00+00:00",
    }
    assert promotion_change(promotion)["title"] == "payments-api v1.42.0 to prod"  # type: ignore[index]
    assert promotion_change({**promotion, "status": "rolled_back"}) is None
    changes = RecentChanges([fix_pr_change(incident), promotion_change(promotion)])  # type: ignore[list-item]
    assert [c["kind"] for c in changes.before(date(2024, 3, 10))] == ["promotion", "fix_pr"]
    assert changes.before(date(2024, 3, 12)) == ()


def test_month_arithmetic_and_run_rate() -> None:
    assert month_end(date(2024, 2, 29)) == date(2024, 3, 1)
    assert month_end(date(2024, 12, 5)) == date(2025, 1, 1)
    days = [DailyCosts("aws", date(2024, 3, d), {"x": float(d)}) for d in range(1, 11)]
    assert run_rate(days, date(2024, 3, 11)) == pytest.approx(7.0)  # days 4..10


def test_an_aws_anomaly_becomes_a_pitcrew_anomaly() -> None:
    anomaly = aws_anomaly(
        {
            "AnomalyId": "a-1",
            "AnomalyStartDate": "2024-03-05T00:00:00Z",
            "DimensionValue": "Amazon EC2",
            "RootCauses": [{"Service": "Amazon Elastic Compute Cloud - Compute"}],
            "Impact": {"MaxImpact": 80.0, "TotalActualSpend": 120.0, "TotalExpectedSpend": 40.0},
            "AnomalyScore": {"MaxScore": 0.8},
        }
    )
    assert anomaly is not None
    assert (anomaly.group, anomaly.day, anomaly.delta_usd, anomaly.ratio, anomaly.source) == (
        "Amazon Elastic Compute Cloud - Compute",
        date(2024, 3, 5),
        80.0,
        3.0,
        "aws_anomaly_detection",
    )
    assert aws_anomaly({"AnomalyId": "no date"}) is None


def test_csv_cells_from_tags_cannot_run_as_spreadsheet_formulas() -> None:
    import io

    from pitcrew.costs.cli import write_csv

    out = io.StringIO()
    report = {
        "groups": [
            {
                "provider": "aws",
                "group": '=HYPERLINK("http://x")',
                "total_usd": 1.0,
                "previous_usd": 1.0,
                "change_pct": 0.0,
            },
            {
                "provider": "aws",
                "group": "Amazon EC2",
                "total_usd": 2.0,
                "previous_usd": 1.0,
                "change_pct": 100.0,
            },
        ],
        "anomalies": [],
    }
    write_csv(report, out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("aws,\"'=HYPERLINK(")
    assert lines[2].startswith("aws,Amazon EC2,2.00")
