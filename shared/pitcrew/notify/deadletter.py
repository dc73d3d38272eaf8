"""The notify function's dead-letter queue: where a notification that a channel refused for
good is kept, one message per event and channel, with the reason.

Each message body is JSON: ``reason``, ``channel`` (``index`` in ``notifications``, ``type``,
redacted ``target``), ``failed_at`` and the whole EventBridge ``event``, so it can
be put back on the bus once the channel is fixed. The queue is named by ``NOTIFY_DLQ_URL``
(``template.yaml`` sets it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pitcrew.aws import aws_errors
from pitcrew.deadletter import DeadLetters as QueueDeadLetters
from pitcrew.notify.routing import BusEvent
from pitcrew.observability import redact
from pitcrew.records import frozen

QUEUE_URL_ENV = "NOTIFY_DLQ_URL"
# SQS takes 256 KiB per message; an event can be that large on its own.
MAX_BODY_BYTES = 250_000


@frozen
class Failure:
    """One channel that did not get the event."""

    index: int
    kind: str
    target: str
    reason: str


class DeadLetters(QueueDeadLetters):
    """Writes failures to the dead-letter queue. ``client`` (SQS) and ``queue_url`` default to
    ``pitcrew.aws.client("sqs")`` and ``$NOTIFY_DLQ_URL``, looked up on first use."""

    def __init__(
        self,
        queue_url: str | None = None,
        client: Any | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(queue_url, client, env_var=QUEUE_URL_ENV, now=now)

    def send(self, event: BusEvent, failures: Sequence[Failure]) -> None:
        """One message per failure. Raises ``ServiceError`` (or ``ConfigError`` without a
        queue) if any cannot be written: then the event must be retried, not dropped."""
        url = self.queue_url
        for failure in failures:
            body = self.body(event, failure)
            with aws_errors("sqs"):
                self.client.send_message(
                    QueueUrl=url,
                    MessageBody=body,
                    MessageAttributes={
                        "event": {"DataType": "String", "StringValue": event.name},
                        "channel": {"DataType": "String", "StringValue": failure.kind},
                    },
                )

    def body(self, event: BusEvent, failure: Failure) -> str:
        """The message body for one failure (secrets redacted)."""
        document: dict[str, Any] = {
            "reason": failure.reason,
            "channel": {"index": failure.index, "type": failure.kind, "target": failure.target},
            "failed_at": self._now().isoformat().replace("+00:00", "Z"),
            "event": _event_document(event),
        }
        text = redact(json.dumps(document, default=str, ensure_ascii=False))
        if len(text.encode()) > MAX_BODY_BYTES:
            # Keep what identifies the event; it is in the bus archive (PitcrewBusArchive).
            document["event"] = {
                key: value for key, value in _event_document(event).items() if key != "detail"
            } | {"detail": "(left out: the event is too large; replay it from the archive)"}
            text = redact(json.dumps(document, default=str, ensure_ascii=False))
        return text


def _event_document(event: BusEvent) -> Mapping[str, Any]:
    if event.raw:
        return event.raw
    return {
        "id": event.id,
        "detail-type": event.name,
        "source": event.source,
        "time": event.time,
        "region": event.region,
        "account": event.account,
        "detail": dict(event.detail),
    }
