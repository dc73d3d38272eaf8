"""What changed just before a cost anomaly: promotions and fix pull requests pitcrew knows.

Other capabilities own these tables, so they are read defensively: a missing table, an
unreadable item or an unknown shape means "nothing known", never a failed run. The items
looked for (any key layout; attributes as below):

- ``PROMOTIONS_TABLE``: a promotion with ``app``, ``version``, ``target`` (or
  ``environment``), ``status`` and a time: ``finished_at``, ``completed_at``, ``updated_at``
  or ``started_at`` (ISO 8601); ``url`` optional. Failed or rolled-back ones are skipped.
- ``INCIDENTS_TABLE``: an incident whose ``pull_request`` ``{number, url, title, state}``
  has ``state == "merged"`` and whose ``timeline`` holds ``{"event": "fix merged", "at": ...}``
  (else ``pull_request.merged_at``).

An anomaly on day D names those whose time falls in the two days before D or on D itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pitcrew.errors import PitcrewError
from pitcrew.stores import Table

logger = logging.getLogger(__name__)
WINDOW_DAYS = 2
MAX_ITEMS = 5000  # both tables are small; a bound keeps a surprise from costing a fortune
_SKIPPED_STATUSES = {"failed", "rolled_back", "rejected", "aborted", "cancelled"}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def promotion_change(item: Mapping[str, Any]) -> dict[str, Any] | None:
    if str(item.get("status", "")).lower() in _SKIPPED_STATUSES:
        return None
    at = next(
        (
            t
            for t in (_when(item.get(k)) for k in ("finished_at", "completed_at", "updated_at"))
            if t
        ),
        _when(item.get("started_at")),
    )
    app, version = item.get("app"), item.get("version")
    if at is None or not (app or version):
        return None
    target = item.get("target") or item.get("environment")
    title = " ".join(str(x) for x in (app, version) if x) + (f" to {target}" if target else "")
    return {"kind": "promotion", "title": title, "at": at.isoformat(), "url": item.get("url")}


def fix_pr_change(item: Mapping[str, Any]) -> dict[str, Any] | None:
    pull = item.get("pull_request")
    if not isinstance(pull, Mapping) or str(pull.get("state", "")).lower() != "merged":
        return None
    at = None
    timeline = item.get("timeline")
    if isinstance(timeline, list):
        for entry in timeline:
            if isinstance(entry, Mapping) and str(entry.get("event", "")).lower() == "fix merged":
                at = _when(entry.get("at")) or at
    at = at or _when(pull.get("merged_at"))
    if at is None:
        return None
    number = pull.get("number")
    title = pull.get("title") or (f"fix PR #{number}" if number else "fix pull request")
    return {"kind": "fix_pr", "title": str(title), "at": at.isoformat(), "url": pull.get("url")}


class RecentChanges:
    """Promotions and merged fix PRs, read once per run, looked up per anomaly day."""

    def __init__(self, changes: Iterable[dict[str, Any]]) -> None:
        self.changes = sorted(changes, key=lambda c: c["at"])

    @classmethod
    def from_tables(
        cls, promotions: Table | None = None, incidents: Table | None = None
    ) -> RecentChanges:
        changes: list[dict[str, Any]] = []
        for table, env, read in (
            (promotions, "PROMOTIONS_TABLE", promotion_change),
            (incidents, "INCIDENTS_TABLE", fix_pr_change),
        ):
            name = os.environ.get(env)
            if table is None and not name:
                continue
            try:
                for item in (table or Table(str(name))).scan(limit=MAX_ITEMS):
                    change = read(item)
                    if change is not None:
                        changes.append(change)
            except (PitcrewError, ValueError, TypeError) as exc:
                logger.warning("cannot read %s for anomaly notes: %s", env, exc)
        return cls(changes)

    def before(self, day: date) -> tuple[dict[str, Any], ...]:
        """The changes in the two days before ``day`` and on ``day``."""
        start = (day - timedelta(days=WINDOW_DAYS)).isoformat()
        end = (day + timedelta(days=1)).isoformat()
        return tuple(c for c in self.changes if start <= c["at"][:10] < end)
