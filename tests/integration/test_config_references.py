"""``secret:`` and ``ssm:`` references, and the ``ssm:/name`` config source, against moto:
the real Powertools providers and boto3 clients, no fakes in between."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pitcrew import aws, observability
from pitcrew.config import (
    load_config,
    parse_config,
    reset_config_cache,
    validate_file,
)
from pitcrew.errors import ConfigError, ReferenceError_

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture
def emulated_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE", "PITCREW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # No client or resolved value may outlive the emulator it came from.
    if hasattr(aws, "reset_clients"):
        aws.reset_clients()
    reset_config_cache()
    with mock_aws():
        yield
    if hasattr(aws, "reset_clients"):
        aws.reset_clients()
    reset_config_cache()
    observability.forget_secrets()


def boto(service: str, region: str = REGION) -> Any:
    return boto3.client(service, region_name=region)


def test_secret_reference_resolves_the_secret_string_and_redacts_it(emulated_aws: None) -> None:
    boto("secretsmanager").create_secret(Name="pitcrew/github", SecretString="ghp_integration")
    config = parse_config({"github": {"token": "secret:pitcrew/github"}})
    assert config.github is not None and config.github.token is not None

    assert config.github.token.get() == "ghp_integration"
    assert observability.redact("token ghp_integration sent") == "token *** sent"


def test_secret_hash_key_picks_one_key_of_a_json_secret(emulated_aws: None) -> None:
    boto("secretsmanager").create_secret(
        Name="pitcrew/vault", SecretString=json.dumps({"token": "hvs.abc", "note": "x"})
    )
    config = parse_config(
        {
            "vault": {
                "url": "https://vault:8200",
                "auth": {"method": "token", "token": "secret:pitcrew/vault#token"},
            }
        }
    )
    assert config.vault is not None and config.vault.auth.token is not None
    assert config.vault.auth.token.get() == "hvs.abc"


def test_a_secret_arn_is_read_in_the_region_of_the_arn(emulated_aws: None) -> None:
    arn = boto("secretsmanager", "eu-west-1").create_secret(
        Name="pitcrew/slack", SecretString="https://hooks.slack.com/services/T/B/eu"
    )["ARN"]
    config = parse_config({"notifications": [{"type": "slack", "webhook_url": f"secret:{arn}"}]})
    assert config.notifications is not None and config.notifications[0].webhook_url is not None
    assert config.notifications[0].webhook_url.get() == "https://hooks.slack.com/services/T/B/eu"


def test_a_missing_secret_names_the_key_and_the_reference(emulated_aws: None) -> None:
    config = parse_config({"alertmanager": {"token": "secret:pitcrew/absent"}})
    assert config.alertmanager is not None
    with pytest.raises(ReferenceError_) as info:
        config.alertmanager.token.get()
    assert info.value.key == "alertmanager.token"
    assert info.value.reference == "secret:pitcrew/absent"
    assert "ResourceNotFoundException" in str(info.value)


def test_ssm_reference_resolves_a_decrypted_secure_string(emulated_aws: None) -> None:
    boto("ssm").put_parameter(Name="/pitcrew/api-token", Value="op-token", Type="SecureString")
    config = parse_config({"api": {"token": "ssm:/pitcrew/api-token"}})
    assert config.api is not None and config.api.token is not None
    assert config.api.token.get() == "op-token"


def test_a_missing_ssm_parameter_names_the_key(emulated_aws: None) -> None:
    config = parse_config({"prometheus": {"url": "ssm:/pitcrew/prometheus-url"}})
    assert config.prometheus is not None
    with pytest.raises(ReferenceError_) as info:
        config.prometheus.url.get()
    assert info.value.key == "prometheus.url"
    assert "ParameterNotFound" in str(info.value)


CONFIG_IN_SSM = """
alertmanager:
  token: secret:pitcrew/alertmanager
gitops:
  repo: acme/platform-gitops
"""


def test_the_config_itself_can_come_from_ssm(
    emulated_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto("ssm").put_parameter(Name="/pitcrew/config", Value=CONFIG_IN_SSM, Type="String")
    boto("secretsmanager").create_secret(Name="pitcrew/alertmanager", SecretString="am-token")
    monkeypatch.setenv("PITCREW_CONFIG", "ssm:/pitcrew/config")

    config = load_config()
    assert config.source == "ssm:/pitcrew/config"
    assert config.gitops is not None and config.gitops.repo == "acme/platform-gitops"
    assert config.alertmanager is not None
    assert config.alertmanager.token.get() == "am-token"
    assert validate_file(None) == ([], "ssm:/pitcrew/config")


def test_an_invalid_config_in_ssm_reports_its_problems(emulated_aws: None) -> None:
    boto("ssm").put_parameter(Name="/pitcrew/config", Value="llm: {provider: gpt}", Type="String")
    with pytest.raises(ConfigError) as info:
        load_config("ssm:/pitcrew/config")
    assert info.value.problems == ["llm.provider: expected one of none, openai, bedrock, got 'gpt'"]
    assert info.value.source == "ssm:/pitcrew/config"


def test_a_missing_config_parameter_is_one_problem(emulated_aws: None) -> None:
    problems, source = validate_file("ssm:/pitcrew/missing")
    assert source == "ssm:/pitcrew/missing"
    assert len(problems) == 1
    assert "'ssm:/pitcrew/missing'" in problems[0] and "ParameterNotFound" in problems[0]
