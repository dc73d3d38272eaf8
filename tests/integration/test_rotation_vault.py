"""Vault KV v2 rotation with the real hvac client against a fake Vault on loopback
(``tests/support/fakevault.py``): check-and-set writes, a concurrent writer detected and
left alone, metadata, max_versions, and both ways of logging in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from pitcrew.config import VaultConfig, parse_config_text
from pitcrew.errors import UnauthorizedError
from pitcrew.events import DomainEvent
from pitcrew.rotation.vault import VaultRotation, vault_client
from tests.support.fakevault import FakeVault, Key
from tests.support.secret_logs import no_secret_in_logs, remember  # noqa: F401 - autouse

pytestmark = pytest.mark.integration

NOW = datetime(2024, 11, 19, 3, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
CREDENTIALS = SimpleNamespace(
    access_key="AKIAPITCREWTEST0001",
    secret_key="pitcrew-test-aws-secret-key-0001",
    token="pitcrew-test-aws-session-token-0001",
)


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    fake = FakeVault(clock=lambda: NOW).start()
    fake.roles.add("pitcrew")
    remember(CREDENTIALS.secret_key, CREDENTIALS.token, fake.root_token)
    try:
        yield fake
    finally:
        fake.stop()


def config(vault: FakeVault, auth: str, rotate: str) -> VaultConfig:
    parsed = parse_config_text(
        f"vault: {{url: '{vault.url}', auth: {auth}, kv_mount: secret, rotate: {rotate}}}"
    )
    assert parsed.vault is not None
    return parsed.vault


def rotation(
    vault: FakeVault, rotate: str, published: list[DomainEvent], *, auth: str | None = None
) -> VaultRotation:
    settings = config(vault, auth or f"{{method: token, token: '{vault.root_token}'}}", rotate)
    client = vault_client(settings, credentials=lambda: CREDENTIALS)
    return VaultRotation(
        settings, client=client, clock=lambda: NOW, publish=lambda *e: published.extend(e)
    )


def test_a_due_secret_gets_a_new_value_written_with_check_and_set(vault: FakeVault) -> None:
    vault.put(
        "apps/payments/api-key", {"api_key": "old-api-key-value", "owner": "payments"}, created=OLD
    )
    remember("old-api-key-value")
    published: list[DomainEvent] = []

    [result] = rotation(
        vault, "[{path: apps/payments/api-key, key: api_key, length: 40}]", published
    ).run()

    assert (result.status, result.version) == ("rotated", 2)
    latest = vault.latest("apps/payments/api-key")
    assert latest["owner"] == "payments"
    assert len(latest["api_key"]) == 40
    assert latest["api_key"] != "old-api-key-value"
    # The previous value stays readable for consumers that lag.
    assert vault.version("apps/payments/api-key", 1) == {
        "api_key": "old-api-key-value",
        "owner": "payments",
    }
    [write] = [r for r in vault.service.received("POST", "/v1/secret/data/") if r.json()]
    assert write.json()["options"] == {"cas": 1}
    metadata = vault.keys["apps/payments/api-key"].custom_metadata
    assert metadata["pitcrew-rotated-at"] == "2024-11-19T03:00:00Z"
    assert metadata["pitcrew-rotated-by"] == "pitcrew rotate_vault"
    assert metadata["pitcrew-rotated-version"] == "2"
    [rotated] = published
    assert rotated.name == "SecretRotated"
    assert rotated.detail["secret"] == "apps/payments/api-key"
    assert latest["api_key"] not in json.dumps(rotated.detail)


def test_a_secret_not_yet_due_is_left_alone(vault: FakeVault) -> None:
    vault.put("apps/fresh", {"value": "fresh-value-1234"}, created=NOW - timedelta(days=3))
    published: list[DomainEvent] = []

    [result] = rotation(vault, "[{path: apps/fresh, every_days: 30}]", published).run()

    assert result.status == "skipped"
    assert "due 2024-12-16" in result.reason
    assert vault.latest("apps/fresh") == {"value": "fresh-value-1234"}
    assert vault.service.received("POST", "/v1/secret/data/") == []
    assert published == []


def test_a_concurrent_write_between_read_and_write_is_detected_not_overwritten(
    vault: FakeVault,
) -> None:
    vault.put("apps/raced", {"value": "first-value-1234"}, created=OLD)
    # Another writer lands its value right after pitcrew has read version 1.
    vault.after_read("apps/raced", lambda: vault.put("apps/raced", {"value": "theirs-value-5678"}))
    remember("first-value-1234", "theirs-value-5678")
    published: list[DomainEvent] = []

    [result] = rotation(vault, "[{path: apps/raced}]", published).run()

    assert result.status == "conflict"
    assert "check-and-set parameter did not match the current version" in result.reason
    assert vault.latest("apps/raced") == {"value": "theirs-value-5678"}
    assert vault.keys["apps/raced"].current == 2
    # One attempt, not retried blindly on top of the other writer's value.
    assert len(vault.service.received("POST", "/v1/secret/data/apps/raced")) == 1
    [failed] = published
    assert failed.name == "SecretRotationFailed"
    assert failed.detail["step"] == "write"
    assert failed.detail["store"] == "vault"


def test_one_entry_failing_does_not_stop_the_others(vault: FakeVault) -> None:
    vault.put("apps/ok", {"value": "ok-value-12345"}, created=OLD)
    published: list[DomainEvent] = []

    results = rotation(vault, "[{path: apps/missing}, {path: apps/ok}]", published).run()

    assert [(r.path, r.status) for r in results] == [
        ("apps/missing", "failed"),
        ("apps/ok", "rotated"),
    ]
    assert [e.name for e in published] == ["SecretRotationFailed", "SecretRotated"]


def test_a_key_keeping_one_version_is_raised_to_two_so_the_old_value_survives(
    vault: FakeVault,
) -> None:
    vault.put("apps/single", {"value": "only-value-1234"}, created=OLD)
    vault.keys["apps/single"].max_versions = 1
    vault.keys["apps/single"].custom_metadata = {"team": "payments"}
    vault.keys["apps/single"].delete_version_after = "768h0m0s"

    [result] = rotation(vault, "[{path: apps/single}]", []).run()

    assert result.status == "rotated"
    assert "max_versions raised from 1 to 2" in result.reason
    key = vault.keys["apps/single"]
    assert key.max_versions == 2
    assert vault.version("apps/single", 1) == {"value": "only-value-1234"}
    assert key.custom_metadata["team"] == "payments"
    assert key.delete_version_after == "768h0m0s"


def test_a_mount_keeping_one_version_gets_the_key_two_so_the_old_value_survives(
    vault: FakeVault,
) -> None:
    vault.put("apps/mounted", {"value": "only-value-5678"}, created=OLD)
    vault.mount_max_versions = 1  # the key's own is 0: the mount's applies

    [result] = rotation(vault, "[{path: apps/mounted}]", []).run()

    assert result.status == "rotated"
    assert "max_versions set to 2 (the mount keeps 1)" in result.reason
    assert vault.keys["apps/mounted"].max_versions == 2
    assert vault.version("apps/mounted", 1) == {"value": "only-value-5678"}


def test_a_mount_config_the_token_may_not_read_is_not_checked(vault: FakeVault) -> None:
    vault.put("apps/guarded", {"value": "only-value-9012"}, created=OLD)
    vault.config_readable = False

    [result] = rotation(vault, "[{path: apps/guarded}]", []).run()

    assert result.status == "rotated"
    assert vault.keys["apps/guarded"].max_versions == 0  # left as it was


def test_cas_required_keys_are_written_with_cas(vault: FakeVault) -> None:
    vault.mount_cas_required = True
    vault.put("apps/strict", {"value": "strict-value-1234"}, created=OLD)

    [result] = rotation(vault, "[{path: apps/strict}]", []).run()

    assert result.status == "rotated"


def test_aws_iam_login_signs_get_caller_identity_with_the_function_credentials(
    vault: FakeVault,
) -> None:
    vault.put("apps/iam", {"value": "iam-value-123456"}, created=OLD)

    [result] = rotation(
        vault, "[{path: apps/iam}]", [], auth="{method: aws_iam, role: pitcrew}"
    ).run()

    assert result.status == "rotated"
    assert vault.logins == [{"role": "pitcrew", "access_key": CREDENTIALS.access_key}]


def test_an_unknown_iam_role_is_refused_at_login(vault: FakeVault) -> None:
    settings = config(vault, "{method: aws_iam, role: stranger}", "[{path: apps/x}]")

    with pytest.raises(Exception, match="entry for role stranger not found") as caught:
        vault_client(settings, credentials=lambda: CREDENTIALS)
    assert not isinstance(caught.value, UnauthorizedError) or "stranger" in str(caught.value)


def test_a_wrong_token_is_unauthorized(vault: FakeVault) -> None:
    settings = config(vault, "{method: token, token: hvs.not-a-real-token}", "[{path: apps/x}]")
    client = vault_client(settings)
    rotation_ = VaultRotation(settings, client=client, clock=lambda: NOW, publish=lambda *e: None)

    [result] = rotation_.run()

    assert result.status == "failed"
    assert "permission denied" in result.reason


def test_metadata_vault_refuses_after_the_write_still_counts_as_rotated(
    vault: FakeVault,
) -> None:
    vault.put("apps/crowded", {"value": "crowded-value-1234"}, created=OLD)
    # Vault keeps at most 64 custom_metadata keys: pitcrew's three more are refused.
    vault.keys["apps/crowded"].custom_metadata = {f"team-{n}": "x" for n in range(63)}
    published: list[DomainEvent] = []

    [result] = rotation(vault, "[{path: apps/crowded}]", published).run()

    assert (result.status, result.version) == ("rotated", 2)
    assert "custom_metadata not recorded" in result.reason
    assert "at most 64 keys" in result.reason
    assert vault.latest("apps/crowded")["value"] != "crowded-value-1234"
    assert len(vault.keys["apps/crowded"].custom_metadata) == 63
    assert [e.name for e in published] == ["SecretRotated"]


def test_a_current_version_vault_deleted_is_not_rotated_over(vault: FakeVault) -> None:
    # delete_version_after (24h) shorter than every_days: the value expired before rotation.
    vault.keys["apps/expired"] = Key(delete_version_after="24h0m0s")
    vault.put("apps/expired", {"value": "expired-value-1234", "owner": "payments"}, created=OLD)
    published: list[DomainEvent] = []

    [result] = rotation(vault, "[{path: apps/expired}]", published).run()

    assert result.status == "failed"
    assert "version 1 was deleted at 2024-10-11T03:00:00Z" in result.reason
    assert "delete_version_after 24h0m0s" in result.reason
    assert vault.keys["apps/expired"].current == 1
    assert vault.service.received("POST", "/v1/secret/data/") == []
    assert [(e.name, e.detail["step"]) for e in published] == [("SecretRotationFailed", "rotate")]


def test_the_fake_answers_metadata_and_deleted_versions_as_vault_does(vault: FakeVault) -> None:
    import hvac
    from hvac import exceptions

    client = hvac.Client(url=vault.url, token=vault.root_token)
    kv = client.secrets.kv.v2
    for n in range(3):
        kv.create_or_update_secret(path="apps/shape", secret={"value": f"shape-{n}-1234"})
    # A metadata write changes only what it names and prunes nothing until the next write.
    kv.update_metadata(path="apps/shape", max_versions=2, delete_version_after="1h")
    meta = kv.read_secret_metadata(path="apps/shape")["data"]
    assert (meta["max_versions"], meta["delete_version_after"]) == (2, "1h0m0s")
    assert sorted(meta["versions"]) == ["1", "2", "3"]
    kv.create_or_update_secret(path="apps/shape", secret={"value": "shape-3-1234"})
    meta = kv.read_secret_metadata(path="apps/shape")["data"]
    assert (sorted(meta["versions"]), meta["oldest_version"]) == (["3", "4"], 3)
    assert meta["versions"]["4"]["deletion_time"].startswith("2024-11-19T04:00:00")
    with pytest.raises(exceptions.InvalidRequest, match="at most 64 keys, provided 65"):
        kv.update_metadata(path="apps/shape", custom_metadata={f"k{n}": "v" for n in range(65)})
    # The larger of the key's and the mount's max_versions wins.
    vault.mount_max_versions = 5
    for n in range(3):
        kv.create_or_update_secret(path="apps/shape", secret={"value": f"more-{n}-1234"})
    assert len(vault.keys["apps/shape"].versions) == 5
    # Past its deletion_time a version answers 404 with its metadata and no data.
    vault.clock = lambda: NOW + timedelta(hours=2)
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path="apps/shape", raise_on_deleted_version=True)
    deleted = kv.read_secret_version(path="apps/shape", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None
    assert deleted["data"]["metadata"]["version"] == 7


def _json(value: Any) -> str:
    return json.dumps(value)
