"""How the postgres strategy connects, against real PostgreSQL servers: one serving TLS with a
certificate from its own CA (as RDS does), one without TLS. ``rotation.postgres.ca_bundle``
makes TLS verify; ``tls: prefer`` falls back to a connection that does not check the server
(TLS if offered, like libpq's sslmode=prefer), saying so; ``tls: require`` never does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pitcrew.config import PostgresRotation, parse_config
from pitcrew.errors import BadRequestError, ConfigError, TransientServiceError
from pitcrew.rotation.postgres import Login, PostgresStrategy
from tests.support.postgres import PostgresServer, postgres_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_server() -> Iterator[PostgresServer]:
    with postgres_server(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def login(server: PostgresServer, **extra: Any) -> Login:
    return Login(server.host, server.port, server.superuser, server.password, "postgres", **extra)


def settings(**raw: Any) -> PostgresRotation:
    config = parse_config({"rotation": {"postgres": raw}})
    assert config.rotation is not None
    return config.rotation.postgres


def encrypted(strategy: PostgresStrategy, server: PostgresServer, **extra: Any) -> bool:
    with strategy.connection(login(server, **extra)) as connection:
        rows = connection.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return bool(rows[0][0])


def test_the_configured_ca_bundle_verifies_the_servers_certificate(
    tls_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert tls_server.ca_pem is not None
    strategy = PostgresStrategy(settings(tls="require", ca_bundle=tls_server.ca_pem))

    assert encrypted(strategy, tls_server)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_prefer_falls_back_to_an_unchecked_connection_and_says_why(
    tls_server: PostgresServer, plain_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The system's store does not know the server's CA (nor RDS's): verification fails.
    strategy = PostgresStrategy(settings())

    assert encrypted(strategy, tls_server)  # TLS still, its certificate unchecked
    assert not encrypted(strategy, plain_server)
    first, second = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "TLS with a verified certificate failed" in first
    assert "certificate verify failed" in first and "ca_bundle" in first
    assert "does not offer TLS" in second


def test_require_never_connects_without_tls(
    tls_server: PostgresServer, plain_server: PostgresServer
) -> None:
    strategy = PostgresStrategy(settings(tls="require"))

    with pytest.raises(TransientServiceError, match="certificate verify failed"):
        encrypted(strategy, tls_server)
    with pytest.raises(TransientServiceError, match="does not offer TLS"):
        encrypted(strategy, plain_server)
    with pytest.raises(
        BadRequestError, match=r"ssl: false, and rotation\.postgres\.tls is require"
    ):
        encrypted(strategy, plain_server, ssl=False)


def test_a_secret_saying_ssl_false_connects_plainly_under_prefer(
    tls_server: PostgresServer,
) -> None:
    assert not encrypted(PostgresStrategy(settings()), tls_server, ssl=False)
    assert encrypted(PostgresStrategy(settings(ca_bundle=tls_server.ca_pem)), tls_server)


def test_a_ca_bundle_that_is_not_pem_is_a_configuration_error(
    tls_server: PostgresServer,
) -> None:
    strategy = PostgresStrategy(settings(ca_bundle="not a certificate"))

    with pytest.raises(ConfigError, match=r"rotation.postgres.ca_bundle: not PEM"):
        encrypted(strategy, tls_server)


def test_the_settings_are_validated_naming_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"rotation.postgres.tls: expected one of prefer, require"
    ):
        settings(tls="always")
