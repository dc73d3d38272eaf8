"""Running handlers in-process the way Lambda runs them: environment, context, timeout, errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitcrew.local import environ
from pitcrew.local.errors import UnknownNameError
from pitcrew.local.functions import FunctionRunner, Functions
from pitcrew.local.provision import LocalFunction

FUNCTIONS = Path(__file__).resolve().parents[1] / "fixtures" / "functions"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


def function(name: str, folder: str = "echo", **overrides: object) -> LocalFunction:
    values: dict[str, object] = {
        "name": name,
        "logical_id": f"{name.title()}Function",
        "function_name": f"pitcrew-{name}",
        "arn": f"{ARN}pitcrew-{name}",
        "code_dir": FUNCTIONS / folder,
        "handler": "app.handler",
        "environment": {"ECHO_NAME": name},
        "timeout": 3,
        "memory": 256,
        "events": {},
    }
    values.update(overrides)
    return LocalFunction(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def scoped_environ() -> Iterator[None]:
    environ.install()
    yield
    environ.uninstall()


def test_handler_gets_its_environment_and_a_lambda_context() -> None:
    runner = FunctionRunner(function("alpha"), region="eu-west-1")

    result = runner.invoke({"hello": "world"})

    assert result.ok, result.payload
    answer = result.payload
    assert answer["event"] == {"hello": "world"}
    assert answer["name"] == "alpha"
    assert answer["loaded_with"] == "alpha"  # the cold start ran inside the Environment
    assert answer["lambda_function_name"] == "pitcrew-alpha"
    context = answer["context"]
    assert context["function_name"] == "pitcrew-alpha"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == f"{ARN}pitcrew-alpha"
    assert context["memory_limit_in_mb"] == "256"
    assert context["aws_request_id"] == result.request_id
    assert context["log_group_name"] == "/aws/lambda/pitcrew-alpha"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 2000 < context["remaining_ms"] <= 3000
    # Nothing leaks out of the invocation into the process.
    assert "ECHO_NAME" not in os.environ


def test_remaining_time_counts_down() -> None:
    runner = FunctionRunner(function("alpha"), region="us-east-1")
    context = runner.new_context()
    first = context.get_remaining_time_in_millis()
    threading.Event().wait(0.05)
    assert context.get_remaining_time_in_millis() <= first - 40


def test_functions_with_the_same_module_name_are_isolated() -> None:
    alpha = FunctionRunner(function("alpha"), region="us-east-1")
    beta = FunctionRunner(function("beta"), region="us-east-1")

    a, b = alpha.invoke({}), beta.invoke({})

    assert a.payload["module"] != b.payload["module"]
    assert (a.payload["loaded_with"], b.payload["loaded_with"]) == ("alpha", "beta")


def test_concurrent_invocations_each_see_their_own_environment() -> None:
    runners = [FunctionRunner(function(n), region="us-east-1") for n in ("alpha", "beta")]
    results: dict[str, object] = {}

    def call(runner: FunctionRunner) -> None:
        results[runner.name] = runner.invoke({"sleep": 0.2, "setenv": runner.name}).payload

    threads = [threading.Thread(target=call, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name in ("alpha", "beta"):
        answer = results[name]
        assert isinstance(answer, dict)
        assert (answer["name"], answer["echo_set"]) == (name, name)
    assert "ECHO_SET" not in os.environ


def test_a_raised_exception_becomes_lambdas_error_object() -> None:
    result = FunctionRunner(function("alpha"), region="us-east-1").invoke({"raise": "no way"})

    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "ValueError"
    assert result.payload["errorMessage"] == "no way"
    assert result.payload["requestId"] == result.request_id
    # The handler's own frames, not the runtime's.
    assert all("pitcrew/local" not in frame for frame in result.payload["stackTrace"])
    assert any("echo/app.py" in frame for frame in result.payload["stackTrace"])


def test_a_handler_past_its_timeout_is_reported_as_timed_out() -> None:
    runner = FunctionRunner(function("alpha", timeout=1), region="us-east-1")

    result = runner.invoke({"sleep": 1.5})

    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert 1000 <= result.duration_ms < 1400


def test_a_slow_cold_start_does_not_count_against_the_timeout() -> None:
    runner = FunctionRunner(function("slow", folder="slowinit", timeout=1), region="us-east-1")

    result = runner.invoke({})

    assert result.ok, result.payload
    assert result.payload["remaining_ms"] > 900  # the deadline started after the imports


def test_an_unserializable_result_is_a_marshal_error() -> None:
    result = FunctionRunner(function("alpha"), region="us-east-1").invoke({"unserializable": True})

    assert result.payload["errorType"] == "Runtime.MarshalError"


def test_import_errors_are_reported_and_retried_on_the_next_invocation() -> None:
    runner = FunctionRunner(function("broken", folder="broken"), region="us-east-1")

    failure = runner.load()
    result = runner.invoke({})

    assert failure is not None
    assert failure.payload["errorType"] == "Runtime.ImportModuleError"
    assert "pitcrew_no_such_module" in failure.payload["errorMessage"]
    assert result.payload["errorType"] == "Runtime.ImportModuleError"


def test_a_missing_handler_attribute_is_reported() -> None:
    runner = FunctionRunner(function("alpha", handler="app.nothing"), region="us-east-1")

    assert runner.invoke({}).payload["errorType"] == "Runtime.HandlerNotFound"


def test_functions_are_found_by_every_name_and_arn() -> None:
    functions = Functions([FunctionRunner(function("alpha"), region="us-east-1")])
    try:
        for key in (
            "alpha",
            "AlphaFunction",
            "pitcrew-alpha",
            f"{ARN}pitcrew-alpha",
            f"{ARN}pitcrew-alpha:$LATEST",
            "pitcrew-alpha:$LATEST",
        ):
            runner = functions.find(key)
            assert runner is not None and runner.name == "alpha", key
        assert functions.find("gamma") is None
        with pytest.raises(UnknownNameError, match="known: alpha"):
            functions.get("gamma")
    finally:
        functions.close()
