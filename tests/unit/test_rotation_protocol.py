"""The four-step rotation protocol against the emulated Secrets Manager (moto, in-process):
its guards, the staging labels it leaves, steps run twice, the events, and the values a
credential check accepts mid-rotation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from pitcrew.config import PasswordPolicy, parse_config_text
from pitcrew.errors import BadRequestError, ConflictError
from pitcrew.events import DomainEvent
from pitcrew.rotation.protocol import RotationStep, SecretRotation
from pitcrew.rotation.store import SecretStore
from pitcrew.rotation.strategy import password_request
from pitcrew.rotation.versions import current_and_pending
from tests.support.secret_logs import no_secret_in_logs  # noqa: F401 - autouse fixture

STEPS = [step.value for step in RotationStep]


@pytest.fixture
def sm(aws: None) -> Any:
    from pitcrew.aws import client

    return client("secretsmanager")


@pytest.fixture
def published() -> list[DomainEvent]:
    return []


@pytest.fixture
def rotation(sm: Any, published: list[DomainEvent]) -> SecretRotation:
    return SecretRotation(store=SecretStore(sm), publish=lambda *events: published.extend(events))


def make_secret(sm: Any, value: str, strategy: str = "password", **tags: str) -> str:
    """A secret with rotation enabled, as after RotateSecret configured it."""
    name = f"pitcrew/test-{uuid.uuid4().hex[:8]}"
    all_tags = {"pitcrew:rotation": strategy, **tags}
    arn = sm.create_secret(
        Name=name,
        SecretString=value,
        Tags=[{"Key": k, "Value": v} for k, v in all_tags.items()],
    )["ARN"]
    # Without a Lambda, moto's RotateSecret just turns rotation on (and copies the value).
    sm.rotate_secret(
        SecretId=arn, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False
    )
    return str(arn)


def begin(sm: Any, arn: str) -> str:
    """What RotateSecret does before invoking the function: a new version staged AWSPENDING
    (moto fills it with the current value, which is why the protocol ignores such a value)."""
    token = str(uuid.uuid4())
    current = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    sm.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=current, VersionStages=["AWSPENDING"]
    )
    return token


class RotationTurnedOff:
    """The emulator's client, answering DescribeSecret as for a secret whose rotation was
    turned off (moto cannot turn it off without a rotation function)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_secret(self, **request: Any) -> dict[str, Any]:
        return {**self._client.describe_secret(**request), "RotationEnabled": False}


def value(sm: Any, arn: str, stage: str) -> dict[str, Any]:
    return dict(sm.get_secret_value(SecretId=arn, VersionStage=stage))


def stages(sm: Any, arn: str) -> dict[str, list[str]]:
    return dict(sm.describe_secret(SecretId=arn)["VersionIdsToStages"])


def test_a_password_rotation_makes_the_new_value_current_and_the_old_previous(
    sm: Any, rotation: SecretRotation, published: list[DomainEvent]
) -> None:
    arn = make_secret(sm, "old-password-value")
    token = begin(sm, arn)

    for step in STEPS:
        rotation.run(step, arn, token)

    current = value(sm, arn, "AWSCURRENT")
    assert current["VersionId"] == token
    assert current["SecretString"] != "old-password-value"
    assert len(current["SecretString"]) == PasswordPolicy().length
    assert value(sm, arn, "AWSPREVIOUS")["SecretString"] == "old-password-value"
    assert not any("AWSPENDING" in labels for labels in stages(sm, arn).values())
    [rotated] = published
    assert rotated.name == "SecretRotated"
    assert rotated.detail["arn"] == arn
    assert rotated.detail["version"] == token
    assert current["SecretString"] not in json.dumps(rotated.detail)


def test_secrets_managers_invocations_run_the_steps_they_name(
    sm: Any, rotation: SecretRotation
) -> None:
    arn = make_secret(sm, "old-password-value")
    token = begin(sm, arn)

    ran = [
        rotation.handle({"Step": step, "SecretId": arn, "ClientRequestToken": token})
        for step in STEPS
    ]

    assert ran == list(STEPS)
    assert value(sm, arn, "AWSCURRENT")["VersionId"] == token


def test_an_invocation_without_its_keys_is_refused_naming_them(rotation: SecretRotation) -> None:
    with pytest.raises(BadRequestError, match="no SecretId, ClientRequestToken"):
        rotation.handle({"Step": "createSecret"})


def test_every_step_run_twice_ends_the_same(sm: Any, rotation: SecretRotation) -> None:
    arn = make_secret(sm, "old-password-value")
    token = begin(sm, arn)

    rotation.run("createSecret", arn, token)
    created = sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"]
    for step in STEPS:
        rotation.run(step, arn, token)
        rotation.run(step, arn, token)

    assert value(sm, arn, "AWSCURRENT")["SecretString"] == created
    assert value(sm, arn, "AWSPREVIOUS")["SecretString"] == "old-password-value"
    assert sum("AWSCURRENT" in labels for labels in stages(sm, arn).values()) == 1


def test_a_pending_version_holding_the_current_value_gets_a_new_one(
    sm: Any, rotation: SecretRotation
) -> None:
    arn = make_secret(sm, "old-password-value")
    token = begin(sm, arn)
    assert (
        sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"] == "old-password-value"
    )

    rotation.run("createSecret", arn, token)

    pending = sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    assert pending["SecretString"] != "old-password-value"


def test_a_json_secret_keeps_its_other_fields(sm: Any, rotation: SecretRotation) -> None:
    arn = make_secret(
        sm, json.dumps({"user": "svc", "api_key": "old-key-value"}), **{"pitcrew:key": "api_key"}
    )
    token = begin(sm, arn)

    for step in STEPS:
        rotation.run(step, arn, token)

    rotated = json.loads(value(sm, arn, "AWSCURRENT")["SecretString"])
    assert rotated["user"] == "svc"
    assert rotated["api_key"] not in ("old-key-value", "")


def test_a_version_already_current_is_left_alone(sm: Any, rotation: SecretRotation) -> None:
    arn = make_secret(sm, "old-password-value")
    current = value(sm, arn, "AWSCURRENT")["VersionId"]

    for step in STEPS:
        rotation.run(step, arn, current)

    assert value(sm, arn, "AWSCURRENT")["SecretString"] == "old-password-value"


def test_guards_refuse_a_secret_not_ready_for_this_step(
    sm: Any, rotation: SecretRotation, published: list[DomainEvent]
) -> None:
    arn = make_secret(sm, "old-password-value")
    previous = value(sm, arn, "AWSPREVIOUS")["VersionId"]
    turned_off = SecretRotation(
        store=SecretStore(RotationTurnedOff(sm)), publish=lambda *e: published.extend(e)
    )

    with pytest.raises(ConflictError, match="no stage for rotation"):
        rotation.run("createSecret", arn, str(uuid.uuid4()))
    with pytest.raises(ConflictError, match="not staged AWSPENDING"):
        rotation.run("setSecret", arn, previous)
    with pytest.raises(ConflictError, match="rotation is not enabled"):
        turned_off.run("createSecret", arn, previous)
    with pytest.raises(BadRequestError, match="unknown rotation step"):
        rotation.run("deleteSecret", arn, previous)
    # Each refusal is reported as a failed rotation, naming the step; nothing moved.
    assert [(e.name, e.detail["step"]) for e in published] == [
        ("SecretRotationFailed", "createSecret"),
        ("SecretRotationFailed", "setSecret"),
        ("SecretRotationFailed", "createSecret"),
    ]
    assert value(sm, arn, "AWSCURRENT")["SecretString"] == "old-password-value"


def test_a_failed_step_is_reported_with_the_step_and_raised(
    sm: Any, rotation: SecretRotation, published: list[DomainEvent]
) -> None:
    arn = make_secret(sm, "old-endpoint-value", strategy="http")  # no pitcrew:endpoint tag
    token = begin(sm, arn)
    rotation.run("createSecret", arn, token)
    pending = sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"]

    with pytest.raises(BadRequestError, match="pitcrew:endpoint"):
        rotation.run("setSecret", arn, token)

    [failed] = published
    assert failed.name == "SecretRotationFailed"
    assert failed.detail["step"] == "setSecret"
    assert failed.detail["strategy"] == "http"
    assert pending not in json.dumps(failed.detail)
    assert value(sm, arn, "AWSCURRENT")["SecretString"] == "old-endpoint-value"


@pytest.mark.parametrize(
    ("strategy", "problem"),
    [("carrier-pigeon", "pitcrew:rotation='carrier-pigeon' is not one of"), ("", "no tag")],
)
def test_a_secret_without_a_known_strategy_is_refused_and_left_as_it_was(
    sm: Any, rotation: SecretRotation, published: list[DomainEvent], strategy: str, problem: str
) -> None:
    arn = make_secret(sm, "old-password-value", strategy=strategy)
    if not strategy:
        sm.untag_resource(SecretId=arn, TagKeys=["pitcrew:rotation"])
    token = begin(sm, arn)

    # Secrets Manager stops at the failed createSecret; a later step run anyway fails too.
    for step in STEPS:
        with pytest.raises(BadRequestError, match=problem):
            rotation.run(step, arn, token)

    assert [(e.name, e.detail["step"]) for e in published] == [
        ("SecretRotationFailed", step) for step in STEPS
    ]
    assert all(problem in e.detail["error"] for e in published)
    current = value(sm, arn, "AWSCURRENT")
    assert current["SecretString"] == "old-password-value"
    assert current["VersionId"] != token
    # The pending version holds moto's copy of the current value: no new value was made.
    assert sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"] == (
        "old-password-value"
    )


def test_the_password_policy_comes_from_config_then_tags() -> None:
    config = parse_config_text("rotation: {password: {length: 20, exclude_punctuation: true}}")
    assert config.rotation is not None
    policy = config.rotation.password

    plain = password_request(policy, {}, "s")
    tagged = password_request(
        policy,
        {
            "pitcrew:length": "64",
            "pitcrew:exclude-punctuation": "false",
            "pitcrew:exclude-characters": "ab",
        },
        "s",
    )

    assert plain["PasswordLength"] == 20
    assert plain["ExcludePunctuation"] is True
    assert tagged["PasswordLength"] == 64
    assert tagged["ExcludePunctuation"] is False
    assert tagged["ExcludeCharacters"] == "ab"
    with pytest.raises(BadRequestError, match="pitcrew:length"):
        password_request(policy, {"pitcrew:length": "2"}, "s")
    with pytest.raises(BadRequestError, match="pitcrew:include-space"):
        password_request(policy, {"pitcrew:include-space": "perhaps"}, "s")


def test_tag_policy_reaches_get_random_password(sm: Any, rotation: SecretRotation) -> None:
    arn = make_secret(
        sm,
        "old-password-value",
        **{"pitcrew:length": "50", "pitcrew:exclude-punctuation": "true"},
    )
    token = begin(sm, arn)

    rotation.run("createSecret", arn, token)

    created = sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"]
    assert len(created) == 50
    assert created.isalnum()


def test_checks_accept_current_and_pending_only_while_a_rotation_runs(
    sm: Any, rotation: SecretRotation
) -> None:
    arn = make_secret(sm, json.dumps({"secret": "old-webhook-secret"}), **{"pitcrew:key": "secret"})
    store = SecretStore(sm)
    before = current_and_pending(arn, key="secret", store=store)
    token = begin(sm, arn)
    moto_pending = current_and_pending(arn, key="secret", store=store)
    rotation.run("createSecret", arn, token)
    during = current_and_pending(arn, key="secret", store=store)
    for step in STEPS[1:]:
        rotation.run(step, arn, token)
    after = current_and_pending(arn, key="secret", store=store)

    assert before == ["old-webhook-secret"]
    assert moto_pending == ["old-webhook-secret"]  # a pending copy of current adds nothing
    assert during[0] == "old-webhook-secret"
    assert len(during) == 2
    assert after == [during[1]]
