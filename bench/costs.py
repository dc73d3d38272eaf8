"""Cost watch benchmarks: what the daily runs spend on Cost Explorer, and how fast spikes
are found compared with reading the history.

Usage: ``.venv/bin/python bench/costs.py [--groups 300] [--runs 30] [--repeat 3]``
(``make bench`` runs it plain). Everything runs in-process on moto with the costs table of
``template.yaml``; no network.

1. Requests: a backfill (``costs.backfill_days``, 90 by default) then ``--runs`` consecutive
   daily runs on a fake clock against a synthetic Cost Explorer (``--groups`` services, a
   realistic ``Estimated`` flag on the last two days, answers paged every 5000 rows) whose
   every request is counted by pitcrew's own counter. Printed for an account without and
   with a Cost Anomaly Detection monitor; the line ``ce requests per run X.X`` is the
   default account (no monitor). Target: at most 2.
2. Analysis: 13 months (396 days) x ``--groups`` groups are written to the table; then the
   time to read them back (``CostHistory.days``) and the time to run spike detection over
   every one of those days (``detect``), median of ``--repeat``. Last line:
   ``analysis ratio X.XX`` (detection / reading). Target: at most 1.5.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))
os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake credentials
    AWS_SESSION_TOKEN="testing",  # noqa: S106
)
for _name in list(os.environ):
    if _name == "AWS_PROFILE" or _name.startswith("AWS_ENDPOINT_URL"):
        del os.environ[_name]

PAGE_ROWS = 5000
TARGET_REQUESTS = 2.0
TARGET_RATIO = 1.5


class SyntheticCostExplorer:
    """A Cost Explorer that answers from a deterministic cost model. Each call emits
    botocore's ``before-sign`` event, which is what pitcrew's counter listens to."""

    def __init__(self, groups: int, today: Any, monitor: bool) -> None:
        from botocore.hooks import HierarchicalEmitter

        self.meta = SimpleNamespace(events=HierarchicalEmitter())
        self.names = [f"Service {n:03d}" for n in range(groups)]
        self.today = today
        self.monitor = monitor

    def _sent(self, operation: str) -> None:
        self.meta.events.emit(f"before-sign.cost-explorer.{operation}", request=None)

    def get_cost_and_usage(self, **request: Any) -> dict[str, Any]:
        self._sent("GetCostAndUsage")
        start = date.fromisoformat(request["TimePeriod"]["Start"])
        end = date.fromisoformat(request["TimePeriod"]["End"])
        rows = []
        day = start
        while day < end:
            rng = random.Random(day.toordinal())
            for n, name in enumerate(self.names):
                rows.append((day, name, (n % 17 + 1) * rng.uniform(0.9, 1.1)))
            day += timedelta(days=1)
        offset = int(request.get("NextPageToken") or 0)
        page = rows[offset : offset + PAGE_ROWS]
        results: dict[Any, list[dict[str, Any]]] = {}
        for day, name, amount in page:
            results.setdefault(day, []).append(
                {"Keys": [name], "Metrics": {"UnblendedCost": {"Amount": str(amount)}}}
            )
        answer: dict[str, Any] = {
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": d.isoformat()},
                    "Groups": groups,
                    "Estimated": (self.today() - d).days <= 2,
                }
                for d, groups in results.items()
            ]
        }
        if offset + PAGE_ROWS < len(rows):
            answer["NextPageToken"] = str(offset + PAGE_ROWS)
        return answer

    def get_cost_forecast(self, **request: Any) -> dict[str, Any]:
        self._sent("GetCostForecast")
        return {"Total": {"Amount": "1234.5", "Unit": "USD"}}

    def get_anomaly_monitors(self, **request: Any) -> dict[str, Any]:
        self._sent("GetAnomalyMonitors")
        arn = "arn:aws:ce::123456789012:anomalymonitor/bench"
        return {"AnomalyMonitors": [{"MonitorArn": arn}] if self.monitor else []}

    def get_anomalies(self, **request: Any) -> dict[str, Any]:
        self._sent("GetAnomalies")
        return {"Anomalies": []}


def _table_env() -> None:
    from pitcrew.local.provision import provision
    from pitcrew.local.template import load_template

    stack = provision(load_template(REPO / "template.yaml"), invocation_targets=False)
    for name, value in stack.functions["cost_tracker"].environment.items():
        os.environ[name] = value


def requests_per_run(groups: int, runs: int, monitor: bool) -> tuple[int, float]:
    """The backfill's requests, and the mean requests of the ``runs`` daily runs after it."""
    from pitcrew.config import CostsConfig
    from pitcrew.costs.history import CostHistory
    from pitcrew.costs.providers import AwsCosts, CostExplorer
    from pitcrew.costs.related import RecentChanges
    from pitcrew.costs.tracker import CostTracker

    history = CostHistory()
    for item in list(history.table.scan()):  # a fresh table for each scenario
        history.table.delete({"pk": item["pk"], "sk": item["sk"]})
    costs = CostsConfig(budgets={"monthly_total": 10_000.0})
    clock = [datetime(2024, 5, 1, 6, tzinfo=UTC)]
    fake = SyntheticCostExplorer(groups, lambda: clock[0].date(), monitor)  # noqa: PLW0108
    counts = []
    for _ in range(runs + 1):
        provider = AwsCosts(costs, CostExplorer(fake, sleep=lambda _: None))
        tracker = CostTracker(
            costs,
            [provider],
            history,
            publish=lambda *events: None,
            changes=lambda: RecentChanges([]),
            clock=lambda: clock[0],
        )
        counts.append(tracker.run().ce_requests)
        provider.explorer.close()
        clock[0] += timedelta(days=1)
    return counts[0], sum(counts[1:]) / runs


def analysis_ratio(groups: int, repeat: int) -> tuple[float, float]:
    from pitcrew.costs.detect import Thresholds, detect
    from pitcrew.costs.history import CostHistory
    from pitcrew.costs.model import DailyCosts

    history = CostHistory()
    first = date(2023, 4, 1)
    rng = random.Random(13)
    names = [f"Service {n:03d}" for n in range(groups)]
    for n in range(396):
        day = first + timedelta(days=n)
        dip = 0.6 if day.weekday() >= 5 else 1.0
        amounts = {m: (i % 23 + 1) * dip * rng.uniform(0.85, 1.15) for i, m in enumerate(names)}
        history.put_day(DailyCosts("bench", day, amounts))
    end = first + timedelta(days=396)
    load_times, analysis_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        days = history.days("bench", first, end)
        load_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        detect(days, first, Thresholds())
        analysis_times.append(time.perf_counter() - started)
    assert len(days) == 396 and len(days[0].groups) == groups
    return statistics.median(load_times), statistics.median(analysis_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import moto

    with moto.mock_aws():
        _table_env()
        backfill, with_monitor = requests_per_run(args.groups, args.runs, monitor=True)
        print(f"with an anomaly monitor: {with_monitor:.2f} requests per run")
        backfill, per_run = requests_per_run(args.groups, args.runs, monitor=False)
        print(
            f"backfill {backfill} requests ({args.groups} groups, 90 days, {PAGE_ROWS} rows a page)"
        )
        load, analysis = analysis_ratio(args.groups, args.repeat)
        print(
            f"load 396 days x {args.groups} groups {load:.3f} s, spike detection {analysis:.3f} s"
        )
        print(f"ce requests per run {per_run:.1f}")
        print(f"analysis ratio {analysis / load:.2f}")
    ok = per_run <= TARGET_REQUESTS and analysis / load <= TARGET_RATIO
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
