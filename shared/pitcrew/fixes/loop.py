"""Closing the loop on a merged fix: when the incident's alert resolves after its pull
request merged, say so on the pull request; when it fires again, reopen the incident and say
so there too.

``fix_pr`` calls ``on_incident_resolved`` for every ``IncidentResolved`` event, and
``on_incident_reopened`` for an ``IncidentOpened`` event marked ``reopened``: the diagnose
pipeline reopens a resolved incident whose fix merged when its alert fires again
(``pitcrew.incidents.triage``), and all GitHub writes stay in ``fix_pr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pitcrew.fixes import render

if TYPE_CHECKING:
    from pitcrew.github import GitHub
    from pitcrew.incidents.store import IncidentStore


def merged_fix(incident: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The incident's pull request when it is a merged pitcrew fix."""
    pull = incident.get("pull_request") or {}
    if pull.get("state") == "merged" and pull.get("number") and pull.get("repo"):
        return pull
    return None


def _tell_the_fix(
    incident: Mapping[str, Any],
    comment: Callable[[Mapping[str, Any]], str],
    entry: str,
    *,
    github: GitHub,
    store: IncidentStore,
    now: datetime | None,
) -> bool:
    """Comment on the incident's merged fix and note it on the timeline as ``entry``; False
    when the incident has no merged fix."""
    pull = merged_fix(incident)
    if pull is None:
        return False
    url = github.comment(str(pull["repo"]), int(pull["number"]), comment(incident))
    store.add_timeline(
        str(incident["id"]),
        entry,
        now or datetime.now(UTC),
        detail=f"noted on pull request #{pull['number']}: {url}",
    )
    return True


def on_incident_resolved(
    incident: Mapping[str, Any],
    *,
    github: GitHub,
    store: IncidentStore,
    now: datetime | None = None,
) -> bool:
    """Comment on the merged fix that the alert resolved (``incident``: the ``as_api()``
    shape). False when the incident has no merged fix."""
    return _tell_the_fix(
        incident,
        render.resolved_comment,
        "alert resolved after fix",
        github=github,
        store=store,
        now=now,
    )


def on_incident_reopened(
    incident: Mapping[str, Any],
    *,
    github: GitHub,
    store: IncidentStore,
    now: datetime | None = None,
) -> bool:
    """Tell the merged fix that its alert fired again and the incident is reopened
    (``incident``: the ``as_api()`` shape of an ``IncidentOpened`` event with ``reopened``).
    False when the incident has no merged fix."""
    return _tell_the_fix(
        incident,
        render.refired_comment,
        "fix did not hold",
        github=github,
        store=store,
        now=now,
    )
