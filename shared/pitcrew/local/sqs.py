"""SQS event source mappings: poll a queue in the emulator and feed its function batches.

This does what Lambda's SQS poller does: long-poll the queue, gather up to ``BatchSize``
messages within ``MaximumBatchingWindowInSeconds``, invoke the function synchronously with
the Lambda SQS event, then delete what succeeded. When the handler fails, nothing is deleted
and the messages come back after the queue's visibility timeout; with
``ReportBatchItemFailures`` only the reported messages come back (an invalid report fails the
whole batch, as in Lambda). The queue's own redrive policy (moto applies it on receive) moves
a message to the dead-letter queue after ``maxReceiveCount`` receives. ``FilterCriteria``
patterns are matched with EventBridge's pattern semantics, and filtered-out messages are
deleted unseen, as Lambda does.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pitcrew.local.functions import FunctionRunner, Invocation

log = logging.getLogger("pitcrew.local")

# The message system attributes Lambda copies into a record's ``attributes``.
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
)


@dataclass(frozen=True)
class SqsMapping:
    """One ``SQS`` event of a function (SAM's event source mapping properties)."""

    function: str
    event_name: str
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    enabled: bool = True
    filters: tuple[str, ...] = field(default_factory=tuple)

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[-1]

    @property
    def account_id(self) -> str:
        return self.queue_arn.split(":")[4]

    @classmethod
    def from_event(cls, function: str, event_name: str, properties: dict[str, Any]) -> SqsMapping:
        queue = properties.get("Queue")
        if not isinstance(queue, str) or not queue.startswith("arn:"):
            raise ValueError(f"{function}.{event_name}: Queue must be a queue ARN, got {queue!r}")
        filters = tuple(
            f["Pattern"] if isinstance(f["Pattern"], str) else json.dumps(f["Pattern"])
            for f in (properties.get("FilterCriteria") or {}).get("Filters", [])
            if isinstance(f, dict) and "Pattern" in f
        )
        return cls(
            function=function,
            event_name=event_name,
            queue_arn=queue,
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            enabled=str(properties.get("Enabled", True)).lower() != "false",
            filters=filters,
        )


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    def b64(raw: Any) -> str:
        return base64.b64encode(raw if isinstance(raw, bytes) else str(raw).encode()).decode()

    shaped: dict[str, Any] = {}
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = b64(value["BinaryValue"])
    shaped["stringListValues"] = list(value.get("StringListValues", []))
    shaped["binaryListValues"] = [b64(v) for v in value.get("BinaryListValues", [])]
    shaped["dataType"] = value.get("DataType", "String")
    return shaped


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the Lambda SQS event for a message from ``ReceiveMessage``."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: attributes[k] for k in _RECORD_ATTRIBUTES if k in attributes},
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


def failed_message_ids(invocation: Invocation, batch_ids: Sequence[str], report: bool) -> set[str]:
    """The messages of a batch that must stay on the queue after this invocation."""
    if not invocation.ok:
        return set(batch_ids)
    payload = invocation.payload
    failures = payload.get("batchItemFailures") if report and isinstance(payload, dict) else None
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            # Lambda treats an unusable report as a failure of the whole batch.
            log.warning("invalid batchItemFailures entry %r: the whole batch fails", item)
            return set(batch_ids)
        failed.add(identifier)
    return failed


class SqsPoller:
    """Polls one queue for one function until stopped (a daemon thread)."""

    def __init__(
        self,
        mapping: SqsMapping,
        runner: FunctionRunner,
        sqs_client: Any,
        *,
        region: str,
        wait_s: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapping = mapping
        self.runner = runner
        self._sqs = sqs_client
        self._region = region
        self._wait_s = wait_s
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue_url: str | None = None
        self._patterns: list[Any] | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self._sqs.get_queue_url(
                QueueName=self.mapping.queue_name,
                QueueOwnerAWSAccountId=self.mapping.account_id,
            )["QueueUrl"]
        return self._queue_url

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run,
            name=f"sqs:{self.mapping.queue_name}->{self.runner.name}",
            daemon=True,
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the poller to stop after its current receive (``stop`` also waits)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the emulator is going away, or a transient error
                if self._stop.is_set():
                    return
                log.warning("sqs %s: %s", self.mapping.queue_name, exc)
                self._stop.wait(1.0)

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def matches_filters(self, record: dict[str, Any]) -> bool:
        if not self.mapping.filters:
            return True
        if self._patterns is None:
            from moto.events.models import EventPattern

            self._patterns = [EventPattern.load(p) for p in self.mapping.filters]
        candidate = dict(record)
        try:
            body = json.loads(record["body"])
            if isinstance(body, dict):
                candidate["body"] = body
        except ValueError:
            pass
        return any(p.matches_event(candidate) for p in self._patterns)

    def _delete(self, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )

    def gather(self) -> list[dict[str, Any]]:
        """One batch: a long poll, then more receives while the batching window is open."""
        batch = self._receive(self.mapping.batch_size, self._wait_s)
        if not batch or self.mapping.batching_window_s <= 0:
            return batch
        deadline = self._monotonic() + self.mapping.batching_window_s
        while len(batch) < self.mapping.batch_size and not self._stop.is_set():
            left = deadline - self._monotonic()
            if left <= 0:
                break
            more = self._receive(self.mapping.batch_size - len(batch), 1 if left >= 1 else 0)
            if not more and left < 1:
                self._stop.wait(min(left, 0.1))
            batch += more
        return batch

    def poll_once(self) -> int:
        """Receive one batch and hand it to the function; the number of messages received."""
        messages = self.gather()
        if not messages:
            return 0
        region = self._region
        records = [sqs_record(m, self.mapping.queue_arn, region) for m in messages]
        wanted, filtered_out = [], []
        for message, record in zip(messages, records, strict=True):
            if self.matches_filters(record):
                wanted.append((message, record))
            else:
                filtered_out.append(message)
        if filtered_out:
            self._delete(filtered_out)
        if not wanted:
            return len(messages)
        event = {"Records": [r for _, r in wanted]}
        invocation = self.runner.invoke(
            event, trigger=f"sqs {self.mapping.queue_name} ({len(wanted)} messages)"
        )
        ids = [m["MessageId"] for m, _ in wanted]
        failed = failed_message_ids(invocation, ids, self.mapping.report_batch_item_failures)
        done = [m for m, _ in wanted if m["MessageId"] not in failed]
        if done:
            self._delete(done)
        if failed:
            log.info(
                "sqs %s: %d message(s) left for redelivery after the visibility timeout",
                self.mapping.queue_name,
                len(failed),
            )
        return len(messages)
