"""The cost tracker against moto's Cost Explorer (answers injected, every request counted)
and the stack's real costs table: backfill, steady state, re-runs, pagination, throttling,
failures, alerts sent once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest

from pitcrew.config import AnomalyConfig, CostsConfig
from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import DailyCosts
from pitcrew.costs.providers import AwsCosts, CostExplorer, DataUnavailableError
from pitcrew.costs.related import RecentChanges
from pitcrew.costs.tracker import CostTracker
from pitcrew.errors import TransientServiceError
from pitcrew.events import DomainEvent
from tests.support.fakecloud import (
    CostExplorerFake,
    aws_anomaly,
    cost_and_usage_page,
    queue_cost_and_usage,
)

COSTS = CostsConfig(
    backfill_days=10,
    settle_days=3,
    budgets={"monthly_total": 100.0},
    anomaly=AnomalyConfig(min_delta_usd=20, min_ratio=1.5),
)


def day(n: int) -> str:
    return (date(2024, 2, 20) + timedelta(days=n)).isoformat()


class Harness:
    def __init__(self, costs: CostsConfig = COSTS) -> None:
        self.fake = CostExplorerFake(boto3.client("ce", region_name="us-east-1"))
        self.fake.forecast_usd = 40.0
        self.published: list[DomainEvent] = []
        self.history = CostHistory()
        self.costs = costs
        self.today = date(2024, 3, 1)

    def run(self, changes: RecentChanges | None = None) -> dict[str, Any]:
        provider = AwsCosts(self.costs, CostExplorer(self.fake, sleep=lambda _: None))
        tracker = CostTracker(
            self.costs,
            [provider],
            self.history,
            publish=lambda *events: self.published.extend(events),
            changes=lambda: changes or RecentChanges([]),
            clock=lambda: datetime(
                self.today.year, self.today.month, self.today.day, 6, tzinfo=UTC
            ),
        )
        try:
            return tracker.run().as_dict()
        finally:
            provider.explorer.close()

    def names(self) -> list[str]:
        return [e.name.value for e in self.published]


@pytest.fixture
def harness(stack: Any) -> Harness:
    return Harness()


def flat(n: int, amount: float = 3.0) -> dict[str, float]:
    return {"Amazon EC2": amount, "Amazon S3": 1.0}


def test_backfill_reads_every_page_then_steady_state_costs_one_request(harness: Harness) -> None:
    queue_cost_and_usage(
        cost_and_usage_page({day(n): flat(n) for n in range(5)}, next_token="page-2"),
        cost_and_usage_page({day(n): flat(n) for n in range(5, 10)}, estimated={day(8), day(9)}),
    )
    report = harness.run()
    # Two pages of GetCostAndUsage, the month-end forecast, the monitor list.
    assert report["cost_explorer_requests"] == 4
    run = report["providers"][0]
    assert (run["backfill"], run["start"], run["days_written"]) == (True, day(0), 10)
    assert run["watermark"] == day(6)  # 2024-02-27 onwards is younger than settle_days
    stored = harness.history.days("aws", date(2024, 2, 1), date(2024, 3, 1))
    assert len(stored) == 10 and stored[0].groups == {"Amazon EC2": 3.0, "Amazon S3": 1.0}
    assert harness.fake.calls[1][1]["NextPageToken"] == "page-2"

    # Next day: only the days after the watermark, in one request; the forecast's rate is
    # reused and the monitors were listed yesterday.
    harness.today = date(2024, 3, 2)
    queue_cost_and_usage(
        cost_and_usage_page(
            {
                day(7): flat(7),
                day(8): {"Amazon EC2": 5.0, "Amazon S3": 1.0},
                day(9): flat(9),
                day(10): flat(10),
            }
        )
    )
    report = harness.run()
    assert report["cost_explorer_requests"] == 1
    request = harness.fake.calls[-1][1]
    assert request["TimePeriod"] == {"Start": day(7), "End": "2024-03-02"}
    assert request["GroupBy"] == [{"Type": "DIMENSION", "Key": "SERVICE"}]
    stored = {
        c.day.isoformat(): c
        for c in harness.history.days("aws", date(2024, 2, 1), date(2024, 3, 2))
    }
    assert stored[day(8)].groups["Amazon EC2"] == 5.0  # a refetched day is replaced
    assert report["providers"][0]["watermark"] == day(7)


def test_rerunning_a_day_overwrites_and_never_doubles(harness: Harness) -> None:
    queue_cost_and_usage(cost_and_usage_page({day(n): flat(n) for n in range(10)}))
    harness.run()
    first = harness.history.days("aws", date(2024, 2, 1), date(2024, 3, 1))
    # The same run again (a retry of the schedule): Cost Explorer answers the same request
    # the same way; the history does not change and is not doubled.
    state = harness.history.state("aws")
    state.pop("watermark")
    harness.history.put_state(state)
    report = harness.run()
    again = harness.history.days("aws", date(2024, 2, 1), date(2024, 3, 1))
    assert [c.groups for c in again] == [c.groups for c in first]
    assert sum(c.total for c in again) == pytest.approx(40.0)
    assert report["cost_explorer_requests"] == 1


def test_throttling_is_retried_and_every_attempt_counted(harness: Harness) -> None:
    queue_cost_and_usage(cost_and_usage_page({day(n): flat(n) for n in range(10)}))
    harness.fake.throttle = 2
    report = harness.run()
    assert report["providers"][0]["days_written"] == 10
    assert report["cost_explorer_requests"] == 3 + 2  # 3 attempts, forecast, monitors


def test_a_failed_fetch_writes_nothing_and_fails_the_run(harness: Harness) -> None:
    harness.fake.throttle = 99
    with pytest.raises(TransientServiceError):
        harness.run()
    assert harness.history.days("aws", date(2024, 1, 1), date(2024, 3, 1)) == []
    assert "watermark" not in harness.history.state("aws")


class _NewAccount:
    name = "aws"
    requests = 1

    def daily_costs(self, start: date, end: date) -> list[DailyCosts]:
        raise DataUnavailableError("cost-explorer", "DataUnavailableException: no data yet")


def test_a_new_account_without_data_is_not_a_failure(stack: Any) -> None:
    history = CostHistory()
    tracker = CostTracker(
        COSTS, [_NewAccount()], history, publish=lambda *e: None, changes=lambda: RecentChanges([])
    )
    report = tracker.run().as_dict()
    assert "no cost data yet" in report["providers"][0]["note"]
    assert "watermark" not in history.state("aws")


def spiky_month() -> dict[str, dict[str, float]]:
    days = {}
    for n in range(40):
        d = date(2024, 1, 21) + timedelta(days=n)
        weekend = d.weekday() >= 5
        days[d.isoformat()] = {
            "Amazon EC2": (40.0 if weekend else 100.0) + (n % 3),
            "AWS Lambda": 30.0 + (n % 2),
        }
    return days


def test_a_spike_is_alerted_once_with_the_changes_before_it_and_aws_duplicates_dropped(
    stack: Any,
) -> None:
    harness = Harness(CostsConfig(backfill_days=40, settle_days=3))
    days = spiky_month()
    days["2024-02-28"]["Amazon EC2"] = 400.0  # a Wednesday
    days["2024-02-29"]["Amazon EC2"] = 380.0  # still going on: the same anomaly
    queue_cost_and_usage(cost_and_usage_page(days))
    harness.fake.monitors = ["arn:aws:ce::123456789012:anomalymonitor/services"]
    harness.fake.anomaly_items = [
        aws_anomaly("Amazon EC2", "2024-02-28", 400.0, 100.0),  # pitcrew found it too
        aws_anomaly("Amazon RDS", "2024-02-27", 90.0, 20.0),
    ]
    changes = RecentChanges(
        [
            {
                "kind": "promotion",
                "title": "payments-api v1.42.0 to prod",
                "at": "2024-02-27T14:00:00+00:00",
                "url": None,
            },
            {"kind": "fix_pr", "title": "old", "at": "2024-02-20T10:00:00+00:00", "url": None},
        ]
    )
    report = harness.run(changes)
    anomalies = [e.detail for e in harness.published if e.name.value == "CostAnomalyDetected"]
    assert sorted((a["service"], a["date"], a["source"]) for a in anomalies) == [
        ("Amazon EC2", "2024-02-28", "pitcrew"),
        ("Amazon RDS", "2024-02-27", "aws_anomaly_detection"),
    ]
    ec2 = next(a for a in anomalies if a["service"] == "Amazon EC2")
    assert ec2["baseline_usd"] == pytest.approx(101, abs=1.5) and ec2["ratio"] > 3.5
    assert [p["title"] for p in ec2["preceding"]] == ["payments-api v1.42.0 to prod"]
    assert len(report["anomalies"]) == 2

    # Next day, the spike still lasts: no new alert. Same answer again from AWS: none either.
    harness.published.clear()
    harness.today = date(2024, 3, 2)
    queue_cost_and_usage(
        cost_and_usage_page(
            {
                "2024-02-27": days["2024-02-27"],
                "2024-02-28": days["2024-02-28"],
                "2024-02-29": days["2024-02-29"],
                "2024-03-01": {"Amazon EC2": 390.0},
            }
        )
    )
    harness.run(changes)
    assert harness.names() == []
    assert CostHistory().count_anomalies("aws") == 2

    # AWS is asked every other day (costs.anomaly.aws_every_days): not on 2 March, again on
    # the 3rd, over the days since it was last asked; what it reported before is not resent.
    asked = [params for op, params in harness.fake.calls if op == "GetAnomalies"]
    assert len(asked) == 1
    harness.today = date(2024, 3, 3)
    harness.fake.anomaly_items.append(aws_anomaly("AWS Lambda", "2024-03-01", 60.0, 5.0))
    queue_cost_and_usage(cost_and_usage_page({"2024-03-02": {"Amazon EC2": 100.0}}))
    harness.run(changes)
    asked = [params for op, params in harness.fake.calls if op == "GetAnomalies"]
    assert len(asked) == 2
    assert asked[1]["DateInterval"]["StartDate"] <= "2024-03-01"
    assert [(e.detail["service"], e.detail["date"]) for e in harness.published] == [
        ("AWS Lambda", "2024-03-01")
    ]


def test_budget_thresholds_alert_once_a_month(harness: Harness) -> None:
    queue_cost_and_usage(cost_and_usage_page({day(n): flat(n) for n in range(10)}))
    harness.today = date(2024, 3, 1)
    harness.run()
    # February's days are not in March: nothing spent this month, forecast 40 of 100.
    assert [n for n in harness.names() if n == "BudgetThresholdCrossed"] == []
    harness.today = date(2024, 3, 4)
    queue_cost_and_usage(
        cost_and_usage_page(
            {
                day(7): flat(7),
                day(8): flat(8),
                day(9): flat(9),
                "2024-03-01": {"Amazon EC2": 50.0},
                "2024-03-02": {"Amazon EC2": 35.0},
                "2024-03-03": {"Amazon EC2": 5.0},
            }
        )
    )
    report = harness.run()
    crossed = sorted((a["basis"], a["threshold_pct"]) for a in report["budget_alerts"])
    assert crossed == [("actual", 80), ("forecast", 80), ("forecast", 100)]
    detail = report["budget_alerts"][0]
    assert detail["month"] == "2024-03" and detail["limit_usd"] == 100.0
    assert set(detail) == {
        "budget",
        "month",
        "limit_usd",
        "actual_usd",
        "forecast_usd",
        "threshold_pct",
        "basis",
    }
    harness.published.clear()
    harness.today = date(2024, 3, 5)
    queue_cost_and_usage(
        cost_and_usage_page(
            {
                "2024-03-01": {"Amazon EC2": 50.0},
                "2024-03-02": {"Amazon EC2": 35.0},
                "2024-03-03": {"Amazon EC2": 5.0},
                "2024-03-04": {"Amazon EC2": 15.0},
            }
        )
    )
    report = harness.run()
    assert [a["threshold_pct"] for a in report["budget_alerts"]] == [100]  # actual hits 100
    assert harness.names() == ["BudgetThresholdCrossed"]


def test_the_handler_runs_on_the_scheduled_event(stack: Any, capsys: Any) -> None:
    """functions/cost_tracker/app.py, as Lambda calls it, on the stack of template.yaml: moto's
    Cost Explorer has no data and lacks the forecast, which the run survives (run rate)."""
    import importlib.util
    from dataclasses import dataclass
    from pathlib import Path

    from tests.support.events import load_event

    @dataclass
    class Context:
        function_name: str = "pitcrew-cost-tracker"
        memory_limit_in_mb: int = 512
        invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:x"
        aws_request_id: str = "req-1"

        def get_remaining_time_in_millis(self) -> int:
            return 300_000

    path = Path(__file__).resolve().parents[2] / "functions" / "cost_tracker" / "app.py"
    spec = importlib.util.spec_from_file_location("cost_tracker_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scheduled = load_event("schedule/cost-tracker-daily.json")
    report = module.handler(scheduled, Context())
    assert report["providers"][0]["provider"] == "aws"
    assert report["providers"][0]["backfill"] is True
    assert report["cost_explorer_requests"] >= 1
    assert '"CostExplorerRequests"' in capsys.readouterr().out  # the EMF metric

    # EventBridge and Lambda deliver at least once: the same scheduled event again is
    # answered from the first run's record, and the day is not run (nor alerted) twice.
    class NoSecondRun:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("the same scheduled event ran twice")

    tracker = module.CostTracker
    module.CostTracker = NoSecondRun
    assert module.handler(scheduled, Context(aws_request_id="req-2")) == report
    # A run asked for by hand has no event id: it runs.
    module.CostTracker = tracker
    assert module.handler({}, Context(aws_request_id="req-3"))["providers"][0]["provider"] == "aws"


def test_two_group_by_keys_tag_values_and_one_alert_when_aws_names_the_service(
    stack: Any,
) -> None:
    """group_by [SERVICE, TAG:Environment]: Cost Explorer answers two Keys per group, the
    tag's as ``Environment$prod`` (``Environment$`` untagged); AWS Cost Anomaly Detection
    names only the service, which is the same anomaly as pitcrew's on that service's group."""
    harness = Harness(
        CostsConfig(backfill_days=40, settle_days=3, group_by=("SERVICE", "TAG:Environment"))
    )
    days = {
        d: {
            f"Amazon EC2 | Environment${'prod' if name == 'Amazon EC2' else ''}": amount
            for name, amount in groups.items()
        }
        for d, groups in spiky_month().items()
    }
    days["2024-02-28"]["Amazon EC2 | Environment$prod"] = 400.0
    definitions = ({"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "TAG", "Key": "Environment"})
    queue_cost_and_usage(cost_and_usage_page(days, group_by=definitions))
    harness.fake.monitors = ["arn:aws:ce::123456789012:anomalymonitor/services"]
    harness.fake.anomaly_items = [aws_anomaly("Amazon EC2", "2024-02-28", 400.0, 100.0)]
    harness.run()
    request = next(params for op, params in harness.fake.calls if op == "GetCostAndUsage")
    assert request["GroupBy"] == list(definitions)
    stored = harness.history.days("aws", date(2024, 2, 28), date(2024, 2, 29))[0]
    assert stored.groups["Amazon EC2 | Environment$prod"] == 400.0
    assert "Amazon EC2 | Environment$" in stored.groups
    alerts = [e.detail for e in harness.published if e.name.value == "CostAnomalyDetected"]
    assert [(a["service"], a["date"], a["source"]) for a in alerts] == [
        ("Amazon EC2 | Environment$prod", "2024-02-28", "pitcrew")
    ]


def test_after_more_than_13_months_off_the_history_restarts_with_a_gap(harness: Harness) -> None:
    queue_cost_and_usage(cost_and_usage_page({day(n): flat(n) for n in range(10)}))
    harness.run()
    # Fourteen months later: Cost Explorer refuses dates older than 13 months, so the run
    # asks from there on and the watermark moves again instead of staying stuck.
    harness.today = date(2025, 5, 1)
    oldest = date(2025, 5, 1) - timedelta(days=396)
    queue_cost_and_usage(
        cost_and_usage_page({(oldest + timedelta(days=n)).isoformat(): flat(n) for n in range(5)})
    )
    report = harness.run()
    run = report["providers"][0]
    request = [params for op, params in harness.fake.calls if op == "GetCostAndUsage"][-1]
    assert request["TimePeriod"]["Start"] == oldest.isoformat()
    assert run["watermark"] == (oldest + timedelta(days=4)).isoformat()
    assert "history gap" in run["note"]
