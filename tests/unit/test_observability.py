"""The secret log filter: a resolved secret never appears in any log output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pitcrew.observability import forget_secrets, instrument, redact, register_secret

SECRET = "s3cr3t-Value-9f8e7d6c"


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_redact_replaces_every_registered_secret() -> None:
    register_secret(SECRET)
    register_secret("another-token-123")
    text = f"token={SECRET} and again {SECRET}; other=another-token-123"
    assert redact(text) == "token=*** and again ***; other=***"


def test_longer_secret_containing_a_shorter_one_is_redacted_whole() -> None:
    register_secret("abcd1234")
    register_secret("xxabcd1234yy")
    assert redact("v=xxabcd1234yy") == "v=***"


def test_values_too_short_to_be_secrets_are_not_registered() -> None:
    register_secret("ab")
    assert redact("a cab ride") == "a cab ride"


def test_url_credentials_are_redacted_without_registration() -> None:
    assert (
        redact("calling https://bot:hunter2@hooks.example.com/x")
        == "calling https://bot:***@hooks.example.com/x"
    )


def test_powertools_logger_never_prints_a_registered_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = instrument("unit-test").logger
    register_secret(SECRET)
    logger.info("resolved %s", SECRET)
    logger.info({"message": "dict message", "value": SECRET})
    logger.append_keys(token=SECRET)
    logger.info("with an extra key")
    logger.remove_keys(["token"])
    try:
        raise RuntimeError(f"failure mentioning {SECRET}")
    except RuntimeError:
        logger.exception("it failed")
    out = capsys.readouterr().out
    assert SECRET not in out
    assert out.count("***") >= 4
    assert "it failed" in out


def test_root_logger_handlers_are_filtered_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        instrument("unit-test-root")  # installs the filter on the root handlers
        register_secret(SECRET)
        logging.getLogger("some.library").warning("header Authorization: Bearer %s", SECRET)
        try:
            raise ValueError(SECRET)
        except ValueError:
            logging.getLogger("some.library").exception("boom")
    finally:
        root.removeHandler(handler)
    output = stream.getvalue()
    assert SECRET not in output
    assert "Bearer ***" in output


def test_botocore_wire_records_with_a_secret_or_parameter_value_never_reach_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    instrument("wire-test")
    secret_body = b'{"ARN": "arn", "Name": "pitcrew/github", "SecretString": "ghp_wire_value"}'
    parameter_body = {"Parameter": {"Name": "/pitcrew/config", "Value": "token: wire-ssm-value"}}
    with caplog.at_level(logging.DEBUG, logger="botocore"):
        logging.getLogger("botocore.parsers").debug("Response body:\n%r", secret_body)
        logging.getLogger("botocore.parsers").debug("Response body:\n%r", parameter_body)
        logging.getLogger("botocore.endpoint").debug("Sending http request: %s", "GetQueueUrl")
    assert "ghp_wire_value" not in caplog.text and "wire-ssm-value" not in caplog.text
    assert "GetQueueUrl" in caplog.text


def test_a_traced_library_is_patched_when_first_imported_not_at_cold_start() -> None:
    # In a Lambda-like process (tracing on): httpx is not loaded for tracing alone, and is
    # patched for X-Ray as soon as something imports it.
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pitcrew.observability import instrument\n"
        "instrument('trace-test', traced=('botocore', 'httpx'))\n"
        "from aws_xray_sdk.core import patcher\n"
        "assert 'httpx' not in sys.modules, 'imported at cold start'\n"
        "assert 'botocore' in patcher._PATCHED_MODULES\n"
        "import httpx\n"
        "assert 'httpx' in patcher._PATCHED_MODULES, patcher._PATCHED_MODULES\n"
    )
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "pitcrew-trace-test",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": "/tmp",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Sampled=0",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
