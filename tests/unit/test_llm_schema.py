"""pitcrew.llm.schema: the model's answer is read, checked against the schema with problems a
model can act on, and bounded before it becomes a Diagnosis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitcrew.incidents.model import Category
from pitcrew.llm.schema import (
    MAX_EVIDENCE,
    OUTPUT_SCHEMA,
    parse_answer,
    problems_of,
    to_diagnosis,
)

VALID: dict[str, Any] = {
    "category": "oom_killed",
    "root_cause": "The app needs more than its 512Mi memory limit under load.",
    "confidence": 0.9,
    "evidence": ["lastState terminated: OOMKilled, exit code 137"],
    "patch": {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}]
                }
            }
        }
    },
    "summary_line": "api OOMKilled at 512Mi: raise to 1Gi",
}


def test_a_valid_answer_becomes_an_llm_diagnosis() -> None:
    document, problems = parse_answer(json.dumps(VALID))
    assert problems == []
    assert document is not None

    diagnosis = to_diagnosis(
        document, model="gpt-4.1-mini", prompt_tokens=900, completion_tokens=80
    )

    assert diagnosis.category is Category.OOM_KILLED
    assert diagnosis.source == "llm"
    assert diagnosis.patch == VALID["patch"]
    assert diagnosis.as_dict()["tokens"] == {"prompt": 900, "completion": 80}


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + json.dumps(VALID) + "\n```",
        "Here is my analysis:\n" + json.dumps(VALID, indent=2) + "\nLet me know.",
    ],
)
def test_json_wrapped_in_a_fence_or_prose_is_read(text: str) -> None:
    assert parse_answer(text)[1] == []


def test_a_null_patch_is_valid_and_unknown_keys_are_ignored() -> None:
    assert problems_of({**VALID, "patch": None, "reasoning": "..."}) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"category": "disk_full"}, "category must be one of oom_killed, app_crash"),
        ({"confidence": 1.5}, "confidence must be a number from 0 to 1, got 1.5"),
        ({"confidence": "high"}, "confidence must be a number from 0 to 1, got 'high'"),
        ({"confidence": True}, "confidence must be a number from 0 to 1, got True"),
        ({"root_cause": "  "}, "root_cause must be a non-empty string, got an empty string"),
        ({"summary_line": None}, "summary_line must be a non-empty string, got null"),
        ({"evidence": "OOMKilled"}, "evidence must be a list of strings, got a string"),
        ({"evidence": [{"line": 1}]}, "evidence must be a list of strings, got a list with non-"),
        ({"patch": "raise memory"}, "patch must be an object or null, got a string"),
    ],
)
def test_each_schema_violation_is_named(change: dict[str, Any], problem: str) -> None:
    problems = problems_of({**VALID, **change})
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_missing_keys_are_each_named() -> None:
    assert problems_of({"category": "unknown"}) == [
        f"missing key {key!r}" for key in OUTPUT_SCHEMA["required"] if key != "category"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "The pod was OOMKilled.",
            "the answer is not valid JSON (the answer holds no JSON object)",
        ),
        ('{"category": "oom_killed", ', "the answer is not valid JSON"),
        ("[1, 2]", "the answer must be a JSON object, got a list"),
        ("[" * 100_000 + "]" * 100_000, "the answer is not valid JSON (the answer is nested"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "the answer is not valid JSON"),
        ('Here: {"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "the answer is not valid JSON"),
    ],
)
def test_text_that_is_not_an_object_is_refused(text: str, problem: str) -> None:
    document, problems = parse_answer(text)
    assert document is None
    assert problems[0].startswith(problem)


def test_a_rambling_answer_is_bounded() -> None:
    document = {
        **VALID,
        "evidence": [f"line {i} " + "x" * 1000 for i in range(50)] + ["  "],
        "summary_line": "first line\nsecond   line",
    }

    diagnosis = to_diagnosis(document, model=None)

    assert len(diagnosis.evidence) == MAX_EVIDENCE
    assert all(len(line) <= 400 for line in diagnosis.evidence)
    assert diagnosis.summary_line == "first line second line"


def test_a_server_answer_nested_too_deeply_is_a_service_error() -> None:
    import httpx

    from pitcrew.errors import ServiceError
    from pitcrew.llm.providers import OpenAICompatible

    deep = b"[" * 100_000 + b"]" * 100_000
    client = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=deep))
    )
    provider = OpenAICompatible(base_url="http://llm.invalid/v1", model="m", client=client)

    with pytest.raises(ServiceError, match="not a Chat Completions answer"):
        provider.complete([{"role": "user", "content": "hi"}])
