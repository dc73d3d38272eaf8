"""The client factory against moto over real HTTP, and event publishing onto the stack's bus."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pitcrew import aws
from pitcrew.errors import NotFoundError, TransientServiceError
from pitcrew.events import EventPublisher, event
from pitcrew.local.provision import Stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    aws.reset_clients()
    try:
        yield endpoint
    finally:
        aws.reset_clients()
        server.stop()


def test_clients_honour_aws_endpoint_url(moto_server: str) -> None:
    aws.client("sqs").create_queue(QueueName="made-through-the-factory")
    seen_by_other = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    urls = seen_by_other.list_queues().get("QueueUrls", [])
    assert any(url.endswith("/made-through-the-factory") for url in urls)


def test_clients_are_created_once_and_reused(moto_server: str) -> None:
    assert aws.client("dynamodb") is aws.client("dynamodb")
    assert aws.client("dynamodb") is not aws.client("dynamodb", "eu-west-1")


def test_aws_errors_become_pitcrew_errors(moto_server: str) -> None:
    with pytest.raises(NotFoundError, match="dynamodb"), aws.aws_errors("dynamodb"):
        aws.client("dynamodb").describe_table(TableName="no-such-table")


def test_an_unreachable_endpoint_is_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    aws.reset_clients()
    try:
        with pytest.raises(TransientServiceError, match="cannot reach"), aws.aws_errors("sqs"):
            aws.client("sqs").list_queues()
    finally:
        aws.reset_clients()


# -- publishing onto the provisioned bus ----------------------------------------------------


def _capture_bus(stack: Stack) -> str:
    """A rule on the pitcrew bus that copies every pitcrew event into a queue; its URL."""
    sqs, events = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName="captured-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bus = stack.refs["PitcrewBus"]
    events.put_rule(
        Name="capture", EventBusName=bus, EventPattern=json.dumps({"source": ["pitcrew"]})
    )
    events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def _captured(url: str) -> list[dict[str, Any]]:
    messages = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


class PartiallyFailingEvents:
    """EventBridge that, on its first call, refuses the last entry as throttled."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 1 or len(Entries) < 2:
            return dict(self.real.put_events(Entries=Entries))
        sent = self.real.put_events(Entries=Entries[:-1])
        refused = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
        return {"FailedEntryCount": 1, "Entries": [*sent["Entries"], refused]}


def test_published_events_arrive_on_the_pitcrew_bus(stack: Stack) -> None:
    url = _capture_bus(stack)
    EventPublisher().publish(event("IncidentOpened", {"incident": "abc"}, resources=["x"]))
    [received] = _captured(url)
    assert received["source"] == "pitcrew"
    assert received["detail-type"] == "IncidentOpened"
    assert received["detail"] == {"incident": "abc"}


def test_a_partially_failed_put_events_is_retried_until_all_arrive(stack: Stack) -> None:
    url = _capture_bus(stack)
    flaky = PartiallyFailingEvents(aws.client("events"))
    publisher = EventPublisher(client=flaky, sleep=lambda _s: None)
    publisher.publish(
        event("IncidentOpened", {"n": 1}),
        event("IncidentDiagnosed", {"n": 2}),
        event("IncidentResolved", {"n": 3}),
    )
    assert flaky.calls == 2
    received = _captured(url)
    assert sorted(r["detail"]["n"] for r in received) == [1, 2, 3]
