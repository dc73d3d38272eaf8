"""The test harness: an emulated AWS (moto) per test, the stack of template.yaml provisioned
in it, and the test tiers marked by folder (tests/integration, tests/e2e).

The AWS environment is fixed here, at import, before anything creates a boto3 client: tests
must never reach a real account, a profile or an endpoint set in the developer's shell
(moto's "pesky imports").
"""

from __future__ import annotations

import os

os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
)
for _name in list(os.environ):
    if _name == "AWS_PROFILE" or _name.startswith("AWS_ENDPOINT_URL"):
        del os.environ[_name]

import functools  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import moto  # noqa: E402
import pytest  # noqa: E402

from pitcrew.local.provision import Stack, provision  # noqa: E402
from pitcrew.local.template import Template, load_template  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
LOCAL_CONFIG = REPO / "infra" / "local" / "pitcrew.yaml"
TIERS = {
    "integration": "real libraries over loopback HTTP",
    "e2e": "the running local stack driven from outside",
}


def pytest_configure(config: pytest.Config) -> None:
    for tier, meaning in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {meaning}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from the folder it lives in."""
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in TIERS:
            item.add_marker(folder)


def _reset_pitcrew_caches() -> None:
    """Forget cached clients and configuration: none may outlive the emulator it came from."""
    from pitcrew import aws

    if hasattr(aws, "reset_clients"):
        aws.reset_clients()
    try:
        from pitcrew.config import reset_config_cache
    except ImportError:
        return
    reset_config_cache()


@pytest.fixture
def aws() -> Iterator[None]:
    """An empty emulated AWS (moto, in-process) for the test."""
    with moto.mock_aws():
        _reset_pitcrew_caches()
        yield
    _reset_pitcrew_caches()


@functools.cache
def _harness_session() -> Any:
    return boto3.session.Session()


@functools.cache
def harness_client(service: str) -> Any:
    """A boto3 client for the harness itself. moto intercepts every client created after it
    is imported, so these are made once per test session: building a client costs far more
    than provisioning the whole stack."""
    return _harness_session().client(service, region_name="us-east-1")


@pytest.fixture(scope="session")
def template() -> Template:
    """template.yaml, read once per test session."""
    return load_template()


@pytest.fixture
def stack(aws: None, template: Template, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """template.yaml's stack, provisioned in the test's emulated AWS, with every function's
    environment variables (INCIDENTS_TABLE, EVENT_BUS_NAME, ...) set in ``os.environ`` so
    the code under test finds the resources, and PITCREW_CONFIG set to the local config.

    Rule targets and subscriptions that would invoke a function are left out: moto cannot
    invoke one, and its PutEvents fails when a matching rule has such a target. The rules
    themselves, with their patterns and schedules, are there.
    """
    provisioned = provision(template, client_factory=harness_client, invocation_targets=False)
    for function in provisioned.functions.values():
        for name, value in function.environment.items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PITCREW_CONFIG", str(LOCAL_CONFIG))
    _reset_pitcrew_caches()
    return provisioned
