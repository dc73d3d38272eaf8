"""The promotions API over the real app (chalice's test client) on the stack's table (moto):
what a caller typing ``curl -d`` or a wrong id gets back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from pitcrew.api import create_app
from pitcrew.config import parse_config_text
from pitcrew.observability import instrument

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = f"""
api: {{token: {TOKEN}}}
environments:
  - {{name: dev, path: envs/dev, health_url: 'http://dev.test/healthz'}}
  - {{name: prod, path: envs/prod, health_url: 'http://prod.test/healthz'}}
"""


@pytest.fixture
def client(stack: Any) -> Client:
    return Client(create_app(parse_config_text(CONFIG), instrument("api-test")))


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/promotions", '{"app": "api"}', "app and version are required"),
        ("/promotions", "app=api&version=v2", "the body is not JSON"),
        ("/promotions/01JD4B7R2Y9K3M5N8P0Q2S4T6V/approve", "{}", "no promotion"),
        ("/promotions/01JD4B7R2Y9K3M5N8P0Q2S4T6V/reject", '{"by": 5}', "expected strings"),
    ],
)
def test_a_form_encoded_body_like_curl_d_sends_gets_pitcrews_answer(
    client: Client, path: str, body: str, said: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    answer = client.http.post(path, headers=headers, body=body)
    assert 400 <= answer.status_code < 500 and answer.status_code != 415, answer.body
    assert said in json.loads(answer.body)["error"]


@pytest.mark.parametrize("promotion_id", ["A" * 2000, "nope", "01jd4b7r2y9k3m5n8p0q2s4t6v"])
def test_an_id_that_is_no_promotion_is_a_404(client: Client, promotion_id: str) -> None:
    answer = client.http.get(f"/promotions/{promotion_id}", headers=AUTH)
    assert answer.status_code == 404
    assert "no promotion" in json.loads(answer.body)["error"]
