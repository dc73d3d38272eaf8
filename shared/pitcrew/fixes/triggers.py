"""Promotion triggers: a GitHub ``release`` published, or a ``workflow_run`` that completed
successfully, kept in ``PROMOTIONS_TABLE`` for the promotion flow (issue 8) to consume.

Item shape (one per GitHub delivery; written once, a redelivery is a no-op)::

    pk          "TRIGGER#<owner/repo>"
    sk          "<occurred_at ISO-8601>#<delivery id>"   (newest last)
    kind        "release" | "workflow_run"
    repo        "owner/repo"
    delivery    X-GitHub-Delivery
    occurred_at when GitHub says it happened (published_at / updated_at)
    actor       the login that caused it
    version     the release tag, or the run's head sha
    url         the release's or run's html_url
    consumed    false (the promotion flow sets it)
    release:      tag, name, prerelease, target_commitish
    workflow_run: workflow, run_id, run_number, head_branch, head_sha, event
    expires_at  epoch seconds, 30 days on (the table's TTL)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from pitcrew.errors import ConflictError
from pitcrew.stores import Table, table_name

TTL_S = 30 * 24 * 60 * 60


def trigger_item(
    event_name: str, delivery: str, payload: Mapping[str, Any], now: float
) -> dict[str, Any] | None:
    """The item for a delivery, or None when it is not a promotion trigger."""
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    actor = str((payload.get("sender") or {}).get("login") or "")
    base: dict[str, Any] = {"repo": repo, "delivery": delivery, "actor": actor, "consumed": False}
    if event_name == "release" and payload.get("action") == "published":
        release = payload.get("release") or {}
        occurred = str(release.get("published_at") or release.get("created_at") or "")
        base.update(
            kind="release",
            occurred_at=occurred,
            version=release.get("tag_name"),
            url=release.get("html_url"),
            tag=release.get("tag_name"),
            name=release.get("name"),
            prerelease=bool(release.get("prerelease")),
            target_commitish=release.get("target_commitish"),
        )
    elif event_name == "workflow_run" and payload.get("action") == "completed":
        run = payload.get("workflow_run") or {}
        if run.get("conclusion") != "success":
            return None
        occurred = str(run.get("updated_at") or run.get("run_started_at") or "")
        base.update(
            kind="workflow_run",
            occurred_at=occurred,
            version=run.get("head_sha"),
            url=run.get("html_url"),
            workflow=run.get("name") or (payload.get("workflow") or {}).get("name"),
            run_id=run.get("id"),
            run_number=run.get("run_number"),
            head_branch=run.get("head_branch"),
            head_sha=run.get("head_sha"),
            event=run.get("event"),
        )
    else:
        return None
    return {
        "pk": f"TRIGGER#{repo}",
        "sk": f"{base['occurred_at']}#{delivery}",
        **base,
        "expires_at": int(now) + TTL_S,
    }


class PromotionTriggers:
    """Promotion triggers in ``PROMOTIONS_TABLE``."""

    table_env = "PROMOTIONS_TABLE"

    def __init__(self, table: Table | None = None, *, clock: Callable[[], float] = time.time):
        self.table = table or Table(table_name(self.table_env))
        self.clock = clock

    def record(
        self, event_name: str, delivery: str, payload: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Keep the delivery if it is a trigger; the item written (or already there), else None."""
        item = trigger_item(event_name, delivery, payload, self.clock())
        if item is None:
            return None
        # A ConflictError is the same delivery, redelivered by SQS: already kept.
        with contextlib.suppress(ConflictError):
            self.table.put(item, condition="attribute_not_exists(pk)")
        return item

    def list(self, repo: str) -> list[dict[str, Any]]:
        """Every kept trigger of ``repo``, oldest first."""
        return list(self.table.query("pk = :pk", values={":pk": f"TRIGGER#{repo}"}))
