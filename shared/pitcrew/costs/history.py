"""``CostHistory``: what cost watch keeps in the costs table (``COSTS_TABLE``).

One item per provider and day holds every group of that day, so a day is written whole in
one ``PutItem``: re-fetching a day overwrites it (never doubles it), and a run that fails
half-way leaves each day either as it was or complete. A day too large for one item (DynamoDB
keeps at most 400 KB: about 7,000 groups) keeps the rest of its groups in part items, written
first, under a new write id; the day's item then names that id and how many parts it has, so
a reader never mixes two writes, and the previous write's parts are deleted last. The items,
by key:

=====================  ==========================  ==============================================
pk                     sk                          what
=====================  ==========================  ==============================================
``daily#<provider>``   ``YYYY-MM-DD``              ``groups`` (JSON {group: USD}), ``total``,
                                                   ``estimated``; a large day: ``parts``, ``write``
``daily#<provider>``   ``YYYY-MM-DD#<write>#<n>``  part n (1...) of a large day's ``groups``
``state``              ``<provider>``              ``watermark`` (every day up to it is final),
                                                   ``forecast``, ``monitors``, ``last_run``
``anomaly#<provider>`` ``YYYY-MM-DD#<group>``      one anomaly; ``notified`` once its event is out
``open#<provider>``    ``<group>``                 the group's anomaly still going on (no new alert)
``budget#YYYY-MM``     ``<name>#<basis>#<pct>``    a budget threshold crossed (alerted once a month)
=====================  ==========================  ==============================================
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pitcrew.costs.model import Anomaly, DailyCosts, parse_day
from pitcrew.errors import ConflictError, TransientServiceError
from pitcrew.stores import Table, table_name

TABLE_ENV = "COSTS_TABLE"
# The JSON of a day's groups per item: well inside DynamoDB's 400 KB with the other attributes.
PART_BYTES = 300_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CostHistory:
    """Daily costs, run state, anomalies and budget alerts of every provider."""

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or Table(table_name(TABLE_ENV))

    # -- daily costs -------------------------------------------------------------------------
    def put_day(self, costs: DailyCosts) -> None:
        """Write one provider's day whole, replacing what was there."""
        pk, day = f"daily#{costs.provider}", costs.day.isoformat()
        # One JSON document per item, not a map: a day of 300 groups is one attribute to read
        # and decode instead of 300 typed numbers.
        chunks = _chunks({name: round(amount, 6) for name, amount in costs.groups.items()})
        item: dict[str, Any] = {
            "pk": pk,
            "sk": day,
            "groups": chunks[0],
            "total": costs.total,
            "estimated": costs.estimated,
            "fetched_at": _now(),
        }
        if len(chunks) > 1:
            write = secrets.token_hex(4)
            for n, chunk in enumerate(chunks[1:], start=1):
                self.table.put({"pk": pk, "sk": f"{day}#{write}#{n}", "groups": chunk})
            item.update(parts=len(chunks), write=write)
        before = self.table.put(item, return_old=True) or {}
        if before.get("write") and before.get("write") != item.get("write"):
            for n in range(1, int(before.get("parts", 1))):
                self.table.delete({"pk": pk, "sk": f"{day}#{before['write']}#{n}"})

    def days(self, provider: str, start: date, end: date) -> list[DailyCosts]:
        """The stored days of ``provider`` from ``start`` up to, not including, ``end``."""
        for _ in range(3):
            days = self._read_days(provider, start, end)
            if days is not None:
                return days
        raise TransientServiceError(
            "dynamodb", f"the days of {provider} kept changing while read; try again"
        )

    def _read_days(self, provider: str, start: date, end: date) -> list[DailyCosts] | None:
        """None when a large day was rewritten while read (its parts were gone)."""
        items = self.table.query(
            "pk = :pk AND sk BETWEEN :start AND :last",
            values={
                ":pk": f"daily#{provider}",
                ":start": start.isoformat(),
                # Past the last day's own key: its part items sort after it.
                ":last": (end - timedelta(days=1)).isoformat() + "#~",
            },
        )
        mains: list[dict[str, Any]] = []
        parts: dict[str, str] = {}
        for item in items:
            if "#" in item["sk"]:
                parts[item["sk"]] = item.get("groups") or "{}"
            else:
                mains.append(item)
        found = []
        for item in mains:
            groups = json.loads(item.get("groups") or "{}")
            for n in range(1, int(item.get("parts", 1))):
                part = parts.get(f"{item['sk']}#{item.get('write')}#{n}")
                if part is None:
                    return None
                groups.update(json.loads(part))
            found.append(
                DailyCosts(
                    provider=provider,
                    day=parse_day(item["sk"]),
                    groups=groups,
                    estimated=bool(item.get("estimated")),
                )
            )
        return found

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


def _chunks(groups: dict[str, float]) -> list[str]:
    """``groups`` as JSON objects of at most ``PART_BYTES`` each (one, for most days)."""
    whole = json.dumps(groups, separators=(",", ":"))
    if len(whole.encode()) <= PART_BYTES:
        return [whole]
    chunks: list[str] = []
    current: dict[str, float] = {}
    size = 2
    for name, amount in groups.items():
        entry = len(json.dumps({name: amount}, separators=(",", ":")).encode()) - 1
        if current and size + entry > PART_BYTES:
            chunks.append(json.dumps(current, separators=(",", ":")))
            current, size = {}, 2
        current[name] = amount
        size += entry
    chunks.append(json.dumps(current, separators=(",", ":")))
    return chunks


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
