"""Receiving a GitHub webhook delivery: signature first, then once per ``X-GitHub-Delivery``,
then onto the GitHub delivery queue for ``github_events``.

Order matters: nothing of the body is parsed before its signature is checked; the delivery
id is claimed (a conditional put in ``IDEMPOTENCY_TABLE``, expiring after
``DEDUP_TTL_S``) before it is queued, and released again if queueing fails, so a redelivery
from GitHub's UI can succeed. Only the events ``github_events`` uses are queued; the others
are acknowledged and logged. The queue message is::

    {"delivery": "<X-GitHub-Delivery>", "event": "<X-GitHub-Event>",
     "hook_id": "<X-GitHub-Hook-ID>", "received_at": <epoch s>, "payload": {...}}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from pitcrew.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from pitcrew.github.webhooks import SIGNATURE_HEADER, WebhookSecrets
from pitcrew.records import frozen
from pitcrew.stores import Table, table_name

DEDUP_TTL_S = 7 * 24 * 60 * 60
# SQS takes at most 256 KiB per message; the envelope needs a little room.
MAX_MESSAGE_BYTES = 256 * 1024 - 1024
# GitHub's delivery ids are GUIDs; a longer one could not be a DynamoDB key (2048 bytes).
MAX_DELIVERY_ID = 200
USED_EVENTS = frozenset({"pull_request", "issue_comment", "release", "workflow_run"})


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


@frozen
class Receipt:
    """The answer to GitHub: its status code and JSON body."""

    status: int
    body: dict[str, Any]


class GithubIntake:
    """The webhook's work after routing. Table, queue client and clock are injectable."""

    def __init__(
        self,
        secrets: WebhookSecrets,
        *,
        table: Table | None = None,
        sqs: Any | None = None,
        queue_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = secrets
        self._table = table
        self._sqs = sqs
        self._queue_url = queue_url
        self.clock = clock

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = Table(table_name("IDEMPOTENCY_TABLE"))
        return self._table

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            from pitcrew.aws import client

            self._sqs = client("sqs")
        return self._sqs

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            url = os.environ.get("GITHUB_QUEUE_URL")
            if not url:
                raise ConfigError(
                    ["environment variable GITHUB_QUEUE_URL is not set (the GitHub queue)"]
                )
            self._queue_url = url
        return self._queue_url

    def receive(self, headers: Mapping[str, str], body: bytes) -> Receipt:
        self.secrets.verify(body, header(headers, SIGNATURE_HEADER))
        event_name = header(headers, "X-GitHub-Event")
        delivery = header(headers, "X-GitHub-Delivery")
        if not event_name:
            raise BadRequestError("missing X-GitHub-Event header")
        if not delivery:
            raise BadRequestError("missing X-GitHub-Delivery header")
        if len(delivery) > MAX_DELIVERY_ID:
            raise BadRequestError(
                f"X-GitHub-Delivery: at most {MAX_DELIVERY_ID} characters, got {len(delivery)}"
            )
        payload = _payload(headers, body)
        if event_name == "ping":
            return Receipt(200, {"delivery": delivery, "ping": "pong", "zen": payload.get("zen")})
        if event_name not in USED_EVENTS:
            return Receipt(202, {"delivery": delivery, "duplicate": False, "ignored": event_name})
        message = json.dumps(
            {
                "delivery": delivery,
                "event": event_name,
                "hook_id": header(headers, "X-GitHub-Hook-ID"),
                "received_at": int(self.clock()),
                "payload": payload,
            },
            separators=(",", ":"),
        )
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise PayloadTooLargeError(
                f"the {event_name} payload is {len(body)} bytes; at most "
                f"{MAX_MESSAGE_BYTES} can be queued"
            )
        if not self._claim(delivery, event_name):
            return Receipt(202, {"delivery": delivery, "duplicate": True})
        from pitcrew.aws import aws_errors

        try:
            with aws_errors("sqs"):
                self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message)
        except Exception:
            self.table.delete({"id": _key(delivery)})
            raise
        return Receipt(202, {"delivery": delivery, "duplicate": False})

    def _claim(self, delivery: str, event_name: str) -> bool:
        now = int(self.clock())
        try:
            self.table.put(
                {
                    "id": _key(delivery),
                    "event": event_name,
                    "received_at": now,
                    "expiration": now + DEDUP_TTL_S,
                },
                condition="attribute_not_exists(id) OR expiration < :now",
                values={":now": now},
            )
        except ConflictError:
            return False
        return True


def _key(delivery: str) -> str:
    return f"github-delivery#{delivery}"


def _payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON payload, sent as JSON or as the ``payload`` field of a form."""
    content_type = (header(headers, "Content-Type") or "application/json").lower()
    text: str | bytes = body
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in fields:
            raise BadRequestError("form-encoded delivery without a 'payload' field")
        text = fields["payload"][0]
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise BadRequestError(f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequestError("the payload is not a JSON object")
    return payload


def unsigned_secret_error() -> UnauthorizedError:
    return UnauthorizedError(
        "the GitHub webhook is disabled: set github.webhook_secret in the config"
    )
