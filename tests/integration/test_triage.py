"""The diagnose pipeline on the emulated stack: alerts from the incident queue grouped into
incidents, diagnosed once, resolved when their alerts resolve; and the ``diagnose`` handler
with its SQS batch, its process-once guarantee and its dead-letter queue."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pitcrew.config import load_config
from pitcrew.events import DomainEvent
from pitcrew.incidents.alerts import subject_of
from pitcrew.incidents.model import Category, ClusterContext, Diagnosis, Subject
from pitcrew.incidents.store import IncidentStore
from pitcrew.incidents.triage import DIAGNOSIS_GRACE, Triage
from pitcrew.local.context import LambdaContext
from tests.conftest import harness_client
from tests.support.events import load_event

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def crashloop_alert(pod: str, fingerprint: str, *, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "KubePodCrashLooping",
            "cluster": "prod-eu",
            "namespace": "payments",
            "pod": pod,
            "container": "api",
            "reason": "CrashLoopBackOff",
            "severity": "warning",
        },
        "annotations": {"summary": "Pod is crash looping."},
        "startsAt": "2024-11-19T08:14:32.517Z",
        "endsAt": "2024-11-19T08:30:02.517Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def message(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"group": {"receiver": "pitcrew", "groupKey": "{}:{}"}, "alerts": list(alerts)}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 11, 19, 8, 15, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def published() -> list[DomainEvent]:
    return []


@pytest.fixture
def triage(stack: Any, published: list[DomainEvent]) -> Triage:
    return Triage(
        load_config(),
        store=IncidentStore(),
        publish_events=lambda *events: published.extend(events),
        clock=Clock(),
    )


def names(events: list[DomainEvent]) -> list[str]:
    return [str(e.name) for e in events]


def test_a_storm_about_one_workload_is_one_incident_diagnosed_once(
    triage: Triage, published: list[DomainEvent]
) -> None:
    pods = ["api-7c9d8f6b5-x2x7q", "api-7c9d8f6b5-kq4zt", "api-7c9d8f6b5-p9w2m"]
    for index, pod in enumerate(pods):
        for alert in triage.alerts_of(message(crashloop_alert(pod, f"fp{index}"))):
            triage.handle_alert(alert)

    (incident,) = triage.store.list("open")
    assert incident.workload.kind == "Deployment" and incident.workload.name == "api"
    assert incident.alerts == 3
    assert names(published) == ["IncidentOpened", "IncidentDiagnosed"]
    diagnosis = published[-1].detail["diagnosis"]
    # No cluster is configured locally: the rules answer from the alert and say so.
    assert diagnosis["source"] == "rules"
    assert diagnosis["category"] in {c.value for c in Category}
    assert any("cluster" in line.lower() for line in diagnosis["evidence"])
    assert published[-1].detail["signature"].startswith("prod-eu/payments/Deployment/api/")


def test_the_incident_resolves_when_its_last_firing_alert_resolves(
    triage: Triage, published: list[DomainEvent]
) -> None:
    first = crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")
    second = crashloop_alert("api-7c9d8f6b5-kq4zt", "fp2")
    for alert in triage.alerts_of(message(first, second)):
        triage.handle_alert(alert)

    resolved_first = {**first, "status": "resolved", "endsAt": "2024-11-19T08:30:02.517Z"}
    (alert,) = triage.alerts_of(message(resolved_first))
    triage.handle_alert(alert)
    assert triage.store.list("open"), "one alert of the incident still fires"

    resolved_second = {**second, "status": "resolved", "endsAt": "2024-11-19T08:31:02.517Z"}
    (alert,) = triage.alerts_of(message(resolved_second))
    triage.handle_alert(alert)
    (incident,) = triage.store.list("resolved")
    assert incident.status == "resolved" and incident.resolved_at
    assert names(published)[-1] == "IncidentResolved"


def test_an_out_of_policy_patch_from_the_llm_is_dropped_and_the_incident_says_why(
    stack: Any, published: list[DomainEvent]
) -> None:
    workload = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "payments"},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "api",
                            "image": "ghcr.io/acme/api:1.4.2",
                            "resources": {"limits": {"memory": "512Mi"}},
                        }
                    ]
                }
            },
        },
    }

    def gather(subject: Subject, config: Any) -> ClusterContext:
        return ClusterContext(cluster=subject.cluster, reachable=True, workload=workload)

    def investigate(*_args: Any, **_kwargs: Any) -> Diagnosis:
        return Diagnosis(
            category=Category.APP_CRASH,
            root_cause="The image is broken.",
            confidence=0.7,
            source="llm",
            patch={
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "payments"},
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "api", "image": "ghcr.io/acme/api:1.4.1"}]}
                    }
                },
            },
        )

    triage = Triage(
        load_config(),
        store=IncidentStore(),
        gather=gather,
        investigate=investigate,
        publish_events=lambda *events: published.extend(events),
        clock=Clock(),
    )
    for alert in triage.alerts_of(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1"))):
        triage.handle_alert(alert)

    diagnosis = published[-1].detail["diagnosis"]
    assert diagnosis["patch"] is None
    assert "image" in diagnosis["patch_dropped"]


def test_retry_diagnoses_the_incident_again(triage: Triage, published: list[DomainEvent]) -> None:
    for alert in triage.alerts_of(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1"))):
        triage.handle_alert(alert)
    (incident,) = triage.store.list("open")

    incident_id = triage.retry_of({"retry": {"incident_id": incident.id}})
    assert incident_id == incident.id
    triage.retry(incident_id)

    assert names(published) == ["IncidentOpened", "IncidentDiagnosed", "IncidentDiagnosed"]
    events = [entry["event"] for entry in triage.store.get(incident.id).timeline]
    assert "diagnosis requested again" in events


# -- the handler -----------------------------------------------------------------------------


@pytest.fixture
def diagnose(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """functions/diagnose/app.py imported fresh against the emulated stack."""
    monkeypatch.syspath_prepend(str(REPO / "functions" / "diagnose"))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pitcrew-diagnose")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "pitcrew")
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    yield module
    sys.modules.pop("app", None)


def sqs_event(*bodies: str) -> dict[str, Any]:
    sample = load_event("sqs/incident-batch.json")
    template = sample["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"message-{index}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def context() -> LambdaContext:
    return LambdaContext(
        function_name="pitcrew-diagnose",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:pitcrew-diagnose",
        memory_limit_in_mb=1024,
        timeout_s=90,
        log_group_name="/aws/lambda/pitcrew-diagnose",
        log_stream_name="2024/11/19/[$LATEST]0123456789abcdef",
    )


def dead_letters(stack: Any) -> list[dict[str, Any]]:
    sqs = harness_client("sqs")
    url = stack.resolve({"Ref": "IncidentDeadLetterQueue"})
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_the_handler_processes_the_sample_batch_and_each_alert_once(
    diagnose: Any, stack: Any
) -> None:
    event = load_event("sqs/incident-batch.json")

    first = diagnose.handler(event, context())
    again = diagnose.handler(event, context())  # SQS redelivers the same batch

    assert first == {"batchItemFailures": []} and again == {"batchItemFailures": []}
    incidents = IncidentStore().list("all")
    assert len(incidents) == 1
    expected = sum(len(json.loads(r["body"]).get("alerts", [1])) for r in event["Records"])
    assert incidents[0].alerts == expected
    assert incidents[0].diagnosis is not None


def test_a_malformed_message_goes_to_the_dead_letter_queue_with_its_reason(
    diagnose: Any, stack: Any
) -> None:
    good = json.dumps(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")))
    answer = diagnose.handler(sqs_event("{not json", good, json.dumps({"alerts": [{}]})), context())

    assert answer == {"batchItemFailures": []}
    kept = dead_letters(stack)
    assert len(kept) == 2
    assert all(k["reason"].startswith("malformed incident message") for k in kept)
    assert {k["message"] for k in kept} == {"{not json", json.dumps({"alerts": [{}]})}
    assert len(IncidentStore().list("open")) == 1


@pytest.mark.parametrize("body", ["[1]", "null", '"alerts"', '{"retry": {"incident_id": "nope"}}'])
def test_a_message_no_retry_can_fix_is_kept_with_its_reason_at_once(
    diagnose: Any, stack: Any, body: str
) -> None:
    # Not an object, or a retry of an incident that does not exist: retrying five times
    # before the redrive would only lose the reason.
    answer = diagnose.handler(sqs_event(body), context())

    assert answer == {"batchItemFailures": []}
    kept = dead_letters(stack)
    assert [k["message"] for k in kept] == [body]
    assert kept[0]["reason"].startswith(("malformed incident message", "retry of an unknown"))


def test_a_failing_record_is_logged_as_a_warning_with_its_error(
    diagnose: Any, stack: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(incident: Any, subject: Any = None) -> Any:
        raise RuntimeError("the cluster API timed out")

    monkeypatch.setattr(diagnose.triage, "diagnose", broken)
    body = json.dumps(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")))
    good = json.dumps({"alerts": []})

    answer = diagnose.handler(sqs_event(body, good), context())

    assert answer == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    warned = [r for r in caplog.records if r.levelname == "WARNING" and r.exc_info]
    assert warned and "the cluster API timed out" in str(warned[0].exc_info[1])


def test_a_failing_message_is_reported_for_retry_and_the_rest_of_the_batch_is_kept(
    diagnose: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = diagnose.triage.diagnose

    def flaky(incident: Any, subject: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the cluster API timed out")
        return real(incident, subject)

    monkeypatch.setattr(diagnose.triage, "diagnose", flaky)
    bodies = [
        json.dumps(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1"))),
        json.dumps(message(crashloop_alert("worker-5d8f7c9b4-abcde", "fp9"))),
    ]
    answer = diagnose.handler(sqs_event(*bodies), context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}

    # SQS delivers the failed message again: the alert was not marked done, so it is
    # processed, and the incident it opened gets its diagnosis now.
    answer = diagnose.handler(sqs_event(bodies[0]), context())
    assert answer == {"batchItemFailures": []}
    incidents = IncidentStore().list("open")
    assert len(incidents) == 2
    assert all(i.diagnosis is not None for i in incidents)


def test_an_alert_firing_again_after_its_fix_merged_reopens_the_incident(
    triage: Triage, published: list[DomainEvent]
) -> None:
    first = crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")
    (alert,) = triage.alerts_of(message(first))
    triage.handle_alert(alert)
    (incident,) = triage.store.list("open")
    pull = {"repo": "acme/platform-gitops", "number": 42, "url": "u", "state": "merged"}
    triage.store.set_pull_request(incident.id, pull, datetime(2024, 11, 19, 8, 20, tzinfo=UTC))
    (alert,) = triage.alerts_of(message({**first, "status": "resolved"}))
    triage.handle_alert(alert)
    assert triage.store.get(incident.id).status == "resolved"
    published.clear()

    again = {**first, "startsAt": "2024-11-19T09:40:00.000Z"}
    (alert,) = triage.alerts_of(message(again))
    triage.handle_alert(alert)

    reopened = triage.store.get(incident.id)
    assert reopened.status == "open"
    assert [i.id for i in triage.store.list("all")] == [incident.id]
    assert any(e["event"] == "reopened" for e in reopened.timeline)
    assert names(published) == ["IncidentOpened", "IncidentDiagnosed"]
    assert published[0].detail["reopened"] is True  # fix_pr tells the pull request


def test_without_a_merged_fix_a_new_firing_opens_a_new_incident(
    triage: Triage, published: list[DomainEvent]
) -> None:
    first = crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")
    for status in ("firing", "resolved"):
        (alert,) = triage.alerts_of(message({**first, "status": status}))
        triage.handle_alert(alert)
    (alert,) = triage.alerts_of(message({**first, "startsAt": "2024-11-19T09:40:00.000Z"}))
    triage.handle_alert(alert)

    assert len(triage.store.list("all")) == 2
    assert "reopened" not in published[-2].detail


def test_the_incident_keeps_its_alerts_graph_and_runbook_links(
    triage: Triage, published: list[DomainEvent]
) -> None:
    alert = crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")
    alert["annotations"]["runbook_url"] = (
        "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
    )
    for parsed in triage.alerts_of(message(alert, crashloop_alert("api-7c9d8f6b5-kq4zt", "fp2"))):
        triage.handle_alert(parsed)

    (incident,) = triage.store.list("open")
    assert incident.links == [alert["generatorURL"], alert["annotations"]["runbook_url"]]
    assert published[-1].detail["links"] == incident.links


def test_alerts_joining_an_incident_being_diagnosed_leave_the_diagnosis_to_its_opener(
    stack: Any, published: list[DomainEvent]
) -> None:
    gathered: list[str] = []
    clock = Clock()

    def gather(subject: Subject, config: Any) -> ClusterContext:
        gathered.append(subject.pod or "")
        return ClusterContext(cluster=subject.cluster, reachable=False)

    triage = Triage(
        load_config(),
        store=IncidentStore(),
        gather=gather,
        publish_events=lambda *events: published.extend(events),
        clock=clock,
    )
    # Another invocation opened the incident and is diagnosing it right now.
    (opening,) = triage.alerts_of(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")))
    triage.store.record_alert(subject_of(opening), opening, clock())

    for index, pod in enumerate(["api-7c9d8f6b5-kq4zt", "api-7c9d8f6b5-p9w2m"]):
        for alert in triage.alerts_of(message(crashloop_alert(pod, f"fp{index + 2}"))):
            triage.handle_alert(alert)
    assert gathered == []

    # The opener failed: its alert, delivered again, diagnoses the incident.
    triage.handle_alert(opening)
    assert gathered == ["api-7c9d8f6b5-x2x7q"]


def test_an_incident_its_opener_left_undiagnosed_is_diagnosed_by_a_later_alert(
    stack: Any, published: list[DomainEvent]
) -> None:
    clock = Clock()
    triage = Triage(
        load_config(),
        store=IncidentStore(),
        publish_events=lambda *events: published.extend(events),
        clock=clock,
    )
    (opening,) = triage.alerts_of(message(crashloop_alert("api-7c9d8f6b5-x2x7q", "fp1")))
    triage.store.record_alert(subject_of(opening), opening, clock())

    clock.now += DIAGNOSIS_GRACE
    (later,) = triage.alerts_of(message(crashloop_alert("api-7c9d8f6b5-kq4zt", "fp2")))
    triage.handle_alert(later)

    (incident,) = triage.store.list("open")
    assert incident.diagnosis is not None
