"""The values cost watch passes around: one provider's costs of one day, anomalies, forecasts."""

from __future__ import annotations

from dataclasses import field
from datetime import date, timedelta
from typing import Any, Literal

from pitcrew.records import frozen

AnomalyKind = Literal["spike", "new_spend"]


def parse_day(text: str) -> date:
    return date.fromisoformat(text[:10])


def days_between(start: date, end: date) -> list[date]:
    """Every day from ``start`` up to, not including, ``end``."""
    return [start + timedelta(days=n) for n in range((end - start).days)]


@frozen
class DailyCosts:
    """What one provider charged on one day, per group (a service, or two keys joined by
    `` | ``). ``estimated`` days may still change and are fetched again."""

    provider: str
    day: date
    groups: dict[str, float]
    estimated: bool = False

    @property
    def total(self) -> float:
        return round(sum(self.groups.values()), 6)


@frozen
class Anomaly:
    """A day on which a group cost clearly more than its baseline, or a new group's first
    spend. ``source`` is ``pitcrew`` (our detector) or ``aws_anomaly_detection``."""

    provider: str
    group: str
    day: date
    amount_usd: float
    baseline_usd: float
    kind: AnomalyKind = "spike"
    score: float | None = None
    baseline_days: int = 28
    source: str = "pitcrew"
    last_day: date | None = None
    preceding: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delta_usd(self) -> float:
        return round(self.amount_usd - self.baseline_usd, 2)

    @property
    def ratio(self) -> float | None:
        return round(self.amount_usd / self.baseline_usd, 2) if self.baseline_usd > 0 else None

    @property
    def key(self) -> str:
        """What makes two reports the same anomaly: group and first day."""
        return f"{self.group}#{self.day.isoformat()}"

    def detail(self, min_delta_usd: float, min_ratio: float) -> dict[str, Any]:
        """The ``CostAnomalyDetected`` detail (events/eventbridge/CostAnomalyDetected.json)."""
        return {
            "date": self.day.isoformat(),
            "service": self.group,
            "provider": self.provider,
            "kind": self.kind,
            "source": self.source,
            "amount_usd": round(self.amount_usd, 2),
            "baseline_usd": round(self.baseline_usd, 2),
            "delta_usd": self.delta_usd,
            "ratio": self.ratio,
            "score": None if self.score is None else round(self.score, 1),
            "baseline_days": self.baseline_days,
            "thresholds": {"min_delta_usd": min_delta_usd, "min_ratio": min_ratio},
            "preceding": list(self.preceding),
            **self.extra,
        }


@frozen
class Forecast:
    """A month-end forecast: what was spent so far and what the rest of the month adds."""

    month: str
    month_to_date_usd: float
    remaining_usd: float
    source: str  # "cost_explorer" (rate from GetCostForecast) or "run_rate"

    @property
    def total_usd(self) -> float:
        return round(self.month_to_date_usd + self.remaining_usd, 2)
