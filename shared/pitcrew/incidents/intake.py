"""Alertmanager intake: authenticate a webhook delivery, drop the alerts already taken in, and
put the rest on the incident queue for ``diagnose``, in as few calls as possible.

Dedup is durable and atomic with one DynamoDB call per delivery: the alert keys
(fingerprint + startsAt + status) of a notification group are kept as a string set on one
marker item of ``IDEMPOTENCY_TABLE`` (``id = "alertmanager#<group hash>"``, TTL attribute
``expiration``). ``UpdateItem ... ADD`` with ``ReturnValues=ALL_OLD`` adds this delivery's
keys and returns the set as it was before, so of two concurrent deliveries exactly one sees a
key as new. Alertmanager resends a group every ``group_interval`` and retries on 5xx, so the
same alert comes back through the same group; an alert routed to pitcrew by two routes is
caught again by ``diagnose``, which processes each alert key once (powertools Idempotency).

Nothing accepted is lost: the markers are written first, then the messages are sent; if a
send fails, the markers of every alert not yet sent are removed again and the caller answers
503, so Alertmanager's retry brings those alerts back as new.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pitcrew.aws import aws_errors
from pitcrew.errors import (
    ConfigError,
    ConflictError,
    PayloadTooLargeError,
    TransientServiceError,
    UnauthorizedError,
)
from pitcrew.incidents.alerts import Alert, Webhook
from pitcrew.stores import table_name

QUEUE_ENV = "INCIDENT_QUEUE_URL"
DAY_S = 24 * 60 * 60
# SQS takes 256 KiB per message; the rest is room for attributes and the group.
MAX_MESSAGE_BYTES = 200 * 1024
# 24 hex digits (96 bits) per key: ~8,000 keys stay far below DynamoDB's 400 KB item limit.
_KEY_DIGITS = 24
MAX_KEYS_PER_GROUP = 8000
MARKER_PREFIX = "alertmanager#"

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ authentication


def authenticate(headers: Mapping[str, str], token: str) -> None:
    """Accept ``Authorization: Bearer <token>`` or Basic auth whose password is the token
    (Alertmanager's ``authorization`` or ``basic_auth`` http_config); compared in constant
    time. ``UnauthorizedError`` otherwise."""
    header = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if header is None:
        raise UnauthorizedError(
            "missing 'Authorization' header (Bearer token or Basic auth with the token as password)"
        )
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        given = credentials
    elif scheme.lower() == "basic":
        given = _basic_password(credentials)
    else:
        raise UnauthorizedError(f"unsupported authorization scheme {scheme!r}: use Bearer or Basic")
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise UnauthorizedError("invalid Alertmanager token")


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise UnauthorizedError("malformed Basic credentials") from exc
    _, separator, password = decoded.partition(":")
    if not separator:
        raise UnauthorizedError("malformed Basic credentials: expected user:password")
    return password


def check_size(headers: Mapping[str, str], body: bytes | str | None, limit: int) -> None:
    """``PayloadTooLargeError`` when the declared or the real body size is over ``limit``."""
    declared = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"the body is {int(declared)} bytes; alertmanager.max_body_bytes is {limit}"
        )
    size = len(body.encode() if isinstance(body, str) else body or b"")
    if size > limit:
        raise PayloadTooLargeError(
            f"the body is {size} bytes; alertmanager.max_body_bytes is {limit}"
        )


# ------------------------------------------------------------------ dedup


def group_id(webhook: Webhook) -> str:
    """The marker item's id for a notification group (receiver and group key)."""
    digest = hashlib.sha256(f"{webhook.receiver}\n{webhook.group_key}".encode()).hexdigest()
    return f"{MARKER_PREFIX}{digest[:32]}"


def key_digest(key: str) -> str:
    """The short, fixed-size form of an alert key kept in the marker's set."""
    return hashlib.sha256(key.encode()).hexdigest()[:_KEY_DIGITS]


class SeenAlerts:
    """The alert keys already taken in, per notification group, in ``IDEMPOTENCY_TABLE``."""

    def __init__(
        self,
        table: str | None = None,
        client: Any | None = None,
        *,
        ttl_s: int = DAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table or table_name("IDEMPOTENCY_TABLE")
        self._client = client
        self.ttl_s = ttl_s
        self.clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("dynamodb")
        return self._client

    def claim(self, group: str, digests: Sequence[str]) -> set[str]:
        """Add ``digests`` to the group's set; the ones that were not in it yet (new)."""
        if not digests:
            return set()
        now = int(self.clock())
        try:
            with aws_errors("dynamodb"):
                response = self.client.update_item(
                    TableName=self.table,
                    Key={"id": {"S": group}},
                    UpdateExpression="SET #exp = :exp ADD #seen :keys",
                    ConditionExpression="attribute_not_exists(#seen) OR size(#seen) < :max",
                    ExpressionAttributeNames={"#seen": "seen", "#exp": "expiration"},
                    ExpressionAttributeValues={
                        ":exp": {"N": str(now + self.ttl_s)},
                        ":keys": {"SS": list(digests)},
                        ":max": {"N": str(MAX_KEYS_PER_GROUP)},
                    },
                    ReturnValues="ALL_OLD",
                )
        except ConflictError:
            # A group that has been firing for long: start its set afresh. Keys forgotten
            # here may be enqueued once more; diagnose's own idempotency catches those.
            self._replace(group, digests, now)
            return set(digests)
        old = response.get("Attributes") or {}
        expired = int(old.get("expiration", {}).get("N", now + 1)) < now
        if expired:
            # DynamoDB deletes expired items lazily: an expired set counts as empty.
            self._replace(group, digests, now)
            return set(digests)
        before = set(old.get("seen", {}).get("SS", ()))
        return {d for d in digests if d not in before}

    def release(self, group: str, digests: Iterable[str]) -> None:
        """Forget ``digests`` (they were claimed but could not be enqueued)."""
        keys = list(digests)
        if not keys:
            return
        with aws_errors("dynamodb"):
            self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": group}},
                UpdateExpression="DELETE #seen :keys",
                ExpressionAttributeNames={"#seen": "seen"},
                ExpressionAttributeValues={":keys": {"SS": keys}},
            )

    def _replace(self, group: str, digests: Sequence[str], now: int) -> None:
        with aws_errors("dynamodb"):
            self.client.put_item(
                TableName=self.table,
                Item={
                    "id": {"S": group},
                    "seen": {"SS": list(digests)},
                    "expiration": {"N": str(now + self.ttl_s)},
                },
            )


# ------------------------------------------------------------------ enqueue


def pack_messages(group: Mapping[str, Any], alerts: Sequence[Alert]) -> list[tuple[str, int]]:
    """Message bodies ``{"group": ..., "alerts": [...]}`` of at most ``MAX_MESSAGE_BYTES``,
    each with how many of ``alerts`` (in order) it carries. Each alert is serialized once."""
    head = '{"group":' + json.dumps(group, separators=(",", ":")) + ',"alerts":['
    tail = "]}"
    messages: list[tuple[str, int]] = []
    chunk: list[str] = []
    size = len(head) + len(tail)
    for index, alert in enumerate(alerts):
        text = json.dumps(alert.as_dict(), separators=(",", ":"))
        length = len(text.encode())
        if len(head) + len(tail) + length > MAX_MESSAGE_BYTES:
            raise PayloadTooLargeError(
                f"alerts[{index}] is {length} bytes as JSON; one alert may take at most "
                f"{MAX_MESSAGE_BYTES - len(head) - len(tail)} bytes"
            )
        if chunk and size + 1 + length > MAX_MESSAGE_BYTES:
            messages.append((head + ",".join(chunk) + tail, len(chunk)))
            chunk, size = [], len(head) + len(tail)
        size += length + (1 if chunk else 0)
        chunk.append(text)
    if chunk:
        messages.append((head + ",".join(chunk) + tail, len(chunk)))
    return messages


@dataclass(frozen=True)
class IntakeResult:
    """What a delivery came to: alerts enqueued, alerts already taken in, messages sent."""

    accepted: int
    duplicates: int
    messages: int

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


class AlertIntake:
    """Takes in one parsed webhook: dedup, then enqueue for ``diagnose``."""

    def __init__(
        self,
        *,
        queue_url: str | None = None,
        seen: SeenAlerts | None = None,
        sqs: Any | None = None,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        self._queue_url = queue_url
        self._seen = seen
        self._sqs = sqs
        self.logger = logger or log

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            url = os.environ.get(QUEUE_ENV)
            if not url:
                raise ConfigError([f"environment variable {QUEUE_ENV} is not set (the queue)"])
            self._queue_url = url
        return self._queue_url

    @property
    def seen(self) -> SeenAlerts:
        if self._seen is None:
            self._seen = SeenAlerts()
        return self._seen

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            from pitcrew.aws import client

            self._sqs = client("sqs")
        return self._sqs

    def receive(self, webhook: Webhook) -> IntakeResult:
        """Enqueue the alerts of ``webhook`` not taken in before. Raises
        ``TransientServiceError`` (503: Alertmanager retries) when they could not be enqueued;
        then none of the alerts not enqueued counts as taken in."""
        if webhook.truncated_alerts:
            self.logger.warning(
                "Alertmanager truncated %d alert(s) of group %s (max_alerts in its webhook "
                "config); they are not in this delivery",
                webhook.truncated_alerts,
                webhook.group_key,
            )
        unique: dict[str, Alert] = {}
        for alert in webhook.alerts:
            unique.setdefault(key_digest(alert.key), alert)
        group = group_id(webhook)
        # Sized before anything is written: an alert too large for a message is refused whole.
        pack_messages(webhook.group(), list(unique.values()))
        new = self.seen.claim(group, list(unique))
        fresh = [(digest, alert) for digest, alert in unique.items() if digest in new]
        duplicates = len(webhook.alerts) - len(fresh)
        messages = pack_messages(webhook.group(), [alert for _, alert in fresh])
        sent_alerts = 0
        for body, count in messages:
            try:
                with aws_errors("sqs"):
                    self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
            except Exception as exc:
                self._give_back(group, [d for d, _ in fresh[sent_alerts:]], exc)
                raise TransientServiceError(
                    "sqs",
                    f"could not enqueue {len(fresh) - sent_alerts} alert(s); "
                    "Alertmanager will retry",
                ) from exc
            sent_alerts += count
        self.logger.info(
            "alertmanager delivery: %d accepted, %d duplicate(s), %d message(s)",
            len(fresh),
            duplicates,
            len(messages),
        )
        return IntakeResult(accepted=len(fresh), duplicates=duplicates, messages=len(messages))

    def _give_back(self, group: str, digests: list[str], cause: Exception) -> None:
        try:
            self.seen.release(group, digests)
        except Exception:
            # The retry will see these alerts as duplicates until the markers expire; say
            # which, so they can be replayed from Alertmanager.
            self.logger.exception(
                "could not release %d alert marker(s) of %s after an enqueue failure (%s)",
                len(digests),
                group,
                cause,
            )
