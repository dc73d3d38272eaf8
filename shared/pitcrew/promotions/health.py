"""The scheduled health check of every environment (``promotion_steps`` with
``{"step": "health_check"}``): each health URL's status and latency, the run of
consecutive failures, kept per environment for ``GET /environments``;
``EnvironmentDegraded`` once when a run of failures reaches ``degraded_after``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pitcrew.events import DomainEvent, EventName, event
from pitcrew.promotions.store import PromotionStore, iso

if TYPE_CHECKING:
    from pitcrew.config import Config
    from pitcrew.promotions.checks import Checker


def check_environments(
    config: Config,
    store: PromotionStore,
    checker: Checker,
    publish: Callable[..., None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    degraded: list[DomainEvent] = []
    for env in config.environments or ():
        url = env.health_url.get()
        result = checker.health(url)
        now = clock()
        before = store.health(env.name) or {}
        failures = 0 if result.ok else int(before.get("consecutive_failures", 0)) + 1
        since = before.get("since") if not result.ok and before.get("since") else iso(now)
        health = {
            "status": "healthy"
            if result.ok
            else ("degraded" if failures >= env.degraded_after else "failing"),
            "http_status": result.status,
            "latency_ms": result.latency_ms,
            "detail": result.detail,
            "consecutive_failures": failures,
            "checked_at": iso(now),
            "since": since,
        }
        store.save_health(env.name, health)
        results[env.name] = health
        if failures == env.degraded_after:
            versions = store.all_versions(env.name)
            degraded.append(
                event(
                    EventName.ENVIRONMENT_DEGRADED,
                    {
                        "environment": env.name,
                        "version": versions[0].current if len(versions) == 1 else None,
                        "versions": {v.app: v.current for v in versions},
                        "health_url": url,
                        "status": result.status,
                        "error": f"{result.detail}, {failures} times in a row",
                        "since": since,
                    },
                )
            )
    if degraded:
        publish(*degraded)
    return {"environments": results}
