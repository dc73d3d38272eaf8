"""Alertmanager intake: authenticate a webhook delivery, drop the alerts already taken in, and
put the rest on the incident queue for ``diagnose``, in as few calls as possible.

Dedup is durable and atomic, with one DynamoDB call for a new group and two for a known one.
The alert keys (fingerprint + startsAt + status) of a notification group are kept, as 10-byte
digests packed in one binary attribute, on one marker item of ``IDEMPOTENCY_TABLE``
(``id = "alertmanager#<group hash>"``, TTL attribute ``expiration``). A delivery writes its
keys on condition that the item is absent, or still at the ``version`` it saw; a failed
condition returns the item as it is (``ReturnValuesOnConditionCheckFailure``), from which the
keys not yet held are written again the same way. So of two concurrent deliveries exactly one
takes a key in, and a resend with nothing new costs one call and writes nothing. (One packed
attribute rather than a string set: a set of a hundred members costs DynamoDB's item parser,
and the emulator's, far more than one binary value.)

Alertmanager resends a group every ``group_interval`` and retries on 5xx, so the same alert
comes back through the same group; an alert routed to pitcrew by two routes is caught again
by ``diagnose``, which processes each alert key once (powertools Idempotency).

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
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pitcrew.aws import aws_errors, error_code, translate
from pitcrew.errors import (
    ConfigError,
    PayloadTooLargeError,
    TransientServiceError,
    UnauthorizedError,
)
from pitcrew.incidents.alerts import Alert, Webhook
from pitcrew.records import frozen
from pitcrew.stores import table_name

QUEUE_ENV = "INCIDENT_QUEUE_URL"
DAY_S = 24 * 60 * 60
# SQS takes 256 KiB per message; the rest is room for attributes and the group.
MAX_MESSAGE_BYTES = 200 * 1024
# 80-bit digests: collisions among the keys of one group are out of reach.
_DIGEST_BYTES = 10
# 4,000 keys are 40 KB; with the largest delivery's keys added, far below DynamoDB's 400 KB.
MAX_KEYS_PER_GROUP = 4000
MAX_CLAIM_ATTEMPTS = 20
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
    elif not credentials:
        # A bare value is most likely the token itself: never echo it back.
        raise UnauthorizedError("the Authorization header has no scheme: use Bearer or Basic")
    else:
        shown = scheme if len(scheme) <= 20 else scheme[:20] + "..."
        raise UnauthorizedError(f"unsupported authorization scheme {shown!r}: use Bearer or Basic")
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
    return hashlib.sha256(key.encode()).hexdigest()[: 2 * _DIGEST_BYTES]


class SeenAlerts:
    """The alert keys already taken in, per notification group, in ``IDEMPOTENCY_TABLE``."""

    def __init__(
        self,
        table: str | None = None,
        client: Any | None = None,
        *,
        ttl_s: int = DAY_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table or table_name("IDEMPOTENCY_TABLE")
        self._client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self.sleep = sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("dynamodb")
        return self._client

    def claim(self, group: str, digests: Sequence[str]) -> set[str]:
        """Take ``digests`` in for the group; the ones that were not taken in before (new)."""
        return self._update(group, lambda known: [d for d in digests if d not in known], add=True)

    def release(self, group: str, digests: Iterable[str]) -> None:
        """Forget ``digests`` (they were claimed but could not be enqueued)."""
        gone = set(digests)
        if gone:
            self._update(group, lambda known: [d for d in known if d in gone], add=False)

    def _update(self, group: str, pick: Callable[[set[str]], list[str]], *, add: bool) -> set[str]:
        """``pick`` the keys to add (or remove) given the group's keys, and write the result
        on condition that nobody wrote meanwhile; on a lost race, again with the item as the
        failed write returned it. A claim first assumes a new group (one call when it is)."""
        item = None if add else self._read(group)
        for attempt in range(MAX_CLAIM_ATTEMPTS):
            now = int(self.clock())
            # DynamoDB deletes expired items lazily: an expired marker counts as empty.
            live = item is not None and int(item["expiration"]["N"]) >= now
            known = _unpack(item["seen"]["B"]) if item is not None and live else []
            picked = pick(set(known))
            if not picked:
                return set()
            if add:
                kept = known if len(known) < MAX_KEYS_PER_GROUP else []  # long-firing: afresh
                keys = kept + picked
            else:
                removed = set(picked)
                keys = [d for d in known if d not in removed]
            version = int(item["version"]["N"]) if item is not None else None
            written, item = self._write(group, keys, version, now)
            if written:
                return set(picked)
            if attempt:
                self.sleep(0.005 * attempt)
        raise TransientServiceError("dynamodb", f"marker {group}: too many concurrent deliveries")

    def _read(self, group: str) -> dict[str, Any] | None:
        with aws_errors("dynamodb"):
            found = self.client.get_item(
                TableName=self.table, Key={"id": {"S": group}}, ConsistentRead=True
            ).get("Item")
        return dict(found) if found else None

    def _write(
        self, group: str, keys: list[str], version: int | None, now: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """Write the group's keys if its version is still ``version`` (None: no item yet).
        ``(True, None)``, or ``(False, the item as it is)`` when another writer was first."""
        condition = "attribute_not_exists(id)" if version is None else "version = :v"
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "id": {"S": group},
                "seen": {"B": b"".join(bytes.fromhex(d) for d in keys)},
                "expiration": {"N": str(now + self.ttl_s)},
                "version": {"N": str((version or 0) + 1)},
            },
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if version is not None:
            request["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
        try:
            self.client.put_item(**request)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc, "dynamodb") from exc
            current = exc.response.get("Item")
            return False, dict(current) if current else None
        except BotoCoreError as exc:
            raise translate(exc, "dynamodb") from exc
        return True, None


def _unpack(packed: bytes) -> list[str]:
    return [packed[i : i + _DIGEST_BYTES].hex() for i in range(0, len(packed), _DIGEST_BYTES)]


# ------------------------------------------------------------------ enqueue


def alert_json(alert: Alert) -> str:
    """An alert as it goes on the queue: Alertmanager's own JSON shape, compact."""
    return _compact(alert.as_dict())


def _compact(value: Any) -> str:
    # ASCII only (json's default), so the length of the text is its size in bytes.
    return json.dumps(value, separators=(",", ":"))


def _head(group: Mapping[str, Any]) -> str:
    return '{"group":' + _compact(group) + ',"alerts":['


_TAIL = "]}"


def _check_sizes(head: str, texts: Iterable[tuple[int, str]]) -> None:
    room = MAX_MESSAGE_BYTES - len(head.encode()) - len(_TAIL)
    for index, text in texts:
        length = len(text.encode())
        if length > room:
            raise PayloadTooLargeError(
                f"alerts[{index}] is {length} bytes as JSON; one alert may take at most "
                f"{room} bytes"
            )


def _pack(head: str, texts: Sequence[str]) -> list[tuple[str, int]]:
    messages: list[tuple[str, int]] = []
    chunk: list[str] = []
    empty = len(head.encode()) + len(_TAIL)
    size = empty
    for text in texts:
        length = len(text.encode())
        if chunk and size + 1 + length > MAX_MESSAGE_BYTES:
            messages.append((head + ",".join(chunk) + _TAIL, len(chunk)))
            chunk, size = [], empty
        size += length + (1 if chunk else 0)
        chunk.append(text)
    if chunk:
        messages.append((head + ",".join(chunk) + _TAIL, len(chunk)))
    return messages


def pack_messages(group: Mapping[str, Any], alerts: Sequence[Alert]) -> list[tuple[str, int]]:
    """Message bodies ``{"group": ..., "alerts": [...]}`` of at most ``MAX_MESSAGE_BYTES``,
    each with how many of ``alerts`` (in order) it carries; ``PayloadTooLargeError`` for an
    alert that cannot fit in a message at all."""
    head = _head(group)
    texts = [alert_json(alert) for alert in alerts]
    _check_sizes(head, enumerate(texts))
    return _pack(head, texts)


@frozen
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
        # The same alert twice in one delivery is one.
        unique: dict[str, tuple[int, Alert]] = {}
        for index, alert in enumerate(webhook.alerts):
            unique.setdefault(key_digest(alert.key), (index, alert))
        group = group_id(webhook)
        head = _head(webhook.group())
        # Sized before anything is written: an alert too large for a message is refused whole.
        # Usually the whole delivery fits in one message, which is then serialized in one go.
        whole = _compact([alert.as_dict() for _, alert in unique.values()])
        one_message = len(head) + len(whole) + len(_TAIL) <= MAX_MESSAGE_BYTES
        texts = {} if one_message else {d: alert_json(a) for d, (_, a) in unique.items()}
        if not one_message:
            _check_sizes(head, ((i, texts[d]) for d, (i, _) in unique.items()))
        new = self.seen.claim(group, list(unique))
        fresh = [digest for digest in unique if digest in new]
        duplicates = len(webhook.alerts) - len(fresh)
        if not fresh:
            messages = []
        elif one_message:
            if len(fresh) < len(unique):
                whole = _compact([unique[d][1].as_dict() for d in fresh])
            messages = [(head + whole[1:-1] + _TAIL, len(fresh))]
        else:
            messages = _pack(head, [texts[d] for d in fresh])
        sent_alerts = 0
        for body, count in messages:
            try:
                with aws_errors("sqs"):
                    self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
            except Exception as exc:
                self._give_back(group, fresh[sent_alerts:], exc)
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
