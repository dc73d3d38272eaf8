"""Strategy details that need no server: secret shapes and the errors naming what is wrong,
alternating user names, Vault timestamps, and the guards that keep values out of logs."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from pitcrew.errors import BadRequestError, ConfigError, ServiceError
from pitcrew.observability import SecretWireFilter, register_secret
from pitcrew.rotation.github_webhook import hook_of
from pitcrew.rotation.postgres import Login, _create_member, _set_password, other_user
from pitcrew.rotation.remote import call
from pitcrew.rotation.store import SecretInfo, SecretStore, secret_fields
from pitcrew.rotation.strategy import RotationContext, value_at_key, with_new_value
from pitcrew.rotation.vault import _parse_time, random_value
from tests.support.secret_logs import leaked_values, no_secret_in_logs  # noqa: F401 - autouse


def context(current: str, **tags: str) -> RotationContext:
    secret = SecretInfo(arn="arn:s", name="pitcrew/s", rotation_enabled=True, stages={}, tags=tags)
    return RotationContext(
        secret=secret, token="t", store=SecretStore(client=object()), current=current
    )


def test_alternating_users_swap_between_the_user_and_its_clone() -> None:
    assert other_user("app", "s") == "app_clone"
    assert other_user("app_clone", "s") == "app"
    with pytest.raises(BadRequestError, match="too long"):
        other_user("u" * 60, "s")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "must be a JSON object"),
        (
            json.dumps({"engine": "mysql", "host": "h", "username": "u", "password": "p"}),
            "not postgres",
        ),
        (json.dumps({"engine": "postgres", "username": "u"}), "no host, password"),
        (json.dumps({"host": "h", "username": "u", "password": "p", "port": "x"}), "port"),
    ],
)
def test_a_postgres_secret_of_the_wrong_shape_is_named(text: str, problem: str) -> None:
    with pytest.raises(BadRequestError, match=problem):
        Login.from_secret(text, "pitcrew/db")


def test_a_postgres_secret_reads_like_aws_defaults() -> None:
    login = Login.from_secret(
        json.dumps(
            {
                "engine": "postgres",
                "host": "db",
                "username": "u",
                "password": "pw-123456",
                "ssl": "false",
            }
        ),
        "s",
    )
    assert (login.port, login.dbname, login.ssl) == (5432, "postgres", False)


@pytest.mark.parametrize(("ssl", "expected"), [("True", True), ("require", None), ("1", None)])
def test_only_true_or_false_forces_tls_and_any_other_ssl_text_tries_it(
    ssl: str, expected: bool | None
) -> None:
    # As AWS's rotation functions: "require" must not read as false (no TLS at all).
    secret = {"host": "db", "username": "u", "password": "pw-123456", "ssl": ssl}
    assert Login.from_secret(json.dumps(secret), "s").ssl is expected


def test_json_secrets_rotate_the_named_field_or_say_which_is_missing() -> None:
    document = json.dumps({"user": "svc", "token": "old-token-value"})

    assert json.loads(
        with_new_value(context(document, **{"pitcrew:key": "token"}), "new", "x")
    ) == {
        "user": "svc",
        "token": "new",
    }
    assert with_new_value(context("plain-old-value"), "new", "password") == "new"
    assert value_at_key(context(document), document, "token") == "old-token-value"
    with pytest.raises(BadRequestError, match="pitcrew:key"):
        with_new_value(context(document), "new", "password")


def test_a_webhook_is_found_by_tags_or_json_fields() -> None:
    tagged = context(
        "s3cret-value", **{"pitcrew:github-repo": "acme/app", "pitcrew:github-hook-id": "7"}
    )
    in_json = context(json.dumps({"secret": "x", "repo": "acme/api", "hook_id": 9}))

    assert hook_of(tagged) == ("acme/app", 7)
    assert hook_of(in_json) == ("acme/api", 9)
    with pytest.raises(BadRequestError, match="pitcrew:github-repo"):
        hook_of(
            context(
                "s3cret-value", **{"pitcrew:github-repo": "no-slash", "pitcrew:github-hook-id": "7"}
            )
        )
    with pytest.raises(BadRequestError, match="pitcrew:github-hook-id"):
        hook_of(context("s3cret-value", **{"pitcrew:github-repo": "acme/app"}))


def test_vault_timestamps_with_nanoseconds_are_read() -> None:
    assert _parse_time("2024-11-19T03:00:00.123456789Z") == datetime(
        2024, 11, 19, 3, 0, 0, 123456, tzinfo=UTC
    )
    assert _parse_time("2024-11-19T03:00:00Z") == datetime(2024, 11, 19, 3, tzinfo=UTC)
    assert _parse_time("") is None


def test_random_vault_values_have_the_length_and_differ() -> None:
    first, second = random_value(40), random_value(40)
    assert len(first) == 40
    assert first.isalnum()
    assert first != second


def test_only_credential_fields_are_registered_for_redaction() -> None:
    text = json.dumps(
        {
            "engine": "postgres",
            "host": "db",
            "username": "app",
            "password": "pw-1234",
            "api_key": "k-123456",
        }
    )
    assert sorted(secret_fields(text)) == ["k-123456", "pw-1234"]


def test_botocore_wire_records_carrying_a_secret_value_are_dropped() -> None:
    wire = SecretWireFilter()

    def record(message: str, level: int = logging.DEBUG) -> logging.LogRecord:
        return logging.LogRecord("botocore.parsers", level, __file__, 1, message, None, None)

    assert not wire.filter(record('Response body:\nb\'{"SecretString": "x"}\''))
    assert not wire.filter(record("Making request with params: {'RandomPassword': 'x'}"))
    assert wire.filter(record("Response headers: {'server': 'amazon.com'}"))
    assert wire.filter(record("SecretString mentioned at INFO", logging.INFO))


def test_the_log_check_finds_a_registered_value_in_captured_text() -> None:
    register_secret("leaky-value-for-the-checker")
    assert leaked_values("all fine here") == []
    assert leaked_values("oops leaky-value-for-the-checker") == ["leaky-value-for-the-checker"]


class RecordingConnection:
    """A pg8000 connection as the role statements use it: ``format()`` answered like the
    server would, every statement and parameter kept; ``refuse`` fails statements that
    start with it, as the server does (a DatabaseError of its error fields)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.sent: list[str] = []
        self.refuse = refuse

    def run(self, sql: str, **params: Any) -> Any:
        import pg8000.native

        self.sent += [sql, *map(str, params.values())]
        if sql.startswith("SELECT format("):
            values = iter(params.values())
            quote = {"%I": '"{}"', "%L": "'{}'"}
            template = sql.split("'")[1]
            text = re.sub(r"%[IL]", lambda m: quote[m.group()].format(next(values)), template)
            return [[text]]
        if self.refuse and sql.startswith(self.refuse):
            raise pg8000.native.DatabaseError(
                {"S": "ERROR", "C": "42501", "M": "permission denied to alter role"}
            )
        return []


def test_role_statements_carry_a_scram_verifier_never_the_password() -> None:
    connection = RecordingConnection()

    _set_password(connection, "app", "New-password-0123456789")
    _create_member(connection, "app_clone", "Clone-password-0123456789", "app")

    sent = "\n".join(connection.sent)
    assert 'ALTER ROLE "app" WITH PASSWORD \'SCRAM-SHA-256$4096:' in sent
    assert 'CREATE ROLE "app_clone" WITH LOGIN PASSWORD \'SCRAM-SHA-256$4096:' in sent
    assert "New-password-0123456789" not in sent
    assert "Clone-password-0123456789" not in sent


def test_a_refused_role_statement_is_a_service_error_naming_the_sqlstate() -> None:
    connection = RecordingConnection(refuse="ALTER ROLE")

    with pytest.raises(ServiceError, match=r"changing role app: permission denied .*\(42501\)"):
        _set_password(connection, "app", "New-password-0123456789")


def test_a_bad_endpoint_url_is_a_config_error_without_its_credentials() -> None:
    with pytest.raises(ConfigError, match="http-endpoint: the URL is not valid") as caught:
        call("http-endpoint", "POST", "https://admin:Endpoint-pw-0123@host:xx/rotate", json={})

    assert "Endpoint-pw-0123" not in str(caught.value)
