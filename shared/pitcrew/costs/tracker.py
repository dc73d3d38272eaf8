"""One daily run of cost watch: fetch what changed, keep it, find spikes, check budgets.

Per provider the run fetches only the days that are not final yet: everything after the
watermark (every day up to it is final: not ``Estimated`` and older than
``costs.settle_days``). The first run backfills ``costs.backfill_days``. Days are written
whole before anything else happens, anomalies and budget alerts are claimed in the table
before their events go out and marked sent after, and the watermark moves last: a run
that fails anywhere leaves a consistent history, and the schedule's retry redoes exactly
what is missing, without a second alert for what was already sent.

Cost Explorer requests cost $0.01 each. A steady-state run makes one ``GetCostAndUsage``
request (more only when the answer has pages); the month-end forecast is requested every
``costs.forecast_refresh_days`` and in between its daily rate is applied to fresh actuals;
the anomaly monitors are looked for weekly (monthly once found) and ``GetAnomalies`` is
asked, when one exists, every ``costs.anomaly.aws_every_days`` (2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pitcrew.config import CostsConfig
from pitcrew.costs.detect import Thresholds, detect, episodes
from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import Anomaly, DailyCosts, Forecast, parse_day
from pitcrew.costs.providers import (
    GROUP_SEPARATOR,
    AwsCosts,
    CostProvider,
    DataUnavailableError,
)
from pitcrew.costs.related import RecentChanges
from pitcrew.errors import PitcrewError
from pitcrew.events import DomainEvent, EventName, event
from pitcrew.records import mutable

logger = logging.getLogger(__name__)

# Cost Explorer answers for the last 13 months only (without multi-year data).
HISTORY_LIMIT_DAYS = 396
BASELINE_DAYS = 35  # four weeks of baseline, and a week to spare for a late watermark
ALERT_WINDOW_DAYS = 7  # older anomalies (found by a backfill) are recorded, not alerted
# Monitors are looked for weekly while there are none, monthly once some exist.
MONITORS_LOOK_DAYS = 7
MONITORS_REFRESH_DAYS = 30
RUN_RATE_DAYS = 7
BUDGET_THRESHOLDS = (80, 100)
TOTAL_BUDGET = "monthly_total"


def month_end(day: date) -> date:
    """The first day of the next month."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


@mutable
class ProviderRun:
    provider: str
    start: str | None = None
    end: str | None = None
    backfill: bool = False
    days_written: int = 0
    watermark: str | None = None
    anomalies: int = 0
    requests: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@mutable
class RunReport:
    day: str
    providers: list[ProviderRun] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    budget_alerts: list[dict[str, Any]] = field(default_factory=list)
    forecast_usd: float | None = None
    month_to_date_usd: float | None = None

    @property
    def ce_requests(self) -> int:
        return sum(p.requests for p in self.providers if p.provider == "aws")

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "providers": [p.as_dict() for p in self.providers],
            "anomalies": self.anomalies,
            "budget_alerts": self.budget_alerts,
            "month_to_date_usd": self.month_to_date_usd,
            "forecast_usd": self.forecast_usd,
            "cost_explorer_requests": self.ce_requests,
        }


class CostTracker:
    """The daily run. Everything that talks to the outside is injected: the providers, the
    history, the event publisher, the recent-changes reader, the clock and the metrics."""

    def __init__(
        self,
        costs: CostsConfig,
        providers: Sequence[CostProvider],
        history: CostHistory | None = None,
        *,
        publish: Callable[..., None] | None = None,
        changes: Callable[[], RecentChanges] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Any | None = None,
    ) -> None:
        self.costs = costs
        self.providers = list(providers)
        self.history = history or CostHistory()
        if publish is None:
            from pitcrew.events import publish as publish_on_bus

            publish = publish_on_bus
        self.publish = publish
        self.changes = changes or RecentChanges.from_tables
        self.clock = clock
        self.metrics = metrics
        anomaly = costs.anomaly
        self.thresholds = Thresholds(anomaly.min_delta_usd, anomaly.min_ratio, anomaly.min_score)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> RunReport:
        today = self.clock().astimezone(UTC).date()
        report = RunReport(day=today.isoformat())
        forecasts: dict[str, Forecast] = {}
        month_days: dict[str, list[DailyCosts]] = {}
        recent: RecentChanges | None = None
        for provider in self.providers:
            run = ProviderRun(provider=provider.name)
            report.providers.append(run)
            try:
                state = self.history.state(provider.name)
                days = self._fetch(provider, state, today, run)
                if days is None:
                    continue
                for costs in days:  # each day whole, before anything depends on it
                    self.history.put_day(costs)
                run.days_written = len(days)
                history = self.history.days(
                    provider.name, parse_day(run.start or "") - timedelta(BASELINE_DAYS), today
                )
                if recent is None:
                    recent = self.changes()
                found = self._anomalies(
                    provider=provider,
                    state=state,
                    history=history,
                    today=today,
                    run=run,
                    recent=recent,
                )
                report.anomalies += [a.detail(*self._limits()) for a in found]
                month = [d for d in history if d.day >= today.replace(day=1)]
                month_days[provider.name] = month
                forecasts[provider.name] = self._forecast(provider, state, month, history, today)
                self._emit_daily_metrics(provider.name, history, today)
                run.watermark = self._advance(state, days, today)
                state["last_run"] = today.isoformat()
                self.history.put_state(state)  # the watermark moves last
            finally:
                run.requests = getattr(provider, "requests", 0)
                close = getattr(provider, "close", None)
                if close is not None:  # the request counter leaves the shared client
                    close()
        if forecasts:
            spent = sum(f.month_to_date_usd for f in forecasts.values())
            report.month_to_date_usd = round(spent, 2)
            report.forecast_usd = round(sum(f.total_usd for f in forecasts.values()), 2)
            report.budget_alerts = self._budgets(today, forecasts, month_days)
        self._emit_run_metrics(report)
        return report

    def _limits(self) -> tuple[float, float]:
        return self.thresholds.min_delta_usd, self.thresholds.min_ratio

    # -- fetching ----------------------------------------------------------------------------
    def _fetch(
        self, provider: CostProvider, state: dict[str, Any], today: date, run: ProviderRun
    ) -> list[DailyCosts] | None:
        watermark = state.get("watermark")
        oldest = today - timedelta(days=HISTORY_LIMIT_DAYS)
        if watermark and parse_day(watermark) < oldest - timedelta(days=1):
            # The tracker was off for longer than Cost Explorer remembers: the days before
            # `oldest` cannot be fetched any more. Skip them rather than ask for them forever.
            logger.warning(
                "%s: no run since %s; Cost Explorer keeps 13 months, so the history restarts "
                "at %s with a gap",
                provider.name,
                watermark,
                oldest.isoformat(),
            )
            run.note = f"history gap: {watermark} to {oldest.isoformat()} is beyond 13 months"
            watermark = state["watermark"] = (oldest - timedelta(days=1)).isoformat()
        if watermark:
            start = parse_day(watermark) + timedelta(days=1)
        else:
            start = today - timedelta(days=self.costs.backfill_days)
            run.backfill = True
        run.start, run.end = start.isoformat(), today.isoformat()
        if start >= today:
            run.note = "up to date"
            return []
        try:
            return provider.daily_costs(start, today)
        except DataUnavailableError as exc:
            # A new account: Cost Explorer has nothing yet. Not a failure; the next run
            # tries the backfill again.
            run.note = f"no cost data yet: {exc}"
            logger.warning("%s: no cost data available yet (%s)", provider.name, exc)
            return None

    def _advance(self, state: dict[str, Any], days: list[DailyCosts], today: date) -> str | None:
        """Move the watermark over the fetched days that are final, in order and without a
        gap, from where it was."""
        settled_before = today - timedelta(days=self.costs.settle_days)
        watermark = state.get("watermark")
        expected = parse_day(watermark) + timedelta(days=1) if watermark else None
        for costs in sorted(days, key=lambda c: c.day):
            if expected is not None and costs.day != expected:
                break
            if costs.estimated or costs.day >= settled_before:
                break
            watermark = costs.day.isoformat()
            expected = costs.day + timedelta(days=1)
        if watermark:
            state["watermark"] = watermark
        return watermark

    # -- anomalies ---------------------------------------------------------------------------
    def _anomalies(
        self,
        *,
        provider: CostProvider,
        state: dict[str, Any],
        history: list[DailyCosts],
        today: date,
        run: ProviderRun,
        recent: RecentChanges,
    ) -> list[Anomaly]:
        check_from = parse_day(run.start or today.isoformat())
        flagged = detect(history, check_from, self.thresholds)
        open_items = self.history.open_anomalies(provider.name)
        open_until = {group: parse_day(item["last_day"]) for group, item in open_items.items()}
        new, last = episodes(flagged, open_until)
        if isinstance(provider, AwsCosts):
            new += self._aws_anomalies(
                provider=provider,
                state=state,
                today=today,
                check_from=check_from,
                flagged=flagged,
                episodes_until=last,
            )
        # Episodes that ended more than two days before the newest day are over.
        newest = max((d.day for d in history), default=today)
        over = [g for g, day in last.items() if (newest - day).days > 2 and g in open_items]
        for group, day in last.items():
            if (newest - day).days <= 2 and open_until.get(group) != day:
                start = open_items.get(group, {}).get("start") or day.isoformat()
                self.history.set_open(provider.name, group, parse_day(start), day)
        self.history.close_open(provider.name, over)

        to_send: list[tuple[Anomaly, DomainEvent | None]] = []
        alert_from = today - timedelta(days=ALERT_WINDOW_DAYS)
        for found in new:
            anomaly = replace(found, preceding=recent.before(found.day))
            if not self.history.claim_anomaly(anomaly):
                continue  # recorded and sent before (a re-run, or the other detector)
            alert = (
                event(EventName.COST_ANOMALY_DETECTED, anomaly.detail(*self._limits()))
                if anomaly.day >= alert_from
                else None
            )
            to_send.append((anomaly, alert))
        events = [e for _, e in to_send if e is not None]
        if events:
            self.publish(*events)
        for anomaly, _ in to_send:
            self.history.mark_notified(anomaly)
        run.anomalies = len(to_send)
        return [a for a, e in to_send if e is not None]

    def _aws_anomalies(
        self,
        *,
        provider: AwsCosts,
        state: dict[str, Any],
        today: date,
        check_from: date,
        flagged: list[Anomaly],
        episodes_until: dict[str, date],
    ) -> list[Anomaly]:
        monitors = state.get("monitors") or {}
        checked = monitors.get("checked_on")
        every = MONITORS_REFRESH_DAYS if monitors.get("arns") else MONITORS_LOOK_DAYS
        if not checked or (today - parse_day(checked)).days >= every:
            try:
                arns = provider.anomaly_monitors()
            except (PitcrewError, NotImplementedError) as exc:
                logger.warning("cannot list Cost Anomaly Detection monitors: %s", exc)
                arns = list(monitors.get("arns", []))
            monitors = {"checked_on": today.isoformat(), "arns": arns}
            state["monitors"] = monitors
        if not monitors.get("arns"):
            return []
        every = self.costs.anomaly.aws_every_days
        asked = state.get("aws_anomalies_checked_on")
        if asked and (today - parse_day(asked)).days < every:
            return []
        # Anomalies that started since the last time AWS was asked, and the days this run
        # checks itself: an anomaly AWS reports again is claimed once (CostHistory).
        start = min(check_from, today - timedelta(days=every + 1))
        found = provider.anomalies(start, today - timedelta(days=1))
        state["aws_anomalies_checked_on"] = today.isoformat()
        # AWS names a service; grouped by two keys, pitcrew's group is "service | tag$value"
        # and any of a service's groups covers it.
        ours = {(_first_key(a.group), a.day) for a in flagged}
        until_by_service: dict[str, date] = {}
        for group, last_day in episodes_until.items():
            key = _first_key(group)
            until_by_service[key] = max(last_day, until_by_service.get(key, last_day))
        merged: list[Anomaly] = []
        for anomaly in found:
            until = until_by_service.get(anomaly.group)
            covered = until is not None and anomaly.day <= until and (until - anomaly.day).days < 14
            if (anomaly.group, anomaly.day) in ours or covered:
                continue  # the same service and day pitcrew reports itself
            merged.append(anomaly)
        return merged

    # -- forecast and budgets ----------------------------------------------------------------
    def _forecast(
        self,
        provider: CostProvider,
        state: dict[str, Any],
        month: list[DailyCosts],
        history: list[DailyCosts],
        today: date,
    ) -> Forecast:
        month_key = today.strftime("%Y-%m")
        mtd = round(sum(d.total for d in month if d.day < today), 2)
        remaining_days = (month_end(today) - today).days
        stored = state.get("forecast") or {}
        if isinstance(provider, AwsCosts):
            fetched = stored.get("fetched_on")
            fresh = (
                stored.get("month") == month_key
                and fetched
                and (today - parse_day(fetched)).days < self.costs.forecast_refresh_days
            )
            if not fresh:
                try:
                    remaining = provider.forecast_remaining(today)
                    stored = {
                        "month": month_key,
                        "fetched_on": today.isoformat(),
                        "daily_rate": round(remaining / max(remaining_days, 1), 6),
                        "source": "cost_explorer",
                    }
                    state["forecast"] = stored
                except (PitcrewError, NotImplementedError) as exc:
                    logger.warning("no Cost Explorer forecast, using the run rate: %s", exc)
                    stored = {}
        if stored.get("month") == month_key and "daily_rate" in stored:
            rate, source = float(stored["daily_rate"]), str(stored.get("source", "cost_explorer"))
        else:
            rate, source = run_rate(history, today), "run_rate"
        forecast = Forecast(month_key, mtd, round(rate * remaining_days, 2), source)
        state["month"] = {
            "month": month_key,
            "month_to_date_usd": forecast.month_to_date_usd,
            "forecast_usd": forecast.total_usd,
            "forecast_source": source,
        }
        return forecast

    def _budgets(
        self,
        today: date,
        forecasts: dict[str, Forecast],
        month_days: dict[str, list[DailyCosts]],
    ) -> list[dict[str, Any]]:
        month_key = today.strftime("%Y-%m")
        alerts: list[tuple[tuple[str, str, int], dict[str, Any]]] = []
        for name, limit in sorted(self.costs.budgets.items()):
            actual, forecast = self._budget_values(name, today, forecasts, month_days)
            for basis, value in (("actual", actual), ("forecast", forecast)):
                for pct in BUDGET_THRESHOLDS:
                    if value < limit * pct / 100:
                        continue
                    if not self.history.claim_budget_alert(month_key, name, basis, pct):
                        continue
                    detail = {
                        "budget": name,
                        "month": month_key,
                        "limit_usd": limit,
                        "actual_usd": round(actual, 2),
                        "forecast_usd": round(forecast, 2),
                        "threshold_pct": pct,
                        "basis": basis,
                    }
                    alerts.append(((name, basis, pct), detail))
        if alerts:
            self.publish(*(event(EventName.BUDGET_THRESHOLD_CROSSED, d) for _, d in alerts))
        for (name, basis, pct), _ in alerts:
            self.history.mark_budget_alerted(month_key, name, basis, pct)
        return [d for _, d in alerts]

    def _budget_values(
        self,
        name: str,
        today: date,
        forecasts: dict[str, Forecast],
        month_days: dict[str, list[DailyCosts]],
    ) -> tuple[float, float]:
        if name == TOTAL_BUDGET:
            return (
                sum(f.month_to_date_usd for f in forecasts.values()),
                sum(f.total_usd for f in forecasts.values()),
            )
        # A group's budget: its month to date, and its own recent daily rate to month end.
        actual = forecast = 0.0
        remaining_days = (month_end(today) - today).days
        for days in month_days.values():
            spent = sum(_group_amount(d, name) for d in days if d.day < today)
            recent = [d for d in days if today - timedelta(RUN_RATE_DAYS) <= d.day < today]
            rate = sum(_group_amount(d, name) for d in recent) / max(len(recent), 1)
            actual += spent
            forecast += spent + rate * remaining_days
        return actual, forecast

    # -- metrics -----------------------------------------------------------------------------
    def _emit_daily_metrics(self, provider: str, history: list[DailyCosts], today: date) -> None:
        if self.metrics is None:
            return
        latest = max((d for d in history if d.day < today), key=lambda d: d.day, default=None)
        if latest is None:
            return
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        # One EMF document per group: dimensions are per document.
        for group, amount in sorted(latest.groups.items()):
            with single_metric(
                name="DailyCostUSD",
                unit=MetricUnit.NoUnit,  # dollars: CloudWatch has no currency unit
                value=round(amount, 4),
                namespace=self.metrics.namespace or "pitcrew",
            ) as metric:
                metric.add_dimension("provider", provider)
                metric.add_dimension("group", group[:250] or "(none)")

    def _emit_run_metrics(self, report: RunReport) -> None:
        if self.metrics is None:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        self.metrics.add_metric("AnomaliesFound", MetricUnit.Count, len(report.anomalies))
        self.metrics.add_metric("CostExplorerRequests", MetricUnit.Count, report.ce_requests)
        self.metrics.add_metric("BudgetAlerts", MetricUnit.Count, len(report.budget_alerts))


def _first_key(group: str) -> str:
    return group.split(GROUP_SEPARATOR, 1)[0]


def _group_amount(costs: DailyCosts, name: str) -> float:
    # A budget names a value of the first group_by key: "EC2" matches "EC2" and "EC2 | x".
    return sum(
        amount
        for group, amount in costs.groups.items()
        if group == name or group.startswith(name + " | ")
    )


def run_rate(history: Sequence[DailyCosts], today: date) -> float:
    """The mean daily total of the last week before ``today`` (0 without data)."""
    recent = [d.total for d in history if today - timedelta(RUN_RATE_DAYS) <= d.day < today]
    return sum(recent) / len(recent) if recent else 0.0
