"""Every route of the api function, sent what an attacker or a confused user would send:
each answer is a 4xx in the ``{"error": ...}`` shape naming the problem, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from pitcrew.api import create_app
from pitcrew.config import parse_config_text
from pitcrew.github.webhooks import signature
from pitcrew.local.provision import Stack
from pitcrew.observability import instrument

TOKEN = "operator-token-0123456789"
WEBHOOK_SECRET = "webhook-secret-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CONFIG = f"""
api: {{token: {TOKEN}}}
github: {{token: ghp_unused, webhook_secret: {WEBHOOK_SECRET}}}
environments:
  - {{name: dev, path: envs/dev, health_url: 'http://dev.test/healthz'}}
  - {{name: prod, path: envs/prod, health_url: 'http://prod.test/healthz'}}
"""


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(create_app(parse_config_text(CONFIG), instrument("api-test"))) as test_client:
        yield test_client


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert set(body) == {"error"}, body
    return str(body["error"])


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/incidents?limit=%E2%91%A0", "limit: expected an integer"),  # "①" is a digit
        ("/incidents?limit=" + "1" * 5000, "limit: expected an integer"),
        ("/promotions?limit=%E2%91%A0", "limit: expected an integer"),
        ("/promotions?limit=" + "1" * 5000, "limit: expected an integer"),
        ("/incidents?status=open&status=all", "'status' is given more than once"),
        ("/promotions?limit=1&limit=2", "'limit' is given more than once"),
        ("/costs?days=1&days=2", "'days' is given more than once"),
        ("/costs?day=7", "unknown query parameter(s) day"),
    ],
)
def test_bad_query_parameters_are_a_400_naming_them(client: Client, path: str, said: str) -> None:
    assert said in error(client.http.get(path, headers=AUTH), 400)


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("path", ["/incidents", "/promotions/x", "/webhooks/github"])
def test_a_wrong_method_is_a_405_in_the_error_shape(client: Client, method: str, path: str) -> None:
    response = client.http.request(method, path, headers=AUTH, body=b"")
    assert method in error(response, 405)
    assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]


def test_an_unsupported_content_type_is_a_415_in_the_error_shape(client: Client) -> None:
    headers = {**AUTH, "Content-Type": "application/xml"}
    response = client.http.post("/promotions", headers=headers, body="<app/>")
    assert "application/xml" in error(response, 415)


def test_an_empty_target_environment_is_refused_not_read_as_the_last_one(
    client: Client,
) -> None:
    body = json.dumps({"app": "api", "version": "v2", "to": ""})
    said = error(client.http.post("/promotions", headers=AUTH, body=body), 400)
    assert "unknown environment ''" in said
    listed = json.loads(client.http.get("/promotions", headers=AUTH).body)
    assert listed["count"] == 0


def test_an_overlong_github_delivery_id_is_a_400_not_a_store_error(client: Client) -> None:
    body = json.dumps({"action": "closed", "pull_request": {"number": 1}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "d" * 5000,
        "X-Hub-Signature-256": signature(WEBHOOK_SECRET.encode(), body),
    }
    said = error(client.http.post("/webhooks/github", headers=headers, body=body), 400)
    assert "X-GitHub-Delivery" in said
    assert "dynamodb" not in said
