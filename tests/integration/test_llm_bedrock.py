"""pitcrew.llm with provider bedrock: Converse requests and answers checked against botocore's
model of bedrock-runtime by botocore's Stubber on a real client (moto's bedrock-runtime has
InvokeModel only, no Converse)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pitcrew.config import LlmConfig
from pitcrew.incidents.model import Category
from pitcrew.llm import investigate
from pitcrew.llm.investigation import NOTE
from pitcrew.llm.providers import BedrockConverse
from tests.support.fakellm import crashloop_incident

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
LLM = LlmConfig(provider="bedrock", model=MODEL, region="us-east-1", timeout_s=10.0)
SIGNATURE = "prod-eu/payments/Deployment/ledger/app_crash"
GOOD = {
    "category": "app_crash",
    "root_cause": "settle() divides by zero shares.",
    "confidence": 0.8,
    "evidence": ["ZeroDivisionError: division by zero"],
    "patch": None,
    "summary_line": "ledger crashes: ZeroDivisionError in settle()",
}


def converse_reply(text: str, *, tokens: tuple[int, int] = (1800, 90)) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": tokens[0],
            "outputTokens": tokens[1],
            "totalTokens": sum(tokens),
        },
        "metrics": {"latencyMs": 1432},
    }


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def ask(client: Any, sleeps: list[float] | None = None) -> Any:
    subject, context, rules = crashloop_incident()
    provider = BedrockConverse(model=MODEL, region="us-east-1", client=client)
    return investigate(
        subject,
        context,
        rules,
        LLM,
        signature=SIGNATURE,
        provider=provider,
        sleep=(sleeps if sleeps is not None else []).append,
        jitter=lambda: 0.0,
    )


def test_converse_answers_become_the_diagnosis(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    expected = {
        "modelId": MODEL,
        "system": [{"text": ANY}],
        "messages": [{"role": "user", "content": [{"text": ANY}]}],
        "inferenceConfig": {"maxTokens": 1024, "temperature": 0},
    }
    # Models without a JSON mode wrap the object in a fence: it is still read.
    stubber.add_response("converse", converse_reply(f"```json\n{json.dumps(GOOD)}\n```"), expected)

    diagnosis = ask(client)

    assert diagnosis.source == "llm"
    assert diagnosis.category is Category.APP_CRASH
    assert diagnosis.model == MODEL
    assert (diagnosis.prompt_tokens, diagnosis.completion_tokens) == (1800, 90)


def test_the_schema_is_in_the_system_prompt(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.bedrock-runtime.Converse", lambda params, **_: seen.append(params)
    )
    stubber.add_response("converse", converse_reply(json.dumps(GOOD)))

    ask(client)

    system = seen[0]["system"][0]["text"]
    assert (
        '"required":["category","root_cause","confidence","evidence","patch","summary_line"]'
        in system
    )
    assert "ZeroDivisionError" in seen[0]["messages"][0]["content"][0]["text"]


def test_throttling_is_retried_with_backoff(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error(
        "converse", "ThrottlingException", "Too many requests", http_status_code=429
    )
    stubber.add_client_error(
        "converse", "ModelNotReadyException", "Model is not ready", http_status_code=429
    )
    stubber.add_response("converse", converse_reply(json.dumps(GOOD)))
    sleeps: list[float] = []

    diagnosis = ask(client, sleeps)

    assert diagnosis.source == "llm"
    assert sleeps == [0.5, 1.0]


def test_a_permanent_error_falls_back_at_once(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error(
        "converse",
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
        http_status_code=403,
    )
    sleeps: list[float] = []

    diagnosis = ask(client, sleeps)

    assert sleeps == []
    assert diagnosis.source == "rules"
    assert diagnosis.evidence[-1].startswith(f"{NOTE}: bedrock failed: bedrock: AccessDenied")


def test_invalid_twice_falls_back_and_the_retry_alternates_turns(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed
    stubber.add_response("converse", converse_reply("The pod is crashing."))
    retry = {
        "modelId": MODEL,
        "system": ANY,
        "messages": [
            {"role": "user", "content": ANY},
            {"role": "assistant", "content": [{"text": "The pod is crashing."}]},
            {"role": "user", "content": [{"text": ANY}]},
        ],
        "inferenceConfig": ANY,
    }
    stubber.add_response("converse", converse_reply('{"category": "crash"}'), retry)

    diagnosis = ask(client)

    assert diagnosis.source == "rules"
    assert "invalid twice" in diagnosis.evidence[-1]
    assert diagnosis.prompt_tokens == 3600  # both calls recorded
