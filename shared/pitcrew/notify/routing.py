"""Which ``notifications`` entries an event goes to: those whose ``events`` name it and whose
filters (``severity``, ``environment``, ``namespace``) it passes.

``BusEvent`` is the EventBridge event as notify reads it, with the three attributes the filters
look at. Where each comes from, per event:

- severity: the detail's ``severity`` when it is one of info/warning/critical (an incident
  carries its alerts' severity), else the event's default (``DEFAULT_SEVERITY``);
- environment: ``detail.environment``, or for a promotion the environment it is promoted to
  (``detail.promotion.target``);
- namespace: ``detail.namespace``, or ``detail.incident.namespace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pitcrew.config import SEVERITIES, NotificationConfig
from pitcrew.events import ReceivedEvent
from pitcrew.records import frozen

DEFAULT_SEVERITY: Mapping[str, str] = {
    "IncidentOpened": "warning",
    "IncidentDiagnosed": "warning",
    "IncidentResolved": "info",
    "FixPullRequestOpened": "warning",
    "FixPullRequestMerged": "info",
    "FixPullRequestFailed": "warning",
    "CostAnomalyDetected": "warning",
    "BudgetThresholdCrossed": "warning",
    "SecretRotated": "info",
    "SecretRotationFailed": "critical",
    "PromotionStarted": "info",
    "PromotionAwaitingApproval": "warning",
    "PromotionSucceeded": "info",
    "PromotionFailed": "critical",
    "PromotionRolledBack": "critical",
    "EnvironmentDegraded": "critical",
}


@frozen
class BusEvent(ReceivedEvent):
    """A ``pitcrew`` bus event with the three attributes notify's filters look at."""

    @property
    def severity(self) -> str:
        given = self.detail.get("severity")
        if isinstance(given, str) and given.lower() in SEVERITIES:
            return given.lower()
        return DEFAULT_SEVERITY.get(self.name, "info")

    @property
    def environment(self) -> str | None:
        given = self.detail.get("environment")
        if isinstance(given, str):
            return given
        promotion = self.detail.get("promotion")
        if isinstance(promotion, Mapping) and isinstance(promotion.get("target"), str):
            return str(promotion["target"])
        return None

    @property
    def namespace(self) -> str | None:
        given = self.detail.get("namespace")
        if isinstance(given, str):
            return given
        incident = self.detail.get("incident")
        if isinstance(incident, Mapping) and isinstance(incident.get("namespace"), str):
            return str(incident["namespace"])
        return None


def passes(event: BusEvent, entry: NotificationConfig) -> bool:
    """Whether ``entry`` wants ``event``: named in its ``events`` and through its filters."""
    if event.name not in entry.events:
        return False
    if entry.severity is not None and SEVERITIES.index(event.severity) < SEVERITIES.index(
        entry.severity
    ):
        return False
    if entry.environment is not None and event.environment not in entry.environment:
        return False
    return entry.namespace is None or event.namespace in entry.namespace


def route(
    event: BusEvent, notifications: Sequence[NotificationConfig] | None
) -> list[tuple[int, NotificationConfig]]:
    """The entries (with their index in ``notifications``) that ``event`` goes to."""
    return [(i, entry) for i, entry in enumerate(notifications or ()) if passes(event, entry)]
