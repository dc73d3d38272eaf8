"""pitcrew.notify over real HTTP on loopback: fake Slack (incoming webhook and Web API), Discord
and Teams servers that check payloads the way those services document them and answer as they
do; SNS and the dead-letter queue in moto, provisioned from template.yaml; and the notify
handler itself, end to end."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pitcrew.aws import client
from pitcrew.config import NotificationConfig, parse_config_text
from pitcrew.errors import ServiceError
from pitcrew.local.context import LambdaContext
from pitcrew.local.provision import Stack
from pitcrew.notify import BusEvent, Notifier
from pitcrew.notify.http import HttpDelivery
from tests.support.events import load_event
from tests.support.fakehttp import FakeService, Reply, Request

REPO = Path(__file__).resolve().parents[2]
SLACK_HOOK = "/services/T024BE7LD/B07QJ5H8M4R/{token}"
SLACK_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
DISCORD_HOOK = "/api/webhooks/1308458914381201418/{token}"
TEAMS_HOOK = "/webhookb2/7c1a4e1e-88a1-4d57-9a69-0b6b3e3c6f5e@2f8c91b0/IncomingWebhook/{token}"
GREEN, RED, AMBER = 0x2EB67D, 0xE01E5A, 0xECB22E


class Fake:
    """A fake service for the whole module: ``script`` queues replies that come before its
    normal answers; ``reset`` forgets requests and scripts between tests (starting and
    stopping a server costs half a second)."""

    def __init__(self, name: str) -> None:
        self.service = FakeService(name)
        self.queued: list[Reply] = []

    @property
    def url(self) -> str:
        return self.service.url

    def script(self, *replies: Reply) -> None:
        self.queued.extend(replies)

    def scripted(self, answer: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def handler(request: Request) -> Reply:
            return self.queued.pop(0) if self.queued else answer(request)

        return handler

    def received(self, method: str = "POST") -> list[Request]:
        return self.service.received(method)

    def reset(self) -> None:
        self.service.requests.clear()
        self.queued.clear()


# --- the fakes: what each service accepts, and what it answers --------------------------------


def slack_block_problems(payload: Any) -> list[str]:
    """Slack refuses (invalid_blocks) what breaks Block Kit's documented limits."""
    if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
        return ["no_text"]
    problems = []
    blocks = payload.get("blocks", [])
    if len(blocks) > 50:
        problems.append("more than 50 blocks")
    for block in blocks:
        if block["type"] == "header":
            if block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150:
                problems.append("header")
        elif block["type"] == "section":
            if len(block.get("text", {}).get("text", "")) > 3000:
                problems.append("section text")
            if len(block.get("fields", [])) > 10:
                problems.append("fields")
        elif block["type"] == "context":
            if len(block["elements"]) > 10:
                problems.append("context elements")
        else:
            problems.append(f"block type {block['type']}")
    return problems


def _slack_webhook(request: Request) -> Reply:
    if request.params["token"] != "hook-credential":
        return Reply(404, "no_service")
    if not (request.header("content-type") or "").startswith("application/json"):
        return Reply(400, "invalid_payload")
    return (
        Reply(400, "invalid_blocks") if slack_block_problems(request.json()) else Reply(200, "ok")
    )


def _slack_post_message(request: Request) -> Reply:
    if request.header("authorization") != f"Bearer {SLACK_TOKEN}":
        return Reply(200, {"ok": False, "error": "invalid_auth"})
    payload = request.json()
    if payload.get("channel") != "#platform-alerts":
        return Reply(200, {"ok": False, "error": "channel_not_found"})
    if slack_block_problems(payload):
        return Reply(200, {"ok": False, "error": "invalid_blocks"})
    return Reply(200, {"ok": True, "channel": "C07QJ5H8M4R", "ts": "1732003106.000100"})


def _discord_execute(request: Request) -> Reply:
    if request.params["token"] != "hook-credential":
        return Reply(404, {"message": "Unknown Webhook", "code": 10015})
    embeds = request.json().get("embeds", [])
    too_big = len(embeds) > 10 or any(
        len(e.get("title", "")) > 256
        or len(e.get("description", "")) > 4096
        or len(e.get("fields", [])) > 25
        for e in embeds
    )
    if too_big:
        return Reply(400, {"message": "Invalid Form Body", "code": 50035})
    return Reply(204)


def _teams_incoming(request: Request) -> Reply:
    payload = request.json()
    if payload.get("type") != "message" or not payload.get("attachments"):
        return Reply(400, "Bad payload received by generic incoming webhook.")
    return Reply(200, "1")


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Fake]]:
    """The three services, started once for the module.

    - hooks.slack.com: an incoming webhook answers ``ok`` (text/plain), ``invalid_blocks``
      (400) for Block Kit over its limits, ``no_service`` (404) for an unknown hook;
      slack.com/api/chat.postMessage answers 200 with ``{"ok": true|false, ...}``;
    - discord.com/api/webhooks: 204; 400 ``Invalid Form Body`` (code 50035) for an embed over
      its limits; 404 ``Unknown Webhook`` (code 10015);
    - a Teams incoming webhook: ``1``; 400 for what is not a message with attachments.
    """
    routes = {
        "slack": [(SLACK_HOOK, _slack_webhook), ("/api/chat.postMessage", _slack_post_message)],
        "discord": [(DISCORD_HOOK, _discord_execute)],
        "teams": [(TEAMS_HOOK, _teams_incoming)],
    }
    started = {}
    for name, handlers in routes.items():
        fake = Fake(name)
        for path, answer in handlers:
            fake.service.route("POST", path)(fake.scripted(answer))
        fake.service.start()
        started[name] = fake
    yield started
    for fake in started.values():
        fake.service.stop()


@pytest.fixture
def slack(fakes: dict[str, Fake]) -> Fake:
    fakes["slack"].reset()
    return fakes["slack"]


@pytest.fixture
def discord(fakes: dict[str, Fake]) -> Fake:
    fakes["discord"].reset()
    return fakes["discord"]


@pytest.fixture
def teams(fakes: dict[str, Fake]) -> Fake:
    fakes["teams"].reset()
    return fakes["teams"]


def hook(service: Fake, path: str, token: str = "hook-credential") -> str:  # noqa: S107
    return service.url + path.format(token=token)


def entries(*lines: str) -> tuple[NotificationConfig, ...]:
    config = parse_config_text("notifications:\n" + "\n".join(f"  - {line}" for line in lines))
    assert config.notifications is not None
    return config.notifications


Notify = Callable[..., tuple[Notifier, list[float]]]


@pytest.fixture
def notifier() -> Iterator[Notify]:
    """Makes a Notifier for some ``notifications`` entries (YAML flow mappings), with a
    sleep that only records; returns it and the list of sleeps."""
    made: list[HttpDelivery] = []

    def make(*lines: str) -> tuple[Notifier, list[float]]:
        sleeps: list[float] = []
        http = HttpDelivery(sleep=sleeps.append, jitter=lambda: 0.0)
        made.append(http)
        return Notifier(entries(*lines), http=http), sleeps

    yield make
    for http in made:
        http.close()


def sample(name: str) -> BusEvent:
    return BusEvent.from_eventbridge(load_event(f"eventbridge/{name}.json"))


def only(service: Fake, method: str = "POST") -> Request:
    (request,) = service.received(method)
    return request


# --- Slack -----------------------------------------------------------------------------------


def test_slack_webhook_gets_block_kit(slack: Fake, notifier: Notify) -> None:
    notify, _ = notifier(f"{{type: slack, webhook_url: '{hook(slack, SLACK_HOOK)}'}}")
    report = notify.dispatch(sample("IncidentDiagnosed"))

    assert [d.kind for d in report.delivered] == ["slack"]
    request = only(slack)
    assert request.header("content-type") == "application/json; charset=utf-8"
    payload = request.json()
    assert payload["text"].startswith("Incident diagnosed: payments/api (OOM killed)")
    assert [b["type"] for b in payload["blocks"]][:2] == ["header", "section"]
    assert payload["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": ":red_circle: Incident diagnosed: payments/api (OOM killed)",
        "emoji": True,
    }
    assert payload["blocks"][1]["text"]["type"] == "mrkdwn"
    assert payload["blocks"][-1]["type"] == "context"


def test_slack_bot_posts_to_its_channel_with_its_token(
    slack: Fake, monkeypatch: pytest.MonkeyPatch, notifier: Notify
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    notify, _ = notifier(
        "{type: slack, token: env:SLACK_BOT_TOKEN, channel: '#platform-alerts', "
        f"api_url: '{slack.url}/api'}}"
    )
    report = notify.dispatch(sample("PromotionAwaitingApproval"))

    assert [(d.kind, d.target) for d in report.delivered] == [
        ("slack", "chat.postMessage #platform-alerts")
    ]
    request = only(slack)
    assert request.path == "/api/chat.postMessage"
    assert request.json()["channel"] == "#platform-alerts"
    assert request.json()["blocks"][0]["type"] == "header"


def test_slack_api_ok_false_is_a_permanent_failure(
    slack: Fake, stack: Stack, monkeypatch: pytest.MonkeyPatch, notifier: Notify
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    notify, _ = notifier(
        f"{{type: slack, token: env:SLACK_BOT_TOKEN, channel: '#gone', api_url: '{slack.url}/api'}}"
    )
    report = notify.dispatch(sample("PromotionAwaitingApproval"))
    assert [f.reason for f in report.failed] == ["slack: Slack API error channel_not_found"]
    assert len(slack.received("POST")) == 1


def test_slack_rate_limit_is_retried_after_retry_after(
    slack: Fake, monkeypatch: pytest.MonkeyPatch, notifier: Notify
) -> None:
    slack.script(Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "2"}))
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    notify, sleeps = notifier(
        "{type: slack, token: env:SLACK_BOT_TOKEN, channel: '#platform-alerts', "
        f"api_url: '{slack.url}/api'}}"
    )
    report = notify.dispatch(sample("IncidentResolved"))
    assert [d.attempts for d in report.delivered] == [2]
    assert sleeps == [2.0]


# --- Discord ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "colour"),
    [("PromotionSucceeded", GREEN), ("PromotionFailed", RED), ("PromotionAwaitingApproval", AMBER)],
)
def test_discord_gets_an_embed_coloured_by_outcome(
    discord: Fake, event: str, colour: int, notifier: Notify
) -> None:
    notify, _ = notifier(f"{{type: discord, webhook_url: '{hook(discord, DISCORD_HOOK)}'}}")
    report = notify.dispatch(sample(event))

    assert [d.kind for d in report.delivered] == ["discord"]
    payload = only(discord).json()
    assert payload["allowed_mentions"] == {"parse": []}
    (embed,) = payload["embeds"]
    assert embed["color"] == colour
    assert embed["title"].startswith("Promotion")
    assert {"name", "value", "inline"} <= set(embed["fields"][0])
    assert embed["timestamp"] == load_event(f"eventbridge/{event}.json")["time"]
    assert embed["url"].startswith("https://github.com/acme/platform-gitops/pull/")


def test_discord_rate_limit_is_retried_after_retry_after(discord: Fake, notifier: Notify) -> None:
    limited = {"message": "You are being rate limited.", "retry_after": 0.75, "global": False}
    discord.script(Reply(429, limited))
    notify, sleeps = notifier(f"{{type: discord, webhook_url: '{hook(discord, DISCORD_HOOK)}'}}")
    report = notify.dispatch(sample("CostAnomalyDetected"))
    assert [d.attempts for d in report.delivered] == [2]
    assert sleeps == [0.75]


# --- Teams -----------------------------------------------------------------------------------


def test_teams_gets_an_adaptive_card(teams: Fake, notifier: Notify) -> None:
    notify, _ = notifier(f"{{type: teams, webhook_url: '{hook(teams, TEAMS_HOOK)}'}}")
    report = notify.dispatch(sample("PromotionAwaitingApproval"))

    assert [d.kind for d in report.delivered] == ["teams"]
    payload = only(teams).json()
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert [b["type"] for b in card["body"]][:3] == ["TextBlock", "TextBlock", "FactSet"]
    assert {"title": "To", "value": "prod"} in card["body"][2]["facts"]
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "Pull request #415",
        "url": "https://github.com/acme/platform-gitops/pull/415",
    }


def test_teams_throttling_buried_in_a_200_is_retried(teams: Fake, notifier: Notify) -> None:
    buried = (
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP "
        "error 429 with ContextId tcid=0,server=msgapi-production-weu-azsc2-4-88,cv=x.0.."
    )
    teams.script(Reply(200, buried))
    notify, sleeps = notifier(f"{{type: teams, webhook_url: '{hook(teams, TEAMS_HOOK)}'}}")
    report = notify.dispatch(sample("SecretRotationFailed"))
    assert [d.attempts for d in report.delivered] == [2]
    assert sleeps == [0.5]


# --- failures, retries and the dead-letter queue ---------------------------------------------


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    sqs = client("sqs")
    answer = sqs.receive_message(
        QueueUrl=stack.refs["NotifyDeadLetterQueue"],
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
    )
    return [
        {**json.loads(m["Body"]), "attributes": m.get("MessageAttributes", {})}
        for m in answer.get("Messages", [])
    ]


def test_one_channels_permanent_failure_reaches_the_dlq_while_the_others_get_the_message(
    stack: Stack, slack: Fake, discord: Fake, teams: Fake, notifier: Notify
) -> None:
    notify, _ = notifier(
        f"{{type: slack, webhook_url: '{hook(slack, SLACK_HOOK)}'}}",
        f"{{type: discord, webhook_url: '{hook(discord, DISCORD_HOOK, 'revoked-credential')}'}}",
        f"{{type: teams, webhook_url: '{hook(teams, TEAMS_HOOK)}'}}",
    )
    report = notify.dispatch(sample("IncidentDiagnosed"))  # nothing raised

    assert len(slack.received("POST")) == len(teams.received("POST")) == 1
    assert len(discord.received("POST")) == 1  # a 404 is not retried
    assert sorted(d.kind for d in report.delivered) == ["slack", "teams"]
    (letter,) = dead_letters(stack)
    assert letter["reason"] == "discord: HTTP 404: Unknown Webhook (code 10015)"
    assert letter["channel"] == {
        "index": 1,
        "type": "discord",
        "target": f"{discord.url}/***",
    }
    assert letter["event"] == load_event("eventbridge/IncidentDiagnosed.json")
    assert letter["attributes"]["event"]["StringValue"] == "IncidentDiagnosed"
    assert "revoked-credential" not in json.dumps(letter)


def test_a_channel_that_stays_down_reaches_the_dlq_after_its_retries(
    stack: Stack, discord: Fake, notifier: Notify
) -> None:
    discord.script(*[Reply(502, "<html>Bad Gateway</html>")] * 4)
    notify, sleeps = notifier(f"{{type: discord, webhook_url: '{hook(discord, DISCORD_HOOK)}'}}")
    notify.dispatch(sample("BudgetThresholdCrossed"))

    assert len(discord.received("POST")) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    (letter,) = dead_letters(stack)
    assert letter["reason"] == ("discord: HTTP 502: <html>Bad Gateway</html> (after 4 attempts)")


def test_server_errors_honour_an_http_date_retry_after(slack: Fake, notifier: Notify) -> None:
    slack.script(Reply(503, "", headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}))
    notify, sleeps = notifier(f"{{type: slack, webhook_url: '{hook(slack, SLACK_HOOK)}'}}")
    report = notify.dispatch(sample("SecretRotated"))
    assert [d.attempts for d in report.delivered] == [2]
    assert sleeps == [0.0]  # a date in the past: retry at once


# --- email through SNS -----------------------------------------------------------------------


def test_email_is_published_to_the_sns_topic_as_plain_text(stack: Stack, notifier: Notify) -> None:
    sns, sqs = client("sns"), client("sqs")
    topic = sns.create_topic(Name="pitcrew-ops")["TopicArn"]
    inbox = sqs.create_queue(QueueName="ops-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
    notify, _ = notifier(
        f"{{type: email, sns_topic_arn: '{topic}', events: [PromotionAwaitingApproval]}}"
    )
    report = notify.dispatch(sample("PromotionAwaitingApproval"))

    assert [(d.kind, d.target) for d in report.delivered] == [("email", topic)]
    (received,) = sqs.receive_message(QueueUrl=inbox)["Messages"]
    notification = json.loads(received["Body"])  # the SNS envelope
    assert notification["Type"] == "Notification"
    assert notification["Subject"] == (
        "[pitcrew] Promotion awaiting approval: payments-api v1.42.0 -> prod"
    )
    text = notification["Message"]
    assert text.startswith("Promotion awaiting approval: payments-api v1.42.0 → prod\n\n")
    assert "Approve:      POST /promotions/01JD4B7R2Y9K3M5N8P0Q2S4T6V/approve" in text
    assert "Pull request #415: https://github.com/acme/platform-gitops/pull/415" in text


def test_a_missing_topic_goes_to_the_dlq(stack: Stack, notifier: Notify) -> None:
    gone = "arn:aws:sns:us-east-1:123456789012:deleted-topic"
    notify, _ = notifier(f"{{type: email, sns_topic_arn: '{gone}'}}")
    report = notify.dispatch(sample("EnvironmentDegraded"))
    assert [f.kind for f in report.failed] == ["email"]
    (letter,) = dead_letters(stack)
    assert letter["channel"]["target"] == gone
    assert "sns" in letter["reason"]


# --- the handler -----------------------------------------------------------------------------


def load_handler_module() -> ModuleType:
    """functions/notify/app.py, imported afresh (its module level loads the configuration)."""
    path = REPO / "functions" / "notify" / "app.py"
    spec = importlib.util.spec_from_file_location(f"notify_app_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def context() -> LambdaContext:
    return LambdaContext(
        function_name="pitcrew-notify",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:pitcrew-notify",
        memory_limit_in_mb=256,
        timeout_s=60,
        log_group_name="/aws/lambda/pitcrew-notify",
        log_stream_name="2024/11/19/[$LATEST]0123456789abcdef",
    )


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text("notifications:\n" + "\n".join(f"  - {line}" for line in lines))
    monkeypatch.setenv("PITCREW_CONFIG", str(path))


def test_the_handler_sends_an_eventbridge_event_with_a_webhook_from_secrets_manager(
    stack: Stack,
    slack: Fake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client("secretsmanager").create_secret(
        Name="pitcrew/slack", SecretString=hook(slack, SLACK_HOOK)
    )
    write_config(tmp_path, monkeypatch, "{type: slack, webhook_url: 'secret:pitcrew/slack'}")
    app = load_handler_module()
    event = load_event("eventbridge/IncidentDiagnosed.json")

    result = app.handler(event, context())

    assert result["delivered"] == [
        {"channel": 0, "type": "slack", "target": "secret:pitcrew/slack", "attempts": 1}
    ]
    assert result["dead_lettered"] == []
    assert only(slack).json()["blocks"][0]["type"] == "header"
    logs = capsys.readouterr().out
    assert '"correlation_id":"8454688c-f299-45de-b468-82c6916a40cd"' in logs.replace(" ", "")
    assert "hook-credential" not in logs
    assert "NotificationsDelivered" in logs  # the EMF metrics line

    # EventBridge delivers at least once: the same event again sends nothing more.
    assert app.handler(event, context()) == result
    assert len(slack.received("POST")) == 1


def test_the_handler_fails_only_when_the_dlq_cannot_take_a_failure(
    stack: Stack,
    discord: Fake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        f"{{type: discord, webhook_url: '{hook(discord, DISCORD_HOOK, 'revoked-credential')}'}}",
    )
    app = load_handler_module()
    event = load_event("eventbridge/PromotionFailed.json")
    assert app.handler(event, context())["dead_lettered"][0]["type"] == "discord"
    assert [letter["channel"]["type"] for letter in dead_letters(stack)] == ["discord"]

    monkeypatch.setenv("NOTIFY_DLQ_URL", stack.refs["NotifyDeadLetterQueue"] + "-deleted")
    with pytest.raises(ServiceError, match="sqs"):
        app.handler({**event, "id": "another-delivery"}, context())
    assert "NotificationDeadLetterWritesFailed" in capsys.readouterr().out
