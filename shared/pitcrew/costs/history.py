"""``CostHistory``: what cost watch keeps in the costs table (``COSTS_TABLE``).

One item per provider and day holds every group of that day, so a day is written whole in
one ``PutItem``: re-fetching a day overwrites it (never doubles it), and a run that fails
half-way leaves each day either as it was or complete. The items, by key:

=====================  ==========================  ==============================================
pk                     sk                          what
=====================  ==========================  ==============================================
``daily#<provider>``   ``YYYY-MM-DD``              ``groups`` (JSON {group: USD}), ``total``,
                                                   ``estimated``
``state``              ``<provider>``              ``watermark`` (every day up to it is final),
                                                   ``forecast``, ``monitors``, ``last_run``
``anomaly#<provider>`` ``YYYY-MM-DD#<group>``      one anomaly; ``notified`` once its event is out
``open#<provider>``    ``<group>``                 the group's anomaly still going on (no new alert)
``budget#YYYY-MM``     ``<name>#<basis>#<pct>``    a budget threshold crossed (alerted once a month)
=====================  ==========================  ==============================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pitcrew.costs.model import Anomaly, DailyCosts, parse_day
from pitcrew.errors import ConflictError
from pitcrew.stores import Table, table_name

TABLE_ENV = "COSTS_TABLE"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CostHistory:
    """Daily costs, run state, anomalies and budget alerts of every provider."""

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or Table(table_name(TABLE_ENV))

    # -- daily costs -------------------------------------------------------------------------
    def put_day(self, costs: DailyCosts) -> None:
        """Write one provider's day whole, replacing what was there."""
        self.table.put(
            {
                "pk": f"daily#{costs.provider}",
                "sk": costs.day.isoformat(),
                # One JSON document, not a map: a day of 300 groups is one attribute to
                # read and decode instead of 300 typed numbers.
                "groups": json.dumps(
                    {name: round(amount, 6) for name, amount in costs.groups.items()},
                    separators=(",", ":"),
                ),
                "total": costs.total,
                "estimated": costs.estimated,
                "fetched_at": _now(),
            }
        )

    def days(self, provider: str, start: date, end: date) -> list[DailyCosts]:
        """The stored days of ``provider`` from ``start`` up to, not including, ``end``."""
        items = self.table.query(
            "pk = :pk AND sk BETWEEN :start AND :last",
            values={
                ":pk": f"daily#{provider}",
                ":start": start.isoformat(),
                ":last": (end - timedelta(days=1)).isoformat(),
            },
        )
        return [
            DailyCosts(
                provider=provider,
                day=parse_day(item["sk"]),
                groups=json.loads(item.get("groups") or "{}"),
                estimated=bool(item.get("estimated")),
            )
            for item in items
        ]

    # -- run state ---------------------------------------------------------------------------
    def state(self, provider: str) -> dict[str, Any]:
        return self.table.get({"pk": "state", "sk": provider}) or {"pk": "state", "sk": provider}

    def put_state(self, state: dict[str, Any]) -> None:
        self.table.put({**state, "updated_at": _now()})

    def providers(self) -> list[str]:
        """The providers with stored state (those the tracker has run for)."""
        return [item["sk"] for item in self.table.query("pk = :pk", values={":pk": "state"})]

    # -- anomalies ---------------------------------------------------------------------------
    def claim_anomaly(self, anomaly: Anomaly) -> bool:
        """Record ``anomaly``; False when it is already recorded and its event was sent (a
        re-run, or AWS and pitcrew reporting the same group and day)."""
        item = _anomaly_item(anomaly)
        try:
            self.table.put(
                item,
                condition="attribute_not_exists(pk) OR notified = :no",
                values={":no": False},
            )
        except ConflictError:
            return False
        return True

    def mark_notified(self, anomaly: Anomaly) -> None:
        self.table.put({**_anomaly_item(anomaly), "notified": True})

    def anomalies(self, provider: str, start: date, end: date) -> list[dict[str, Any]]:
        """Recorded anomalies whose first day is in [start, end), oldest first."""
        return list(
            self.table.query(
                "pk = :pk AND sk BETWEEN :start AND :end",
                values={
                    ":pk": f"anomaly#{provider}",
                    ":start": start.isoformat(),
                    ":end": end.isoformat(),
                },
            )
        )

    def count_anomalies(self, provider: str) -> int:
        return sum(1 for _ in self.table.query("pk = :pk", values={":pk": f"anomaly#{provider}"}))

    def open_anomalies(self, provider: str) -> dict[str, dict[str, Any]]:
        """The anomaly still going on per group: ``{group: {"start", "last_day"}}``."""
        return {
            item["sk"]: item
            for item in self.table.query("pk = :pk", values={":pk": f"open#{provider}"})
        }

    def set_open(self, provider: str, group: str, start: date, last_day: date) -> None:
        self.table.put(
            {
                "pk": f"open#{provider}",
                "sk": group,
                "start": start.isoformat(),
                "last_day": last_day.isoformat(),
            }
        )

    def close_open(self, provider: str, groups: Iterable[str]) -> None:
        for group in groups:
            self.table.delete({"pk": f"open#{provider}", "sk": group})

    # -- budgets -----------------------------------------------------------------------------
    def claim_budget_alert(self, month: str, name: str, basis: str, pct: int) -> bool:
        """True the first time a threshold is crossed in ``month`` (or when its event could
        not be sent last time); False once it has been alerted."""
        try:
            self.table.put(
                {
                    "pk": f"budget#{month}",
                    "sk": f"{name}#{basis}#{pct}",
                    "notified": False,
                    "at": _now(),
                },
                condition="attribute_not_exists(pk) OR notified = :no",
                values={":no": False},
            )
        except ConflictError:
            return False
        return True

    def mark_budget_alerted(self, month: str, name: str, basis: str, pct: int) -> None:
        self.table.put(
            {"pk": f"budget#{month}", "sk": f"{name}#{basis}#{pct}", "notified": True, "at": _now()}
        )

    def budget_alerts(self, month: str) -> list[dict[str, Any]]:
        return list(self.table.query("pk = :pk", values={":pk": f"budget#{month}"}))


def _anomaly_item(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "pk": f"anomaly#{anomaly.provider}",
        "sk": f"{anomaly.day.isoformat()}#{anomaly.group}",
        "provider": anomaly.provider,
        "group": anomaly.group,
        "day": anomaly.day.isoformat(),
        "last_day": (anomaly.last_day or anomaly.day).isoformat(),
        "kind": anomaly.kind,
        "source": anomaly.source,
        "amount_usd": round(anomaly.amount_usd, 2),
        "baseline_usd": round(anomaly.baseline_usd, 2),
        "delta_usd": anomaly.delta_usd,
        "ratio": anomaly.ratio,
        "score": None if anomaly.score is None else round(anomaly.score, 2),
        "preceding": list(anomaly.preceding),
        "notified": False,
        "recorded_at": _now(),
    }
