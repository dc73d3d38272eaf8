"""SQS partial batch responses: only the failed messages are reported, each logged with its
traceback; a batch that failed entirely fails the invocation."""

from __future__ import annotations

import logging

import pytest

from pitcrew.batch import BatchFailed, SqsMessage, process_sqs_batch
from pitcrew.observability import forget_secrets, register_secret
from tests.support.events import load_event


def _event(*bodies: str) -> dict[str, object]:
    return {
        "Records": [
            {"messageId": f"m-{i}", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
            for i, body in enumerate(bodies)
        ]
    }


def test_only_the_failed_records_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def handle(message: SqsMessage) -> None:
        seen.append(message.body)
        if message.body == "bad":
            raise RuntimeError("the cluster API timed out")

    answer = process_sqs_batch(
        _event("a", "bad", "c"), handle, logger=logging.getLogger("test.batch")
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert seen == ["a", "bad", "c"]  # a failure does not stop the rest
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.exc_info and "the cluster API timed out" in str(warning.exc_info[1])


def test_a_batch_that_failed_entirely_fails_the_invocation() -> None:
    def handle(message: SqsMessage) -> None:
        raise ValueError(f"cannot handle {message.body}")

    with pytest.raises(BatchFailed) as raised:
        process_sqs_batch(_event("x", "y"), handle, logger=logging.getLogger("test.batch"))

    assert raised.value.failures == {
        "m-0": "ValueError: cannot handle x",
        "m-1": "ValueError: cannot handle y",
    }


def test_the_failure_reasons_carry_no_secret() -> None:
    register_secret("hunter2-password")
    try:

        def handle(message: SqsMessage) -> None:
            raise RuntimeError("login failed with hunter2-password")

        with pytest.raises(BatchFailed) as raised:
            process_sqs_batch(_event("x"), handle, logger=logging.getLogger("test.batch"))
        assert "hunter2-password" not in str(raised.value)
    finally:
        forget_secrets()


def test_an_empty_batch_is_an_empty_answer_and_a_non_sqs_event_is_refused() -> None:
    logger = logging.getLogger("test.batch")
    assert process_sqs_batch({"Records": []}, lambda m: None, logger=logger) == {
        "batchItemFailures": []
    }
    with pytest.raises(ValueError, match="not an SQS event"):
        process_sqs_batch({"detail-type": "Scheduled Event"}, lambda m: None, logger=logger)


def test_a_record_without_a_message_id_is_refused_saying_so() -> None:
    logger = logging.getLogger("test.batch")
    for record in ({"body": "{}"}, "not a record"):
        with pytest.raises(ValueError, match="not an SQS record: no messageId"):
            process_sqs_batch({"Records": [record]}, lambda m: None, logger=logger)


def test_the_documented_sqs_batch_reads_as_messages() -> None:
    event = load_event("sqs/incident-batch.json")
    messages: list[SqsMessage] = []
    process_sqs_batch(event, messages.append, logger=logging.getLogger("test.batch"))
    assert [m.message_id for m in messages] == [r["messageId"] for r in event["Records"]]
    assert messages[0].body == event["Records"][0]["body"]
