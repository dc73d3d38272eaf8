"""The LLM answer cache in the incidents table (moto, provisioned from template.yaml): a storm
of alerts about one failure costs one call, whatever changes between reports that does not
change the failure; a different failure, model or an expired answer asks again."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from pitcrew.config import LlmConfig, Value
from pitcrew.incidents.model import Category, ClusterContext, Diagnosis, Subject
from pitcrew.llm import LlmCache, investigate
from pitcrew.llm.cache import PK_PREFIX
from pitcrew.local.provision import Stack
from pitcrew.stores import Table
from tests.support.fakellm import PREVIOUS_LOG, FakeLLM, crashloop_incident, server_error

SIGNATURE = "prod-eu/payments/Deployment/ledger/app_crash"


class Clock:
    def __init__(self) -> None:
        self.now = 1_732_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    with FakeLLM() as started:
        yield started


@pytest.fixture
def fake(server: FakeLLM) -> FakeLLM:
    server.reset()
    return server


def llm(fake: FakeLLM, model: str = "gpt-4.1-mini") -> LlmConfig:
    return LlmConfig(
        provider="openai",
        base_url=Value(fake.base_url, "llm.base_url", url=True),
        model=model,
        api_key=Value(fake.api_key or "", "llm.api_key", secret=True),
        timeout_s=5.0,
    )


def ask(
    fake: FakeLLM,
    cache: LlmCache,
    incident: tuple[Subject, ClusterContext, Diagnosis],
    *,
    model: str = "gpt-4.1-mini",
) -> Diagnosis:
    subject, context, rules = incident
    return investigate(subject, context, rules, llm(fake, model), signature=SIGNATURE, cache=cache)


def later_report() -> tuple[Subject, ClusterContext, Diagnosis]:
    """The same failure minutes later: another pod of the workload alerting, one more restart,
    new timestamps and ids in the log, new resourceVersions, higher event counts."""
    subject, context, rules = crashloop_incident(restarts=15)
    subject = Subject(**{**subject.__dict__, "pod": "ledger-7c9d8f6b5-b8kfp"})
    pods: list[dict[str, Any]] = copy.deepcopy(context.pods)
    for pod in pods:
        pod["metadata"]["resourceVersion"] = "99999"
        pod["status"]["startTime"] = "2024-11-19T08:20:00Z"
        # Between two restarts the container runs for a moment, then waits again.
        pod["status"]["containerStatuses"][0]["state"] = {
            "running": {"startedAt": "2024-11-19T08:21:00Z"}
        }
    assert context.workload is not None
    context.workload["metadata"]["resourceVersion"] = "918300"
    context.pods = pods
    context.logs[0].lines = [
        line.replace("2024-11-19T07:58", "2024-11-19T08:21").replace("412 accounts", "413 accounts")
        for line in PREVIOUS_LOG
    ]
    return subject, context, rules


def test_a_second_identical_question_is_answered_from_the_cache(
    stack: Stack, fake: FakeLLM
) -> None:
    cache = LlmCache()

    first = ask(fake, cache, crashloop_incident())
    second = ask(fake, cache, crashloop_incident())

    assert fake.calls == 1
    assert first.source == second.source == "llm"
    assert second == first

    table = Table(os.environ["INCIDENTS_TABLE"])
    (item,) = [i for i in table.scan() if i["pk"].startswith(PK_PREFIX)]
    assert item["sk"] == "answer"
    assert len(item["pk"]) == len(PK_PREFIX) + 64
    assert item["expires_at"] - item["created_at"] == 86400
    assert item["diagnosis"]["source"] == "llm"


def test_a_storm_about_one_failure_costs_one_call(stack: Stack, fake: FakeLLM) -> None:
    cache = LlmCache()

    answers = [ask(fake, cache, crashloop_incident()), ask(fake, cache, later_report())]

    assert fake.calls == 1
    assert answers[1] == answers[0]


def test_a_different_failure_asks_again(stack: Stack, fake: FakeLLM) -> None:
    cache = LlmCache()
    ask(fake, cache, crashloop_incident())

    subject, context, rules = crashloop_incident(exit_code=137, reason="OOMKilled")
    rules = Diagnosis(Category.OOM_KILLED, "OOMKilled at 512Mi", 0.9)
    context.logs[0].lines = PREVIOUS_LOG[:3]

    ask(fake, cache, (subject, context, rules))

    assert fake.calls == 2


def test_another_model_asks_again(stack: Stack, fake: FakeLLM) -> None:
    cache = LlmCache()
    ask(fake, cache, crashloop_incident())
    ask(fake, cache, crashloop_incident(), model="gpt-4.1")
    assert fake.calls == 2


def test_an_expired_answer_is_not_used(stack: Stack, fake: FakeLLM) -> None:
    clock = Clock()
    cache = LlmCache(ttl_s=600, clock=clock)
    ask(fake, cache, crashloop_incident())

    clock.now += 599
    ask(fake, cache, crashloop_incident())
    assert fake.calls == 1

    # DynamoDB deletes expired items when it gets round to it: pitcrew checks expires_at.
    clock.now += 2
    ask(fake, cache, crashloop_incident())
    assert fake.calls == 2


def test_a_failing_cache_never_fails_the_diagnosis(stack: Stack, fake: FakeLLM) -> None:
    cache = LlmCache(Table("no-such-table"))

    diagnosis = ask(fake, cache, crashloop_incident())

    assert diagnosis.source == "llm"
    assert fake.calls == 1


def test_by_default_answers_are_cached_on_the_incidents_table(stack: Stack, fake: FakeLLM) -> None:
    subject, context, rules = crashloop_incident()
    config = llm(fake)

    for _ in range(3):
        investigate(subject, context, rules, config, signature=SIGNATURE)
    assert fake.calls == 1

    never = replace(config, cache_ttl_s=0)
    investigate(subject, context, rules, never, signature=SIGNATURE)
    assert fake.calls == 2


def test_rules_fallbacks_are_not_cached(stack: Stack, fake: FakeLLM) -> None:
    cache = LlmCache()
    fake.script(server_error(400))
    assert ask(fake, cache, crashloop_incident()).source == "rules"

    assert ask(fake, cache, crashloop_incident()).source == "llm"
    assert fake.calls == 2
