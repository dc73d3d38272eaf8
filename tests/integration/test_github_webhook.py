"""POST /webhooks/github against the stack of template.yaml in moto: the signature checked
before anything is parsed, ping, each delivery queued once (durable dedup), what lands on
the GitHub delivery queue, and both secrets accepted during a rotation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from pitcrew.api import create_app
from pitcrew.config import parse_config
from pitcrew.github.webhooks import signature
from pitcrew.local.provision import Stack
from pitcrew.observability import instrument
from tests.conftest import harness_client
from tests.support.events import github_delivery, load_event

WEBHOOK = "/webhooks/github"
SECRET_NAME = "pitcrew/github-webhook"
CURRENT = "current-webhook-secret-0123456789"
PENDING = "pending-webhook-secret-9876543210"


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    harness_client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=CURRENT)
    config = parse_config(
        {
            "github": {
                "api_url": "http://127.0.0.1:9",
                "token": "ghp_unused",
                "webhook_secret": f"secret:{SECRET_NAME}",
            }
        }
    )
    with Client(create_app(config, instrument("api-test"))) as test_client:
        yield test_client


def post(client: Client, name: str, secret: str | None = CURRENT, **overrides: str) -> Any:
    body, headers = github_delivery(name)
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret.encode(), body)
    headers.update(overrides)
    return client.http.post(WEBHOOK, body=body, headers=headers)


def queued() -> list[dict[str, Any]]:
    sqs = harness_client("sqs")
    url = os.environ["GITHUB_QUEUE_URL"]
    bodies = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return bodies
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_ping_answers_200(client: Client) -> None:
    response = post(client, "ping.json")
    assert response.status_code == 200
    assert json.loads(response.body)["ping"] == "pong"
    assert queued() == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature at all
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": signature(b"another secret", b"{}")},
        {"X-Hub-Signature-256": "sha1=0123"},
    ],
)
def test_a_wrong_or_missing_signature_is_401_and_nothing_is_queued(
    client: Client, headers: dict[str, str]
) -> None:
    body, sent = github_delivery("pull_request-closed-merged.json")
    response = client.http.post(WEBHOOK, body=body, headers={**sent, **headers})
    assert response.status_code == 401
    assert "error" in json.loads(response.body)
    assert queued() == []


def test_a_body_that_is_not_json_is_401_unless_signed(client: Client) -> None:
    body = b"{not json"
    _, headers = github_delivery("pull_request-closed-merged.json")
    unsigned = client.http.post(WEBHOOK, body=body, headers=headers)
    assert unsigned.status_code == 401  # the signature comes before any parsing
    signed = client.http.post(
        WEBHOOK,
        body=body,
        headers={**headers, "X-Hub-Signature-256": signature(CURRENT.encode(), body)},
    )
    assert signed.status_code == 400
    assert "not JSON" in json.loads(signed.body)["error"]


def test_a_delivery_is_queued_once_with_its_headers_and_payload(client: Client) -> None:
    first = post(client, "pull_request-closed-merged.json")
    again = post(client, "pull_request-closed-merged.json")

    delivery = "a21a93e0-a650-11ef-b75c-9e341d7809da"
    assert first.status_code == again.status_code == 202
    assert json.loads(first.body) == {"delivery": delivery, "duplicate": False}
    assert json.loads(again.body) == {"delivery": delivery, "duplicate": True}
    (message,) = queued()
    assert message["delivery"] == delivery
    assert message["event"] == "pull_request"
    assert message["hook_id"] == "512630418"
    assert message["payload"] == load_event("github/pull_request-closed-merged.json")


def test_events_github_events_does_not_use_are_acknowledged_not_queued(client: Client) -> None:
    body = b'{"ref": "refs/heads/main"}'
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "0b5e5c1e-a650-11ef-0000-000000000001",
        "X-Hub-Signature-256": signature(CURRENT.encode(), body),
    }
    response = client.http.post(WEBHOOK, body=body, headers=headers)
    assert response.status_code == 202
    assert json.loads(response.body)["ignored"] == "push"
    assert queued() == []


def test_missing_delivery_headers_are_named(client: Client) -> None:
    response = post(client, "release-published.json", **{"X-GitHub-Delivery": ""})
    assert response.status_code == 400
    assert "X-GitHub-Delivery" in json.loads(response.body)["error"]


def test_a_form_encoded_delivery_is_accepted(client: Client) -> None:
    payload, headers = github_delivery("release-published.json")
    body = urlencode({"payload": payload.decode()}).encode()
    headers.update(
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Hub-Signature-256": signature(CURRENT.encode(), body),
        }
    )
    response = client.http.post(WEBHOOK, body=body, headers=headers)
    assert response.status_code == 202, response.body
    (message,) = queued()
    assert message["payload"]["action"] == "published"


def test_during_a_rotation_both_the_current_and_the_pending_secret_are_accepted(
    client: Client,
) -> None:
    assert post(client, "release-published.json").status_code == 202  # cached: current
    harness_client("secretsmanager").put_secret_value(
        SecretId=SECRET_NAME, SecretString=PENDING, VersionStages=["AWSPENDING"]
    )

    by_pending = post(client, "workflow_run-completed.json", secret=PENDING)
    by_current = post(client, "issue_comment-created.json", secret=CURRENT)
    forged = post(client, "pull_request-closed-unmerged.json", secret="not-the-secret")

    assert by_pending.status_code == 202
    assert by_current.status_code == 202
    assert forged.status_code == 401
    assert [m["event"] for m in queued()] == ["release", "workflow_run", "issue_comment"]
