"""SQS batches with partial failures (the event source mapping's ``ReportBatchItemFailures``).

``process_sqs_batch`` hands each record of the batch to a handler; a record whose handler
raises is logged with its traceback and reported in ``batchItemFailures``, so SQS delivers
only that message again (and, after the queue's ``maxReceiveCount``, moves it to the
dead-letter queue). When every record failed, it raises ``BatchFailed`` instead: the
invocation fails as a whole and shows in the function's error metrics, as with powertools'
``process_partial_response``, which this replaces.

Why not powertools' batch utility: importing it loads every powertools event data class and
``asyncio`` (for its async processor), about 30 ms of a cold start for a loop this size.
FIFO queues (which must stop at the first failure) are not supported; pitcrew's are standard.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from pitcrew.observability import redact
from pitcrew.records import frozen


class ItemFailure(TypedDict):
    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[ItemFailure]


class BatchFailed(Exception):
    """Every record of the batch failed; ``failures`` says why, one line per message id."""

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        reasons = "; ".join(f"{mid}: {why}" for mid, why in self.failures.items())
        super().__init__(f"all {len(self.failures)} records of the batch failed: {reasons}")


@frozen
class SqsMessage:
    """One record of an SQS event: the parts pitcrew reads."""

    message_id: str
    body: str
    attributes: Mapping[str, Any]

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> SqsMessage:
        """Read one record (``ValueError`` when it is not an SQS record)."""
        if not isinstance(record, Mapping) or not record.get("messageId"):
            raise ValueError("not an SQS record: no messageId")
        return cls(
            message_id=str(record["messageId"]),
            body=str(record.get("body") or ""),
            attributes=record.get("attributes") or {},
        )

    def json_body(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return json.loads(self.body)


def process_sqs_batch(
    event: Mapping[str, Any],
    handle: Callable[[SqsMessage], object],
    *,
    logger: logging.Logger | Any,
) -> PartialBatchResponse:
    """Run ``handle`` on every record of ``event``; the failed ones in the answer."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an SQS event: no Records list")
    failures: dict[str, str] = {}
    for record in records:
        message = SqsMessage.of(record)
        try:
            handle(message)
        except Exception as exc:  # one bad record must not fail the others
            logger.warning(
                "Record processing exception; skipping this record",
                exc_info=True,
                extra={"message_id": message.message_id},
            )
            failures[message.message_id] = redact(f"{type(exc).__name__}: {exc}")
    if records and len(failures) == len(records):
        raise BatchFailed(failures)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failures]}
