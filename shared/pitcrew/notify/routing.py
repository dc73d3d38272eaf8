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
from dataclasses import field
from typing import Any

from pitcrew.config import SEVERITIES, NotificationConfig
from pitcrew.errors import BadRequestError
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
class BusEvent:
    """An event from the ``pitcrew`` bus: its name (``detail-type``), detail and envelope."""

    name: str
    detail: Mapping[str, Any]
    id: str = ""
    time: str = ""
    source: str = ""
    region: str = ""
    account: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_eventbridge(cls, event: Mapping[str, Any]) -> BusEvent:
        """Read an EventBridge event (the Lambda event, or powertools' ``EventBridgeEvent``,
        which is a mapping too). Raises ``BadRequestError`` when it is not one."""
        raw = getattr(event, "raw_event", event)
        if not isinstance(raw, Mapping):
            raise BadRequestError(f"expected an EventBridge event, got {type(raw).__name__}")
        name = raw.get("detail-type")
        detail = raw.get("detail")
        if not isinstance(name, str) or not name:
            raise BadRequestError("not an EventBridge event: no detail-type")
        if not isinstance(detail, Mapping):
            raise BadRequestError(f"{name}: the detail is not a JSON object")
        return cls(
            name=name,
            detail=detail,
            id=str(raw.get("id") or ""),
            time=str(raw.get("time") or ""),
            source=str(raw.get("source") or ""),
            region=str(raw.get("region") or ""),
            account=str(raw.get("account") or ""),
            raw=raw,
        )

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
