"""The ``github-webhook`` and ``http`` strategies over real HTTP on loopback: a fake GitHub
REST API (repository webhook configuration) and a fake service taking its credential by
POST, with the protocol running on the emulated Secrets Manager."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pitcrew.config import Config, parse_config_text
from pitcrew.errors import ServiceError, TransientServiceError
from pitcrew.events import DomainEvent
from pitcrew.rotation.protocol import RotationStep, SecretRotation
from pitcrew.rotation.store import SecretStore, keep_values_out_of_wire_logs
from pitcrew.rotation.versions import current_and_pending
from tests.support.fakehttp import FakeService, Reply, Request, fake_service
from tests.support.secret_logs import no_secret_in_logs, remember  # noqa: F401 - autouse

pytestmark = pytest.mark.integration

STEPS = [step.value for step in RotationStep]
GITHUB_TOKEN = "ghp_pitcrewTestToken0123456789abcdef"
ENDPOINT_TOKEN = "endpoint-admin-token-0123456789"


@pytest.fixture
def sm(aws: None) -> Any:
    from pitcrew.aws import client

    return client("secretsmanager")


@pytest.fixture
def github() -> Iterator[FakeService]:
    hooks: dict[str, dict[str, Any]] = {
        "42": {
            "content_type": "json",
            "insecure_ssl": "0",
            "url": "https://pitcrew.example/webhooks/github",
        }
    }
    with fake_service("github") as service:

        @service.route("PATCH", "/repos/{owner}/{repo}/hooks/{hook}/config")
        def patch(request: Request) -> Reply:
            if request.header("Authorization") != f"Bearer {GITHUB_TOKEN}":
                return Reply(401, {"message": "Bad credentials"})
            hook = hooks.get(request.params["hook"])
            if hook is None:
                return Reply(404, {"message": "Not Found"})
            hook.update(request.json())
            return Reply(200, _shown(hook))

        @service.route("GET", "/repos/{owner}/{repo}/hooks/{hook}/config")
        def get(request: Request) -> Reply:
            hook = hooks.get(request.params["hook"])
            return Reply(200, _shown(hook)) if hook else Reply(404, {"message": "Not Found"})

        service.reply("POST", "/repos/{owner}/{repo}/hooks/{hook}/pings", Reply(204))
        service.hooks = hooks  # type: ignore[attr-defined]
        yield service


def _shown(hook: dict[str, Any]) -> dict[str, Any]:
    # GitHub never shows a hook's secret, only that one is set.
    return {**hook, "secret": "********"} if hook.get("secret") else dict(hook)


def make_secret(sm: Any, value: str, **tags: str) -> str:
    remember(value)
    keep_values_out_of_wire_logs()  # the test's own CreateSecret carries the value
    arn = sm.create_secret(
        Name=f"pitcrew/remote-{uuid.uuid4().hex[:8]}",
        SecretString=value,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )["ARN"]
    sm.rotate_secret(
        SecretId=arn, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False
    )
    return str(arn)


def begin(sm: Any, arn: str) -> str:
    token = str(uuid.uuid4())
    current = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    sm.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=current, VersionStages=["AWSPENDING"]
    )
    return token


def config(text: str) -> Config:
    return parse_config_text(text)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_github_webhook_rotation_updates_the_hook_and_never_rejects_a_delivery(
    sm: Any, github: FakeService
) -> None:
    remember(GITHUB_TOKEN)
    arn = make_secret(
        sm,
        "old-webhook-secret-value",
        **{
            "pitcrew:rotation": "github-webhook",
            "pitcrew:github-repo": "acme/platform-gitops",
            "pitcrew:github-hook-id": "42",
        },
    )
    github.hooks["42"]["secret"] = "old-webhook-secret-value"  # type: ignore[attr-defined]
    settings = config(f"github: {{api_url: '{github.url}', token: {GITHUB_TOKEN}}}")
    published: list[DomainEvent] = []
    rotation = SecretRotation(
        settings, store=SecretStore(sm), publish=lambda *e: published.extend(e)
    )
    store = SecretStore(sm)
    delivery = b'{"zen": "Design for failure."}'
    token = begin(sm, arn)

    accepted: list[bool] = []
    for step in STEPS:
        rotation.run(step, arn, token)
        # GitHub signs with whatever the hook holds now; the webhook's check accepts it.
        hook_secret = github.hooks["42"]["secret"]  # type: ignore[attr-defined]
        sent = signature(hook_secret, delivery)
        accepted.append(
            any(
                hmac.compare_digest(sent, signature(v, delivery))
                for v in current_and_pending(arn, store=store)
            )
        )

    assert accepted == [True, True, True, True]
    current = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    assert github.hooks["42"]["secret"] == current  # type: ignore[attr-defined]
    assert current != "old-webhook-secret-value"
    [patch] = github.received("PATCH")
    assert patch.path == "/repos/acme/platform-gitops/hooks/42/config"
    assert patch.header("Authorization") == f"Bearer {GITHUB_TOKEN}"
    assert patch.json() == {"secret": current}
    assert len(github.received("POST", "/repos/acme/platform-gitops/hooks/42/pings")) == 1
    assert [e.name for e in published] == ["SecretRotated"]


def test_github_webhook_json_secret_names_its_hook_and_field(sm: Any, github: FakeService) -> None:
    document = {"secret": "old-json-hook-secret", "repo": "acme/app", "hook_id": 42}
    arn = make_secret(sm, json.dumps(document), **{"pitcrew:rotation": "github-webhook"})
    remember("old-json-hook-secret")
    settings = config(f"github: {{api_url: '{github.url}', token: {GITHUB_TOKEN}}}")
    rotation = SecretRotation(settings, store=SecretStore(sm), publish=lambda *e: None)
    token = begin(sm, arn)

    for step in STEPS:
        rotation.run(step, arn, token)

    rotated = json.loads(
        sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    )
    assert (rotated["repo"], rotated["hook_id"]) == ("acme/app", 42)
    assert github.hooks["42"]["secret"] == rotated["secret"]  # type: ignore[attr-defined]
    assert current_and_pending(arn, key="secret", store=SecretStore(sm)) == [rotated["secret"]]


def test_github_refusing_the_update_stops_the_rotation_before_anything_changes(
    sm: Any, github: FakeService
) -> None:
    arn = make_secret(
        sm,
        "old-webhook-secret-value",
        **{
            "pitcrew:rotation": "github-webhook",
            "pitcrew:github-repo": "acme/x",
            "pitcrew:github-hook-id": "42",
        },
    )
    settings = config(f"github: {{api_url: '{github.url}', token: ghp_wrongTokenValue000}}")
    published: list[DomainEvent] = []
    rotation = SecretRotation(
        settings, store=SecretStore(sm), publish=lambda *e: published.extend(e)
    )
    token = begin(sm, arn)
    rotation.run("createSecret", arn, token)

    with pytest.raises(ServiceError, match="PATCH /repos/acme/x/hooks/42/config answered 401"):
        rotation.run("setSecret", arn, token)

    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"] == (
        "old-webhook-secret-value"
    )
    assert [(e.name, e.detail["step"]) for e in published] == [
        ("SecretRotationFailed", "setSecret")
    ]


@pytest.fixture
def endpoint() -> Iterator[FakeService]:
    with fake_service("endpoint") as service:
        service.accepted: list[str] = []  # type: ignore[attr-defined]

        @service.route("POST", "/credentials")
        def set_value(request: Request) -> Reply:
            if request.header("Authorization") != f"Bearer {ENDPOINT_TOKEN}":
                return Reply(401, {"error": "unauthorized"})
            service.accepted.append(request.json()["value"])  # type: ignore[attr-defined]
            return Reply(204)

        @service.route("POST", "/credentials/check")
        def check(request: Request) -> Reply:
            known = service.accepted  # type: ignore[attr-defined]
            return Reply(200, {"ok": True}) if request.json()["value"] in known else Reply(403)

        yield service


def endpoint_config(service: FakeService) -> Config:
    return config(
        "rotation:\n  endpoints:\n    billing:\n"
        f"      set_url: '{service.url}/credentials'\n"
        f"      test_url: '{service.url}/credentials/check'\n"
        f"      token: {ENDPOINT_TOKEN}\n"
    )


def test_http_strategy_sets_and_tests_the_value_at_the_configured_endpoint(
    sm: Any, endpoint: FakeService
) -> None:
    remember(ENDPOINT_TOKEN)
    arn = make_secret(
        sm, "old-billing-credential", **{"pitcrew:rotation": "http", "pitcrew:endpoint": "billing"}
    )
    rotation = SecretRotation(
        endpoint_config(endpoint), store=SecretStore(sm), publish=lambda *e: None
    )
    token = begin(sm, arn)

    for step in STEPS:
        rotation.run(step, arn, token)

    current = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    assert endpoint.accepted == [current]  # type: ignore[attr-defined]
    [set_call] = endpoint.received("POST", "/credentials")[:1]
    assert set_call.json() == {
        "secret": set_call.json()["secret"],
        "version": token,
        "value": current,
    }


def test_http_endpoint_down_is_a_transient_failure_and_nothing_moves(
    sm: Any, endpoint: FakeService
) -> None:
    endpoint.reply("POST", "/credentials", Reply(503))
    arn = make_secret(
        sm, "old-billing-credential", **{"pitcrew:rotation": "http", "pitcrew:endpoint": "billing"}
    )
    rotation = SecretRotation(
        endpoint_config(endpoint), store=SecretStore(sm), publish=lambda *e: None
    )
    token = begin(sm, arn)
    rotation.run("createSecret", arn, token)

    with pytest.raises(TransientServiceError, match="answered 503"):
        rotation.run("setSecret", arn, token)
    with pytest.raises(ServiceError, match="answered 403"):
        rotation.run("testSecret", arn, token)
    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"] == (
        "old-billing-credential"
    )
