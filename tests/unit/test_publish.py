"""Publishing domain events: batching, retries of failed entries, nothing dropped silently."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitcrew.errors import PublishError
from pitcrew.events import DomainEvent, EventName, EventPublisher, event
from pitcrew.observability import forget_secrets, register_secret


class FakeEventBridge:
    """Answers PutEvents like EventBridge; ``fail`` maps an entry index of a call to an error
    code for the first ``fail_times`` calls that see that detail."""

    def __init__(self, fail_details: dict[str, int] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.delivered: list[dict[str, Any]] = []
        self._fail = dict(fail_details or {})

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10, "PutEvents takes at most 10 entries"
        self.calls.append(Entries)
        results: list[dict[str, Any]] = []
        for entry in Entries:
            key = json.loads(entry["Detail"]).get("key", "")
            if self._fail.get(key, 0) > 0:
                self._fail[key] -= 1
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                self.delivered.append(entry)
                results.append({"EventId": f"id-{len(self.delivered)}"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}


def _publisher(client: FakeEventBridge, sleeps: list[float]) -> EventPublisher:
    return EventPublisher("pitcrew", client, sleep=sleeps.append, max_attempts=4)


def test_events_are_sent_in_batches_of_ten() -> None:
    client, sleeps = FakeEventBridge(), []
    _publisher(client, sleeps).publish(
        *[event("IncidentOpened", {"key": str(i)}) for i in range(23)]
    )
    assert [len(c) for c in client.calls] == [10, 10, 3]
    assert len(client.delivered) == 23
    first = client.delivered[0]
    assert first["Source"] == "pitcrew"
    assert first["DetailType"] == "IncidentOpened"
    assert first["EventBusName"] == "pitcrew"


def test_only_failed_entries_are_retried_with_backoff() -> None:
    client, sleeps = FakeEventBridge({"b": 2}), []
    _publisher(client, sleeps).publish(
        event("IncidentOpened", {"key": "a"}), event("IncidentDiagnosed", {"key": "b"})
    )
    assert [len(c) for c in client.calls] == [2, 1, 1]
    assert sorted(json.loads(e["Detail"])["key"] for e in client.delivered) == ["a", "b"]
    assert sleeps == [0.2, 0.4]


def test_entries_that_keep_failing_raise_naming_them() -> None:
    client, sleeps = FakeEventBridge({"b": 99}), []
    with pytest.raises(PublishError) as caught:
        _publisher(client, sleeps).publish(
            event("IncidentOpened", {"key": "a"}), event("CostAnomalyDetected", {"key": "b"})
        )
    assert caught.value.failed == [("CostAnomalyDetected", "InternalFailure: try again")]
    assert len(client.calls) == 4
    assert [json.loads(e["Detail"])["key"] for e in client.delivered] == ["a"]


def test_an_event_too_large_for_eventbridge_is_refused_not_dropped() -> None:
    client, sleeps = FakeEventBridge(), []
    with pytest.raises(PublishError, match="above 256 KiB"):
        _publisher(client, sleeps).publish(
            event("IncidentOpened", {"key": "ok"}),
            event("IncidentDiagnosed", {"key": "big", "blob": "x" * 300_000}),
        )
    assert [json.loads(e["Detail"])["key"] for e in client.delivered] == ["ok"]


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError, match="NotAnEvent"):
        DomainEvent(name="NotAnEvent", detail={})  # type: ignore[arg-type]


def test_a_secret_in_a_detail_is_redacted_on_the_way_out() -> None:
    register_secret("ghp_very-secret-token")
    try:
        client = FakeEventBridge()
        _publisher(client, []).publish(
            event(EventName.SECRET_ROTATED, {"key": "x", "oops": "ghp_very-secret-token"})
        )
    finally:
        forget_secrets()
    assert "ghp_very-secret-token" not in client.delivered[0]["Detail"]
