"""Domain events and their publication on the ``pitcrew`` EventBridge bus.

A ``DomainEvent`` has one of the names of DESIGN.md as its ``detail-type`` and ``pitcrew``
as its source. ``publish`` sends events in ``PutEvents`` batches, retries the entries that
failed, and raises ``PublishError`` for any it could still not deliver: an event is never
dropped silently. The detail is passed through the secret redactor on the way out.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from pitcrew.errors import BadRequestError, PublishError, TransientServiceError
from pitcrew.observability import redact
from pitcrew.records import frozen

SOURCE = "pitcrew"
DEFAULT_BUS = "pitcrew"
# PutEvents takes at most 10 entries and 256 KiB per request.
MAX_ENTRIES_PER_CALL = 10
MAX_REQUEST_BYTES = 256 * 1024


class EventName(StrEnum):
    """The domain events of DESIGN.md; the value is the EventBridge ``detail-type``."""

    INCIDENT_OPENED = "IncidentOpened"
    INCIDENT_DIAGNOSED = "IncidentDiagnosed"
    INCIDENT_RESOLVED = "IncidentResolved"
    FIX_PULL_REQUEST_OPENED = "FixPullRequestOpened"
    FIX_PULL_REQUEST_MERGED = "FixPullRequestMerged"
    # Beyond DESIGN.md's list: a fix that could not be delivered (no manifest, refused by
    # GitHub or by the allowlist) must reach people, not only the incident's timeline.
    FIX_PULL_REQUEST_FAILED = "FixPullRequestFailed"
    COST_ANOMALY_DETECTED = "CostAnomalyDetected"
    BUDGET_THRESHOLD_CROSSED = "BudgetThresholdCrossed"
    SECRET_ROTATED = "SecretRotated"  # noqa: S105 - an event name
    SECRET_ROTATION_FAILED = "SecretRotationFailed"  # noqa: S105 - an event name
    PROMOTION_STARTED = "PromotionStarted"
    PROMOTION_AWAITING_APPROVAL = "PromotionAwaitingApproval"
    PROMOTION_SUCCEEDED = "PromotionSucceeded"
    PROMOTION_FAILED = "PromotionFailed"
    PROMOTION_ROLLED_BACK = "PromotionRolledBack"
    ENVIRONMENT_DEGRADED = "EnvironmentDegraded"


@frozen
class DomainEvent:
    """One domain event. ``detail`` must be JSON-serialisable and never hold a secret."""

    name: EventName
    detail: Mapping[str, Any]
    resources: Sequence[str] = ()
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        # Accept the plain string too, but only a name DESIGN.md knows.
        object.__setattr__(self, "name", EventName(self.name))

    def entry(self, bus: str) -> dict[str, Any]:
        """The ``PutEvents`` request entry for this event."""
        return {
            "Source": SOURCE,
            "DetailType": self.name.value,
            "Detail": redact(json.dumps(self.detail, default=str, sort_keys=True)),
            "Resources": list(self.resources),
            "Time": self.time,
            "EventBusName": bus,
        }


@frozen
class ReceivedEvent:
    """An event delivered from the ``pitcrew`` bus: its name (``detail-type``), detail and
    envelope."""

    name: str
    detail: Mapping[str, Any]
    id: str = ""
    time: str = ""
    source: str = ""
    region: str = ""
    account: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_eventbridge(cls, event: Mapping[str, Any]) -> Self:
        """Read an EventBridge event (the Lambda event). Raises ``BadRequestError`` when it
        is not one."""
        if not isinstance(event, Mapping):
            raise BadRequestError(f"expected an EventBridge event, got {type(event).__name__}")
        name = event.get("detail-type")
        detail = event.get("detail")
        if not isinstance(name, str) or not name:
            raise BadRequestError("not an EventBridge event: no detail-type")
        if not isinstance(detail, Mapping):
            raise BadRequestError(f"{name}: the detail is not a JSON object")
        return cls(
            name=name,
            detail=detail,
            id=str(event.get("id") or ""),
            time=str(event.get("time") or ""),
            source=str(event.get("source") or ""),
            region=str(event.get("region") or ""),
            account=str(event.get("account") or ""),
            raw=event,
        )


def _entry_size(entry: Mapping[str, Any]) -> int:
    # AWS's own size rule: the UTF-8 bytes of source, detail-type, detail and resources,
    # plus 14 bytes for the time.
    size = 14
    for key in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(key, "")).encode())
    size += sum(len(r.encode()) for r in entry.get("Resources", []))
    return size


class EventPublisher:
    """Puts domain events on a bus, retrying failed entries with backoff."""

    def __init__(
        self,
        bus_name: str | None = None,
        client: Any | None = None,
        *,
        max_attempts: int = 4,
        base_delay_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus_name = bus_name or os.environ.get("EVENT_BUS_NAME") or DEFAULT_BUS
        self._client = client
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.sleep = sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("events")
        return self._client

    def publish(self, *events: DomainEvent) -> None:
        """Publish every event or raise ``PublishError`` naming those that failed."""
        failed: list[tuple[str, str]] = []
        batch: list[tuple[DomainEvent, dict[str, Any]]] = []
        batch_bytes = 0
        for event in events:
            entry = event.entry(self.bus_name)
            size = _entry_size(entry)
            if size > MAX_REQUEST_BYTES:
                failed.append((event.name.value, f"event is {size} bytes, above 256 KiB"))
                continue
            if len(batch) == MAX_ENTRIES_PER_CALL or batch_bytes + size > MAX_REQUEST_BYTES:
                failed += self._put_with_retries(batch)
                batch, batch_bytes = [], 0
            batch.append((event, entry))
            batch_bytes += size
        if batch:
            failed += self._put_with_retries(batch)
        if failed:
            raise PublishError(failed)

    def _put_with_retries(
        self, batch: list[tuple[DomainEvent, dict[str, Any]]]
    ) -> list[tuple[str, str]]:
        pending = batch
        reasons: list[str] = []
        for attempt in range(self.max_attempts):
            if attempt:
                self.sleep(self.base_delay_s * 2 ** (attempt - 1))
            try:
                pending, reasons = self._put(pending)
            except TransientServiceError as exc:
                reasons = [str(exc)] * len(pending)
                continue
            if not pending:
                return []
        return [
            (event.name.value, reason) for (event, _), reason in zip(pending, reasons, strict=True)
        ]

    def _put(
        self, batch: list[tuple[DomainEvent, dict[str, Any]]]
    ) -> tuple[list[tuple[DomainEvent, dict[str, Any]]], list[str]]:
        """One PutEvents call; returns the entries that failed and why."""
        from pitcrew.aws import aws_errors

        with aws_errors("events"):
            response = self.client.put_events(Entries=[entry for _, entry in batch])
        if not response.get("FailedEntryCount"):
            return [], []
        still: list[tuple[DomainEvent, dict[str, Any]]] = []
        reasons: list[str] = []
        # Results come back in request order, one per entry.
        for item, result in zip(batch, response["Entries"], strict=True):
            if result.get("ErrorCode"):
                still.append(item)
                reasons.append(f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}")
        return still, reasons


def publish(*events: DomainEvent) -> None:
    """Publish on the stack's bus (``EVENT_BUS_NAME``) with the shared client. The client
    comes from ``pitcrew.aws.client`` each time (cached there, so this costs nothing), so a
    changed endpoint (``reset_clients``) is always honoured."""
    EventPublisher().publish(*events)


def event(
    name: EventName | str, detail: Mapping[str, Any], resources: Iterable[str] = ()
) -> DomainEvent:
    """Shorthand: ``publish(event("IncidentOpened", {...}))``."""
    return DomainEvent(name=EventName(name), detail=detail, resources=tuple(resources))
