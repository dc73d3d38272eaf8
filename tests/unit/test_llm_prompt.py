"""pitcrew.llm.prompt and the context hash of pitcrew.llm.cache: what the model is shown, within
``llm.max_prompt_tokens``, and what makes two reports "the same failure"."""

from __future__ import annotations

import copy
import json
import re

import pytest

from pitcrew.incidents.model import ClusterContext, LogExcerpt, MetricSample
from pitcrew.llm.cache import context_hash
from pitcrew.llm.prompt import build_prompt, estimate_tokens, select_log_lines
from tests.support.fakellm import crashloop_incident

ERROR = "2024-11-19T08:00:00Z ERROR [worker] Unhandled exception Traceback (most recent call last):"
TRACE = ['  File "/app/worker.py", line 12, in run', "    job()", "KeyError: 'tenant_id'"]


def long_log(lines: int, error_at: int) -> list[str]:
    log = [
        f"2024-11-19T07:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z INFO [http] GET /api/items/{i} 200 "
        f"in {i % 97} ms request_id={i * 7919:012x}"
        for i in range(lines)
    ]
    log[error_at : error_at + 1 + len(TRACE)] = [ERROR, *TRACE]
    return log[:lines]


@pytest.mark.parametrize("max_tokens", [1500, 2500, 4000, 8000])
def test_the_prompt_stays_within_budget_and_keeps_the_error(max_tokens: int) -> None:
    log = long_log(10_000, 6_000)
    subject, context, rules = crashloop_incident(log=log)

    prompt = build_prompt(subject, context, rules, max_tokens=max_tokens)

    assert prompt.tokens <= max_tokens
    assert ERROR in prompt.user
    assert all(line in prompt.user for line in TRACE)
    assert log[-1] in prompt.user
    assert "lines left out ...]" in prompt.user
    assert "10000 lines" in prompt.user


def test_a_short_log_is_shown_whole() -> None:
    subject, context, rules = crashloop_incident()
    prompt = build_prompt(subject, context, rules, max_tokens=4000)
    assert "left out" not in prompt.user
    assert "ZeroDivisionError: division by zero" in prompt.user


def test_estimate_is_characters_over_four() -> None:
    assert (estimate_tokens(""), estimate_tokens("abcd"), estimate_tokens("abcde")) == (0, 1, 2)


def test_java_stack_traces_are_kept_with_their_causes() -> None:
    log = [f"INFO tick {i}" for i in range(500)]
    log[100:100] = [
        "ERROR o.s.boot.SpringApplication - Application run failed",
        "java.lang.IllegalStateException: Failed to load ApplicationContext",
        "\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:321)",
        "Caused by: java.net.UnknownHostException: postgres.payments.svc",
        "\tat java.base/java.net.InetAddress.getAllByName0(InetAddress.java:1301)",
        "\t... 42 more",
    ]

    chosen = select_log_lines(log, 1200)

    assert sum(len(line) + 1 for line in chosen) <= 1200
    for line in log[100:106]:
        assert line in chosen
    assert chosen[-1] == "INFO tick 499"
    assert any(re.fullmatch(r"\[\.\.\. \d+ lines left out \.\.\.\]", line) for line in chosen)


def test_a_repeated_error_is_shown_once_among_the_errors() -> None:
    log = [f"2024-11-19T07:00:{i % 60:02d}Z ERROR db timeout after {i} ms" for i in range(300)]
    log += [f"INFO tick {i}" for i in range(300)]
    log.insert(10, "FATAL config file /etc/app.yaml missing")

    chosen = select_log_lines(log, 2000)

    assert "FATAL config file /etc/app.yaml missing" in chosen
    assert sum("db timeout" in line for line in chosen) == 1


def test_env_values_volatile_metadata_and_secrets_stay_out() -> None:
    subject, context, rules = crashloop_incident()
    assert context.workload is not None
    context.workload["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    container = context.workload["spec"]["template"]["spec"]["containers"][0]
    container["env"].append(
        {"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "ledger-db", "key": "url"}}}
    )
    context.events.append(
        {
            "type": "Warning",
            "reason": "Failed",
            "message": "Error: connect to postgres://ledger:Ev3ntS3cret@db failed",
            "involvedObject": {"kind": "Pod", "name": "ledger-7c9d8f6b5-x2x7q"},
        }
    )
    context.events.append(
        {"type": "Normal", "reason": "Pulled", "message": "Successfully pulled image"}
    )

    user = build_prompt(subject, context, rules, max_tokens=4000).user

    assert "kx-9f8e7d6c5b4a" not in user  # the value of API_SIGNING_KEY
    assert "Ev3ntS3cret" not in user and "Pr0d-S3cret" not in user
    assert "DB_URL from secret ledger-db/url" in user
    assert "resourceVersion" not in user and "managedFields" not in user
    assert "Successfully pulled" not in user
    assert '"limits":{"memory":"512Mi"}' in user


def test_replicas_failing_alike_are_shown_once() -> None:
    subject, context, rules = crashloop_incident()
    user = build_prompt(subject, context, rules, max_tokens=4000).user
    pods = user.split("## Pods\n", 1)[1].split("\n\n", 1)[0].splitlines()
    (line,) = pods
    assert json.loads(line)["same_state_pods"] == ["ledger-7c9d8f6b5-b8kfp"]
    # The BackOff events of both pods say the same: one line.
    events = user.split("## Warning events\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(events) == 1


def test_an_unreachable_cluster_is_said_with_the_reason() -> None:
    subject, _, rules = crashloop_incident()
    context = ClusterContext(
        cluster="prod-eu", notes=["no cluster 'prod-eu' in the clusters configuration"]
    )

    user = build_prompt(subject, context, rules, max_tokens=4000).user

    assert "could NOT be reached" in user
    assert "no cluster 'prod-eu' in the clusters configuration" in user
    assert "KubePodCrashLooping" in user


def test_metrics_show_usage_against_the_limit() -> None:
    subject, context, rules = crashloop_incident()
    context.metrics = [MetricSample("ledger-1", "app", "memory", 536_870_912, 536_870_912)]
    user = build_prompt(subject, context, rules, max_tokens=4000).user
    assert "ledger-1/app memory: peak 5.36871e+08 bytes, limit 5.36871e+08 bytes (100%)" in user


# --- the context hash --------------------------------------------------------------------------


def test_the_same_failure_reported_again_hashes_the_same() -> None:
    subject, context, _ = crashloop_incident()
    later = copy.deepcopy(context)
    for pod in later.pods:
        pod["status"]["containerStatuses"][0]["restartCount"] += 1
        pod["metadata"]["resourceVersion"] = "2"
    later.events[0]["count"] += 3
    later.events[0]["lastTimestamp"] = "2024-11-19T08:30:00Z"
    later.logs = [
        LogExcerpt(
            pod="ledger-7c9d8f6b5-zz9kq",
            container="app",
            previous=True,
            lines=[line.replace("07:58:02", "08:29:41") for line in context.logs[0].lines],
            total_lines=8,
        )
    ]

    assert context_hash(subject, later) == context_hash(subject, context)


@pytest.mark.parametrize(
    "change",
    ["exit code", "new error", "memory limit"],
)
def test_a_different_failure_hashes_differently(change: str) -> None:
    subject, context, _ = crashloop_incident()
    other = copy.deepcopy(context)
    if change == "exit code":
        terminated = other.pods[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]
        terminated.update(reason="OOMKilled", exitCode=137)
    elif change == "new error":
        other.logs[0].lines = [*other.logs[0].lines, "ERROR [main] KeyError: 'tenant_id'"]
    else:
        assert other.workload is not None
        containers = other.workload["spec"]["template"]["spec"]["containers"]
        containers[0]["resources"]["limits"]["memory"] = "1Gi"

    assert context_hash(subject, other) != context_hash(subject, context)
