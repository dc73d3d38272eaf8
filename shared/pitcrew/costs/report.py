"""Reading cost history: the ``GET /costs`` document and the ``GET /metrics`` exposition.

Both read only the costs table (no cloud API, no Cost Explorer request), so they are cheap
to serve and to scrape. Imports stay light: the api function loads this at cold start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pitcrew.config import CostsConfig
from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import DailyCosts
from pitcrew.errors import BadRequestError

MAX_DAYS = 396
DEFAULT_DAYS = 30
MAX_TOP = 10_000
# Lambda answers API Gateway with at most 6 MB; past this the answer is refused, saying how to
# ask for less, instead of failing as a bare 502.
MAX_REPORT_BYTES = 5_500_000
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_days(raw: str | None) -> int:
    """``?days=N``: a whole number of days from 1 to 396 (13 months)."""
    if raw is None or raw == "":
        return DEFAULT_DAYS
    return _whole("days", raw, MAX_DAYS)


def parse_top(raw: str | None) -> int | None:
    """``?top=N``: the N groups that cost most (the rest summed in one row); None: all."""
    if raw is None or raw == "":
        return None
    return _whole("top", raw, MAX_TOP)


def _whole(name: str, raw: str, most: int) -> int:
    text = raw.strip()
    # ASCII digits only ("²" is a digit to str.isdigit but not to int), and few of them:
    # int() refuses more than 4300 digits, and the error repeats what it was given.
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise BadRequestError(f"{name} must be a whole number from 1 to {most}, got {shown!r}")
    value = int(text)
    if not 1 <= value <= most:
        raise BadRequestError(f"{name} must be from 1 to {most}, got {value}")
    return value


def check_size(report: Mapping[str, Any], body: str) -> None:
    """Refuse a report too large for a Lambda answer, saying what to ask instead."""
    size = len(body.encode())
    if size <= MAX_REPORT_BYTES:
        return
    groups = report.get("groups_total", len(report.get("groups") or ()))
    raise BadRequestError(
        f"the report for {report.get('days')} days of {groups} cost groups is "
        f"{size / 1e6:.1f} MB, over the 6 MB a Lambda can answer: "
        "ask for fewer days (?days=N) or only the costliest groups (?top=N)"
    )


def _change_pct(now: float, before: float) -> float | None:
    return round((now - before) / before * 100, 1) if before > 0 else None


def cost_report(
    history: CostHistory,
    costs: CostsConfig | None,
    days: int = DEFAULT_DAYS,
    today: date | None = None,
    top: int | None = None,
) -> dict[str, Any]:
    """Daily totals, per-group series with the change against the previous period of the
    same length, anomalies, the month's forecast and the budgets, for the last ``days``
    complete days. With ``top``, only the ``top`` costliest groups, then one row summing
    the others (``groups_total`` counts them all)."""
    today = today or datetime.now(UTC).date()
    start, previous_start = today - timedelta(days=days), today - timedelta(days=2 * days)
    dates = [start + timedelta(days=n) for n in range(days)]
    index = {d: n for n, d in enumerate(dates)}
    daily = {d: 0.0 for d in dates}
    by_provider: dict[str, dict[date, float]] = {}
    groups: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    month: dict[str, Any] = {"month": today.strftime("%Y-%m"), "by_provider": {}}
    providers = history.providers()
    for provider in providers:
        stored = history.days(provider, previous_start, today)
        current = [c for c in stored if c.day >= start]
        previous = [c for c in stored if c.day < start]
        totals = by_provider.setdefault(provider, {})
        for c in current:
            daily[c.day] += c.total
            totals[c.day] = c.total
        groups += _group_rows(provider, current, previous, index, days)
        anomalies += [_anomaly_row(a) for a in history.anomalies(provider, start, today)]
        state_month = history.state(provider).get("month") or {}
        if state_month.get("month") == month["month"]:
            month["by_provider"][provider] = {
                "month_to_date_usd": state_month.get("month_to_date_usd"),
                "forecast_usd": state_month.get("forecast_usd"),
                "source": state_month.get("forecast_source"),
            }
    known = month["by_provider"].values()
    month["month_to_date_usd"] = round(sum(m["month_to_date_usd"] or 0 for m in known), 2)
    month["forecast_usd"] = round(sum(m["forecast_usd"] or 0 for m in known), 2)
    groups.sort(key=lambda g: (-g["total_usd"], g["provider"], g["group"]))
    groups_total = len(groups)
    if top is not None and len(groups) > top:
        groups = [*groups[:top], _others(groups[top:], days)]
    return {
        "days": days,
        "from": start.isoformat(),
        "to": (today - timedelta(days=1)).isoformat(),
        "currency": "USD",
        "providers": providers,
        "daily": [
            {
                "date": d.isoformat(),
                "total_usd": round(daily[d], 2),
                "by_provider": {p: round(t.get(d, 0.0), 2) for p, t in by_provider.items()},
            }
            for d in dates
        ],
        "total_usd": round(sum(daily.values()), 2),
        "groups": groups,
        "groups_total": groups_total,
        "anomalies": anomalies,
        "forecast": month,
        "budgets": _budgets(history, costs, month),
    }


def _group_rows(
    provider: str,
    current: list[DailyCosts],
    previous: list[DailyCosts],
    index: Mapping[date, int],
    days: int,
) -> list[dict[str, Any]]:
    series: dict[str, list[float]] = {}
    for c in current:
        for name, amount in c.groups.items():
            series.setdefault(name, [0.0] * days)[index[c.day]] = round(amount, 4)
    before: dict[str, float] = {}
    for c in previous:
        for name, amount in c.groups.items():
            before[name] = before.get(name, 0.0) + amount
    rows = []
    for name in sorted(set(series) | set(before)):
        values = series.get(name, [0.0] * days)
        total = sum(values)
        rows.append(
            {
                "provider": provider,
                "group": name,
                "total_usd": round(total, 2),
                "previous_usd": round(before.get(name, 0.0), 2),
                "change_pct": _change_pct(total, before.get(name, 0.0)),
                "series": values,
            }
        )
    return rows


def _others(rest: list[dict[str, Any]], days: int) -> dict[str, Any]:
    """One row summing the groups past the top ones."""
    total = sum(g["total_usd"] for g in rest)
    previous = sum(g["previous_usd"] for g in rest)
    return {
        "provider": "all",
        "group": f"(other {len(rest)} groups)",
        "total_usd": round(total, 2),
        "previous_usd": round(previous, 2),
        "change_pct": _change_pct(total, previous),
        "series": [round(sum(g["series"][n] for g in rest), 4) for n in range(days)],
    }


def _anomaly_row(item: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "provider",
        "group",
        "day",
        "last_day",
        "kind",
        "source",
        "amount_usd",
        "baseline_usd",
        "delta_usd",
        "ratio",
        "score",
        "preceding",
    )
    return {k: item.get(k) for k in keys}


def _budgets(
    history: CostHistory, costs: CostsConfig | None, month: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if costs is None or not costs.budgets:
        return []
    alerts = history.budget_alerts(month["month"])
    rows = []
    for name, limit in sorted(costs.budgets.items()):
        crossed = sorted(a["sk"].split("#", 1)[1] for a in alerts if a["sk"].startswith(f"{name}#"))
        row: dict[str, Any] = {"name": name, "limit_usd": limit, "crossed": crossed}
        if name == "monthly_total":
            row["actual_usd"] = month["month_to_date_usd"]
            row["forecast_usd"] = month["forecast_usd"]
        rows.append(row)
    return rows


# -- Prometheus ---------------------------------------------------------------------------------


def _escape(value: str) -> str:
    """A label value as the text format 0.0.4 wants it: backslash, quote, newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{rendered}}} {_number(value)}" if rendered else f"{name} {value}")
    return lines


def prometheus_text(history: CostHistory, today: date | None = None) -> str:
    """The cost gauges in the Prometheus text exposition format 0.0.4."""
    today = today or datetime.now(UTC).date()
    daily: list[tuple[dict[str, str], float]] = []
    mtd: list[tuple[dict[str, str], float]] = []
    forecast: list[tuple[dict[str, str], float]] = []
    anomalies: list[tuple[dict[str, str], float]] = []
    for provider in history.providers():
        recent = history.days(provider, today - timedelta(days=7), today)
        if recent:
            latest = max(recent, key=lambda c: c.day)
            for group, amount in sorted(latest.groups.items()):
                daily.append(({"provider": provider, "group": group}, amount))
        month = history.state(provider).get("month") or {}
        if month.get("month") == today.strftime("%Y-%m"):
            mtd.append(({"provider": provider}, float(month.get("month_to_date_usd") or 0)))
            forecast.append(({"provider": provider}, float(month.get("forecast_usd") or 0)))
        anomalies.append(({"provider": provider}, float(history.count_anomalies(provider))))
    lines = [
        *_family(
            "pitcrew_cost_daily_usd",
            "gauge",
            "Cost of the latest stored day, per provider and group, in USD.",
            daily,
        ),
        *_family(
            "pitcrew_cost_month_to_date_usd",
            "gauge",
            "Cost of the current month so far, per provider, in USD.",
            mtd,
        ),
        *_family(
            "pitcrew_cost_forecast_month_usd",
            "gauge",
            "Forecast cost of the current month at its end, per provider, in USD.",
            forecast,
        ),
        *_family(
            "pitcrew_cost_anomalies_total",
            "counter",
            "Cost anomalies recorded (spikes and new spend), per provider.",
            anomalies,
        ),
    ]
    return "\n".join(lines) + "\n"
