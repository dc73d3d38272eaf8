"""Cost providers behind one interface: each fetches a range of days' costs per group.

``aws`` (Cost Explorer, here) is on by default; ``azure`` and ``gcp`` (their own modules,
imported only when configured, since they need httpx) are optional. ``build_providers``
makes the configured ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Protocol

from pitcrew.config import CostsConfig
from pitcrew.costs.model import Anomaly, DailyCosts, days_between, parse_day
from pitcrew.errors import ServiceError, TransientServiceError

GROUP_SEPARATOR = " | "
# GetCostForecast names the metrics differently from GetCostAndUsage.
FORECAST_METRICS = {
    "UnblendedCost": "UNBLENDED_COST",
    "BlendedCost": "BLENDED_COST",
    "AmortizedCost": "AMORTIZED_COST",
    "NetUnblendedCost": "NET_UNBLENDED_COST",
    "NetAmortizedCost": "NET_AMORTIZED_COST",
}


class DataUnavailableError(ServiceError):
    """The provider has no cost data for the period yet (a new account): not a failure."""


class CostProvider(Protocol):
    """What the tracker needs from a cloud: a day range's costs per group, all pages."""

    name: str

    def daily_costs(self, start: date, end: date) -> list[DailyCosts]:
        """Every day from ``start`` up to, not including, ``end`` (days with no charge have
        empty groups); ``estimated`` marks the days the provider may still change."""
        ...


# -- AWS Cost Explorer -------------------------------------------------------------------------


class CostExplorer:
    """Cost Explorer's client behind a request counter: every request, each page and each
    retry botocore makes, costs $0.01, so ``requests`` says what a run spent.

    The count comes from botocore's ``before-sign`` event, which fires once per request
    sent. Throttling that outlasts botocore's own retries is retried here with backoff
    (``sleep`` is injectable). ``DataUnavailableException`` becomes ``DataUnavailableError``.
    """

    def __init__(
        self,
        client: Any | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        base_delay_s: float = 2.0,
    ) -> None:
        self._client = client
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.requests = 0
        self._hooked: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            # Cost Explorer has one endpoint, in us-east-1, whatever the function's region.
            self._client = client("ce", "us-east-1")
        if self._hooked is not self._client:
            self._client.meta.events.register("before-sign.cost-explorer", self._on_request)
            self._hooked = self._client
        return self._client

    def _on_request(self, **_: Any) -> None:
        self.requests += 1

    def close(self) -> None:
        """Stop counting (the client is shared; another run gets its own counter)."""
        if self._hooked is not None:
            self._hooked.meta.events.unregister("before-sign.cost-explorer", self._on_request)
            self._hooked = None

    def call(self, operation: str, *, retry: bool = True, **request: Any) -> dict[str, Any]:
        """One operation; with ``retry``, throttling that outlasts botocore's retries is
        retried here too (optional calls pass False: they are not worth more requests)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from pitcrew.aws import error_code, translate

        attempts = self.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response: dict[str, Any] = getattr(self.client, operation)(**request)
                return response
            except (ClientError, BotoCoreError) as exc:
                if isinstance(exc, ClientError) and error_code(exc) == "DataUnavailableException":
                    raise DataUnavailableError("cost-explorer", str(exc)) from exc
                error = translate(exc, "cost-explorer")
                if not isinstance(error, TransientServiceError) or attempt == attempts:
                    raise error from exc
            self.sleep(self.base_delay_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def pages(
        self, operation: str, result_key: str, *, retry: bool = True, **request: Any
    ) -> list[Any]:
        """Every page of ``operation``'s ``result_key`` list (``NextPageToken``)."""
        items: list[Any] = []
        while True:
            response = self.call(operation, retry=retry, **request)
            items.extend(response.get(result_key, []))
            token = response.get("NextPageToken")
            if not token:
                return items
            request = {**request, "NextPageToken": token}


class AwsCosts:
    """AWS costs from Cost Explorer: ``GetCostAndUsage`` DAILY by ``costs.group_by``, the
    month-end ``GetCostForecast``, and AWS Cost Anomaly Detection's anomalies."""

    name = "aws"

    def __init__(self, costs: CostsConfig, explorer: CostExplorer | None = None) -> None:
        self.metric = costs.metric
        self.group_by = costs.group_by_definitions()
        self.explorer = explorer or CostExplorer()

    @property
    def requests(self) -> int:
        return self.explorer.requests

    def close(self) -> None:
        self.explorer.close()

    def daily_costs(self, start: date, end: date) -> list[DailyCosts]:
        results = self.explorer.pages(
            "get_cost_and_usage",
            "ResultsByTime",
            TimePeriod={"Start": start.isoformat(), "End": end.isoformat()},
            Granularity="DAILY",
            Metrics=[self.metric],
            GroupBy=self.group_by,
        )
        groups: dict[date, dict[str, float]] = {}
        estimated: dict[date, bool] = {}
        for result in results:
            day = parse_day(result["TimePeriod"]["Start"])
            into = groups.setdefault(day, {})
            # A day's groups may be split over pages: merge, never replace.
            for group in result.get("Groups", []):
                name = GROUP_SEPARATOR.join(group.get("Keys", [])) or "(none)"
                amount = float(group.get("Metrics", {}).get(self.metric, {}).get("Amount", 0))
                into[name] = into.get(name, 0.0) + amount
            estimated[day] = estimated.get(day, False) or bool(result.get("Estimated"))
        # A day Cost Explorer did not return is not known yet: it is left out (not written
        # over), and the watermark stops before it.
        return [
            DailyCosts(provider=self.name, day=day, groups=groups[day], estimated=estimated[day])
            for day in days_between(start, end)
            if day in groups
        ]

    def forecast_remaining(self, today: date) -> float:
        """Cost Explorer's forecast from ``today`` to the end of the month, in USD."""
        month_end = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
        response = self.explorer.call(
            "get_cost_forecast",
            retry=False,
            TimePeriod={"Start": today.isoformat(), "End": month_end.isoformat()},
            Metric=FORECAST_METRICS[self.metric],
            Granularity="MONTHLY",
        )
        return float(response.get("Total", {}).get("Amount", 0.0))

    def anomaly_monitors(self) -> list[str]:
        monitors = self.explorer.pages("get_anomaly_monitors", "AnomalyMonitors", retry=False)
        return [m["MonitorArn"] for m in monitors if m.get("MonitorArn")]

    def anomalies(self, start: date, end: date) -> list[Anomaly]:
        """AWS Cost Anomaly Detection's anomalies that started in [start, end], all monitors."""
        found = self.explorer.pages(
            "get_anomalies",
            "Anomalies",
            DateInterval={"StartDate": start.isoformat(), "EndDate": end.isoformat()},
        )
        return [a for a in (aws_anomaly(item) for item in found) if a is not None]


def aws_anomaly(item: dict[str, Any]) -> Anomaly | None:
    """An anomaly of ``GetAnomalies`` in pitcrew's terms (group: the root cause's service)."""
    causes = item.get("RootCauses") or [{}]
    group = causes[0].get("Service") or item.get("DimensionValue")
    start = item.get("AnomalyStartDate")
    if not group or not start:
        return None
    impact = item.get("Impact", {})
    actual = float(impact.get("TotalActualSpend", impact.get("MaxImpact", 0.0)) or 0.0)
    expected = float(impact.get("TotalExpectedSpend", 0.0) or 0.0)
    end = item.get("AnomalyEndDate")
    score = item.get("AnomalyScore", {}).get("MaxScore")
    return Anomaly(
        provider="aws",
        group=str(group),
        day=parse_day(start),
        amount_usd=actual,
        baseline_usd=expected,
        score=float(score) if score is not None else None,
        source="aws_anomaly_detection",
        last_day=parse_day(end) if end else None,
        extra={"aws_anomaly_id": item.get("AnomalyId"), "monitor_arn": item.get("MonitorArn")},
    )


def build_providers(costs: CostsConfig) -> list[Any]:
    """The providers ``costs.providers`` turns on, AWS first."""
    providers: list[Any] = []
    if costs.providers.aws:
        providers.append(AwsCosts(costs))
    if costs.providers.azure is not None:
        from pitcrew.costs.azure import AzureCosts

        providers.append(AzureCosts(costs.providers.azure))
    if costs.providers.gcp is not None:
        from pitcrew.costs.gcp import GcpCosts

        providers.append(GcpCosts(costs.providers.gcp))
    return providers
