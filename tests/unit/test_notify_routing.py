"""pitcrew.notify routing and dispatch: which entries get an event (events, severity,
environment, namespace), and what happens when a channel fails: the others still get the
message, the failure goes to the dead-letter queue, nothing is raised unless that write fails.
Channels are real renderers over httpx's MockTransport; SQS is a recording fake."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pitcrew.config import NotificationConfig, parse_config_text
from pitcrew.errors import BadRequestError, ServiceError
from pitcrew.notify import BusEvent, Notifier
from pitcrew.notify.deadletter import DeadLetters
from pitcrew.notify.http import HttpDelivery
from pitcrew.notify.routing import route
from tests.support.events import load_event


def sample(name: str, **detail: Any) -> BusEvent:
    event = load_event(f"eventbridge/{name}.json")
    event["detail"].update(detail)
    return BusEvent.from_eventbridge(event)


def entries(yaml: str) -> tuple[NotificationConfig, ...]:
    config = parse_config_text(f"notifications:\n{yaml}")
    assert config.notifications is not None
    return config.notifications


def routed(event: BusEvent, yaml: str) -> list[int]:
    return [index for index, _ in route(event, entries(yaml))]


# --- routing ---------------------------------------------------------------------------------


def test_an_event_goes_to_the_entries_that_name_it() -> None:
    yaml = """
  - {type: slack, webhook_url: env:A, events: [IncidentDiagnosed, CostAnomalyDetected]}
  - type: email
    sns_topic_arn: "arn:aws:sns:eu-west-1:123456789012:ops"
    events: [PromotionAwaitingApproval]
  - {type: discord, webhook_url: env:B}
"""
    assert routed(sample("IncidentDiagnosed"), yaml) == [0, 2]
    assert routed(sample("PromotionAwaitingApproval"), yaml) == [1, 2]
    assert routed(sample("SecretRotated"), yaml) == [2]


def test_severity_is_the_lowest_sent() -> None:
    yaml = "  - {type: slack, webhook_url: env:A, severity: warning}"
    assert routed(sample("IncidentDiagnosed"), yaml) == [0]  # warning
    assert routed(sample("PromotionFailed"), yaml) == [0]  # critical
    assert routed(sample("PromotionSucceeded"), yaml) == []  # info
    critical = "  - {type: slack, webhook_url: env:A, severity: critical}"
    assert routed(sample("IncidentDiagnosed"), critical) == []
    # An incident carrying its alerts' severity is routed by it.
    assert routed(sample("IncidentDiagnosed", severity="critical"), critical) == [0]


def test_environment_filter_uses_the_promotions_target_and_skips_events_without_one() -> None:
    yaml = "  - {type: slack, webhook_url: env:A, environment: prod}"
    assert routed(sample("PromotionAwaitingApproval"), yaml) == [0]  # staging -> prod
    assert routed(sample("EnvironmentDegraded"), yaml) == [0]
    staging = "  - {type: slack, webhook_url: env:A, environment: [dev, staging]}"
    assert routed(sample("PromotionAwaitingApproval"), staging) == []
    assert routed(sample("CostAnomalyDetected"), yaml) == []


def test_namespace_filter() -> None:
    yaml = "  - {type: slack, webhook_url: env:A, namespace: [payments, checkout]}"
    assert routed(sample("IncidentDiagnosed"), yaml) == [0]
    assert routed(sample("IncidentDiagnosed", namespace="search"), yaml) == []
    assert routed(sample("PromotionStarted"), yaml) == []


def test_filters_combine() -> None:
    yaml = """
  - {type: slack, webhook_url: env:A, events: [IncidentDiagnosed], severity: critical,
     namespace: payments}
"""
    assert routed(sample("IncidentDiagnosed"), yaml) == []
    assert routed(sample("IncidentDiagnosed", severity="critical"), yaml) == [0]


def test_something_that_is_not_an_eventbridge_event_is_refused() -> None:
    with pytest.raises(BadRequestError, match="no detail-type"):
        BusEvent.from_eventbridge({"Records": []})
    with pytest.raises(BadRequestError, match="not a JSON object"):
        BusEvent.from_eventbridge({"detail-type": "IncidentOpened", "detail": "x"})


# --- dispatch --------------------------------------------------------------------------------


class FakeSqs:
    """Records SendMessage calls; ``fail`` makes them raise as botocore would."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def send_message(self, **request: Any) -> dict[str, str]:
        if self.fail:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}},
                "SendMessage",
            )
        self.sent.append(request)
        return {"MessageId": str(len(self.sent))}


Handler = Callable[[httpx.Request], httpx.Response]


def notifier(yaml: str, handler: Handler, sqs: FakeSqs) -> tuple[Notifier, list[float]]:
    sleeps: list[float] = []
    http = HttpDelivery(
        httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=sleeps.append,
        jitter=lambda: 0.0,
    )
    dead_letters = DeadLetters("https://sqs.example/123456789012/notify-dlq", sqs)
    return Notifier(entries(yaml), http=http, dead_letters=dead_letters), sleeps


TWO_CHANNELS = """
  - {type: slack, webhook_url: "https://hooks.example.com/services/T0/B0/slack-credential"}
  - {type: discord, webhook_url: "https://discord.example.com/api/webhooks/1/discord-credential"}
"""


def test_one_refusing_channel_does_not_stop_the_other_and_goes_to_the_dlq() -> None:
    posted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(request.url.host)
        if request.url.host == "discord.example.com":
            return httpx.Response(404, json={"message": "Unknown Webhook", "code": 10015})
        return httpx.Response(200, text="ok")

    sqs = FakeSqs()
    notify, _ = notifier(TWO_CHANNELS, handler, sqs)
    report = notify.dispatch(sample("IncidentDiagnosed"))

    assert sorted(posted) == ["discord.example.com", "hooks.example.com"]
    assert [(d.kind, d.attempts) for d in report.delivered] == [("slack", 1)]
    (failure,) = report.failed
    assert (failure.kind, failure.reason) == (
        "discord",
        "discord: HTTP 404: Unknown Webhook (code 10015)",
    )
    (sent,) = sqs.sent
    body = json.loads(sent["MessageBody"])
    assert body["channel"] == {
        "index": 1,
        "type": "discord",
        "target": "https://discord.example.com/***",
    }
    assert body["reason"] == failure.reason
    assert body["event"]["detail-type"] == "IncidentDiagnosed"
    assert body["event"]["detail"]["id"] == "01JD3XK5Q8ZB7N4M2V6W9YT0RC"
    assert "discord-credential" not in sent["MessageBody"]
    assert sent["MessageAttributes"]["channel"]["StringValue"] == "discord"


def test_a_failure_the_dlq_cannot_take_is_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="invalid_token")

    notify, _ = notifier(TWO_CHANNELS, handler, FakeSqs(fail=True))
    with pytest.raises(ServiceError, match="sqs"):
        notify.dispatch(sample("IncidentDiagnosed"))


def test_an_unresolvable_webhook_reference_is_that_channels_failure_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_WEBHOOK", raising=False)
    yaml = """
  - {type: slack, webhook_url: env:NO_SUCH_WEBHOOK}
  - {type: teams, webhook_url: "https://teams.example.com/webhookb2/x"}
"""
    sqs = FakeSqs()
    notify, _ = notifier(yaml, lambda request: httpx.Response(200, text="1"), sqs)
    report = notify.dispatch(sample("PromotionSucceeded"))
    assert [d.kind for d in report.delivered] == ["teams"]
    (failure,) = report.failed
    assert failure.target == "env:NO_SUCH_WEBHOOK"
    assert "environment variable NO_SUCH_WEBHOOK is not set" in failure.reason
    assert len(sqs.sent) == 1


def test_nobody_wants_it_nothing_is_sent() -> None:
    yaml = "  - {type: slack, webhook_url: env:A, events: [SecretRotated]}"

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be posted")

    sqs = FakeSqs()
    notify, _ = notifier(yaml, handler, sqs)
    report = notify.dispatch(sample("IncidentDiagnosed"))
    assert (report.delivered, report.failed, sqs.sent) == ((), (), [])


def test_little_time_left_means_no_waiting_for_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "5"})

    sqs = FakeSqs()
    notify, sleeps = notifier(TWO_CHANNELS, handler, sqs)
    report = notify.dispatch(sample("IncidentDiagnosed"), time_left_s=14.0)  # 12 s reserved
    assert sleeps == []
    assert all("beyond the retry budget" in f.reason for f in report.failed)
    assert len(sqs.sent) == 2
