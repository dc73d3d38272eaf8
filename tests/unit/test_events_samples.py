"""The samples in ``events/`` are shaped like what each source really sends, and agree with
one another, so the tests and demos built on them exercise the real contracts."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import pytest

from pitcrew.events import EventName
from tests.support.events import (
    EVENTS_DIR,
    GITHUB_HEADERS,
    SampleEventNotFoundError,
    available_events,
    github_delivery,
    load_event,
    load_raw,
)

# The set the tests, `pitcrew invoke` and `make demo` rely on: a missing one is a failure,
# not a silently empty parametrization.
EXPECTED_SAMPLES = {
    "alertmanager/firing-crashloop.json",
    "alertmanager/firing-oom.json",
    "alertmanager/firing-storm.json",
    "alertmanager/resolved-crashloop.json",
    "alertmanager/firing-node-not-ready.json",
    "alertmanager/firing-unknown.json",
    "github/headers.json",
    "github/ping.json",
    "github/pull_request-opened.json",
    "github/pull_request-closed-merged.json",
    "github/pull_request-closed-unmerged.json",
    "github/issue_comment-created.json",
    "github/release-published.json",
    "github/workflow_run-completed.json",
    "schedule/cost-tracker-daily.json",
    "schedule/rotate-vault.json",
    "secretsmanager/createSecret.json",
    "secretsmanager/setSecret.json",
    "secretsmanager/testSecret.json",
    "secretsmanager/finishSecret.json",
    "sqs/incident-batch.json",
    "sqs/github-delivery-batch.json",
    "eventbridge/IncidentDiagnosed.json",
    "eventbridge/CostAnomalyDetected.json",
    "eventbridge/PromotionAwaitingApproval.json",
    "stepfunctions/promotion-task.json",
    "stepfunctions/promotion-task-token.json",
}


def samples(folder: str) -> list[str]:
    return [name for name in available_events() if name.startswith(f"{folder}/")]


def stem(name: str) -> str:
    return PurePosixPath(name).stem


def parse_time(value: str) -> datetime:
    # Go writes up to nine fractional digits; Python keeps six.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(value)


def test_every_expected_sample_exists() -> None:
    missing = EXPECTED_SAMPLES - set(available_events())
    assert not missing


@pytest.mark.parametrize("name", available_events())
def test_every_sample_is_a_json_object(name: str) -> None:
    assert isinstance(json.loads(load_raw(name)), dict)


def test_readme_describes_every_folder() -> None:
    readme = (EVENTS_DIR / "README.md").read_text()
    folders = sorted({PurePosixPath(name).parts[0] for name in available_events()})
    assert [f for f in folders if f"`{f}/`" not in readme] == []


# ------------------------------------------------------------------ loader


def test_unknown_sample_names_the_available_ones() -> None:
    with pytest.raises(
        SampleEventNotFoundError, match=re.escape("alertmanager/firing-crashloop.json")
    ):
        load_event("alertmanager/no-such-alert.json")


def test_loader_stays_inside_events() -> None:
    with pytest.raises(SampleEventNotFoundError):
        load_raw("../pyproject.toml")


def test_github_delivery_is_the_exact_body_and_its_headers() -> None:
    body, headers = github_delivery("pull_request-opened.json")
    assert body == load_raw("github/pull_request-opened.json")
    assert headers == load_event(GITHUB_HEADERS)["pull_request-opened.json"]
    assert github_delivery("github/pull_request-opened.json") == (body, headers)


# ------------------------------------------------------------------ alertmanager
ZERO_TIME = "0001-01-01T00:00:00Z"
NOTIFICATION_FIELDS = {
    "receiver",
    "status",
    "alerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "version",
    "groupKey",
    "truncatedAlerts",
}
ALERT_FIELDS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def alertmanager_fingerprint(labels: dict[str, str]) -> str:
    """prometheus/common ``LabelSet.Fingerprint``: FNV-1a 64 over sorted name, value pairs."""
    value = 14695981039346656037
    for name in sorted(labels):
        for byte in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            value = ((value ^ byte) * 1099511628211) % 2**64
    return f"{value:016x}"


def test_fingerprint_matches_prometheus_test_vector() -> None:
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert int(alertmanager_fingerprint(labels), 16) == 5799056148416392346


def shared_items(maps: list[dict[str, str]]) -> dict[str, str]:
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps)}


@pytest.mark.parametrize("name", samples("alertmanager"))
def test_alertmanager_sample_is_a_v4_notification(name: str) -> None:
    body = load_event(name)
    assert set(body) == NOTIFICATION_FIELDS
    assert body["version"] == "4"
    assert body["truncatedAlerts"] == 0
    assert body["receiver"]
    assert body["externalURL"].startswith(("http://", "https://"))
    assert body["alerts"], "Alertmanager never sends an empty group"

    alerts: list[dict[str, Any]] = body["alerts"]
    assert body["commonLabels"] == shared_items([a["labels"] for a in alerts])
    assert body["commonAnnotations"] == shared_items([a["annotations"] for a in alerts])
    assert body["groupLabels"].items() <= body["commonLabels"].items()
    group = ", ".join(f'{k}="{v}"' for k, v in sorted(body["groupLabels"].items()))
    assert body["groupKey"].endswith(f":{{{group}}}")
    any_firing = any(a["status"] == "firing" for a in alerts)
    assert body["status"] == ("firing" if any_firing else "resolved")


@pytest.mark.parametrize("name", samples("alertmanager"))
def test_alertmanager_alerts_are_consistent(name: str) -> None:
    for alert in load_event(name)["alerts"]:
        assert set(alert) == ALERT_FIELDS
        assert alert["labels"]["alertname"]
        assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
        assert alert["fingerprint"] == alertmanager_fingerprint(alert["labels"])
        assert alert["generatorURL"].startswith(("http://", "https://"))
        starts = parse_time(alert["startsAt"])
        if alert["status"] == "firing":
            assert alert["endsAt"] == ZERO_TIME
        else:
            assert alert["status"] == "resolved"
            assert parse_time(alert["endsAt"]) > starts


def test_alertmanager_escapes_like_go() -> None:
    # Alertmanager's Go encoder writes `&` in the generator URL as \u0026.
    raw = load_raw("alertmanager/firing-crashloop.json")
    assert b"\\u0026g0.tab=1" in raw
    assert b"&" not in raw


def test_resolved_crashloop_resolves_the_firing_alerts() -> None:
    firing = load_event("alertmanager/firing-crashloop.json")
    resolved = load_event("alertmanager/resolved-crashloop.json")
    assert resolved["status"] == "resolved"
    assert resolved["groupKey"] == firing["groupKey"]
    assert [(a["fingerprint"], a["startsAt"]) for a in resolved["alerts"]] == [
        (a["fingerprint"], a["startsAt"]) for a in firing["alerts"]
    ]
    assert {a["labels"]["alertname"] for a in firing["alerts"]} == {"KubePodCrashLooping"}


def test_storm_is_one_group_about_one_deployment() -> None:
    alerts = load_event("alertmanager/firing-storm.json")["alerts"]
    crashloops = [a for a in alerts if a["labels"]["alertname"] == "KubePodCrashLooping"]
    mismatch = [a for a in alerts if a["labels"]["alertname"] == "KubeDeploymentReplicasMismatch"]
    assert len(crashloops) >= 3
    assert [a["labels"]["deployment"] for a in mismatch] == ["api"]
    assert all(a["labels"]["pod"].startswith("api-") for a in crashloops)
    assert len({a["fingerprint"] for a in alerts}) == len(alerts)
    assert {a["labels"]["namespace"] for a in alerts} == {"payments"}


# ------------------------------------------------------------------ github
GITHUB_SAMPLES = [name for name in samples("github") if name != GITHUB_HEADERS]
REQUIRED_HEADERS = {
    "Content-Type",
    "User-Agent",
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "X-GitHub-Hook-ID",
}


def github_event_kind(name: str) -> str:
    """``pull_request-closed-merged.json`` -> ``pull_request``."""
    return stem(name).split("-")[0]


def test_every_github_sample_has_headers_and_no_more() -> None:
    headers = load_event(GITHUB_HEADERS)
    assert set(headers) == {PurePosixPath(name).name for name in GITHUB_SAMPLES}


@pytest.mark.parametrize("name", GITHUB_SAMPLES)
def test_github_headers_match_the_payload(name: str) -> None:
    _, headers = github_delivery(name)
    assert not REQUIRED_HEADERS - set(headers)
    assert headers["X-GitHub-Event"] == github_event_kind(name)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert uuid.UUID(headers["X-GitHub-Delivery"])
    assert headers["X-GitHub-Hook-ID"] == str(load_event("github/ping.json")["hook_id"])
    assert not [h for h in headers if h.lower().startswith("x-hub-signature")]


def test_github_deliveries_have_distinct_ids() -> None:
    ids = [h["X-GitHub-Delivery"] for h in load_event(GITHUB_HEADERS).values()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", GITHUB_SAMPLES)
def test_github_payload_is_its_event(name: str) -> None:
    payload = load_event(name)
    kind = github_event_kind(name)
    if kind == "ping":
        assert payload["zen"]
        assert payload["hook"]["id"] == payload["hook_id"]
        return
    assert payload["action"] == stem(name).split("-")[1]
    assert payload["repository"]["full_name"].count("/") == 1
    assert payload["sender"]["login"]
    assert payload["installation"]["id"]
    if kind == "pull_request":
        assert payload["number"] == payload["pull_request"]["number"]
    elif kind == "issue_comment":
        assert payload["issue"]["pull_request"]["url"]
        assert payload["comment"]["body"]
    elif kind == "release":
        assert payload["release"]["tag_name"]
    elif kind == "workflow_run":
        assert payload["workflow_run"]["status"] == "completed"
        assert payload["workflow_run"]["conclusion"]
    else:
        pytest.fail(f"no shape check for GitHub event {kind!r}")


def test_pull_request_samples_tell_merged_from_unmerged() -> None:
    opened = load_event("github/pull_request-opened.json")["pull_request"]
    merged = load_event("github/pull_request-closed-merged.json")["pull_request"]
    unmerged = load_event("github/pull_request-closed-unmerged.json")["pull_request"]
    assert (opened["state"], opened["merged"], opened["merged_at"]) == ("open", False, None)
    assert (merged["state"], merged["merged"]) == ("closed", True)
    assert merged["merged_at"] and merged["merged_by"]
    assert (unmerged["state"], unmerged["merged"], unmerged["merged_at"]) == ("closed", False, None)
    assert opened["base"]["repo"]["full_name"] == "acme/platform-gitops"


def test_issue_comment_is_an_approval_on_a_pull_request() -> None:
    payload = load_event("github/issue_comment-created.json")
    assert payload["comment"]["body"].strip() == "/pitcrew approve"
    assert payload["comment"]["author_association"] in {"OWNER", "MEMBER", "COLLABORATOR"}


# ------------------------------------------------------------------ sqs
SQS_RECORD_FIELDS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}
SQS_ATTRIBUTES = {
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
}


@pytest.mark.parametrize("name", samples("sqs"))
def test_sqs_records_are_real_records(name: str) -> None:
    records = load_event(name)["Records"]
    assert records
    for record in records:
        assert set(record) == SQS_RECORD_FIELDS
        assert record["eventSource"] == "aws:sqs"
        expected_md5 = hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
        assert record["md5OfBody"] == expected_md5
        arn = record["eventSourceARN"].split(":")
        assert arn[:3] == ["arn", "aws", "sqs"]
        assert arn[3] == record["awsRegion"]
        assert not SQS_ATTRIBUTES - set(record["attributes"])
        assert all(isinstance(v, str) for v in record["attributes"].values())
        assert int(record["attributes"]["ApproximateReceiveCount"]) >= 1
    assert len({r["messageId"] for r in records}) == len(records)


def test_incident_batch_carries_the_crashloop_alerts_and_their_group() -> None:
    # Intake packs a delivery's alerts into few messages: {"group": {...}, "alerts": [...]}.
    notification = load_event("alertmanager/firing-crashloop.json")
    bodies = [json.loads(r["body"]) for r in load_event("sqs/incident-batch.json")["Records"]]
    assert [a for b in bodies for a in b["alerts"]] == notification["alerts"]
    for body in bodies:
        assert set(body) == {"alerts", "group"}
        for key in ("receiver", "externalURL", "groupKey", "commonLabels", "truncatedAlerts"):
            assert body["group"][key] == notification[key]


def test_github_delivery_batch_carries_the_merged_delivery() -> None:
    (record,) = load_event("sqs/github-delivery-batch.json")["Records"]
    body = json.loads(record["body"])
    _, headers = github_delivery("pull_request-closed-merged.json")
    assert body == {
        "delivery": headers["X-GitHub-Delivery"],
        "event": headers["X-GitHub-Event"],
        "payload": load_event("github/pull_request-closed-merged.json"),
    }


# ------------------------------------------------------------------ secrets manager
ROTATION_STEPS = {"createSecret", "setSecret", "testSecret", "finishSecret"}


def test_secrets_manager_samples_are_one_rotation() -> None:
    events = {stem(name): load_event(name) for name in samples("secretsmanager")}
    assert set(events) == ROTATION_STEPS
    assert {name: e["Step"] for name, e in events.items()} == {s: s for s in ROTATION_STEPS}
    (secret_id,) = {e["SecretId"] for e in events.values()}
    (token,) = {e["ClientRequestToken"] for e in events.values()}
    assert re.fullmatch(
        r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}", secret_id
    )
    assert uuid.UUID(token)


# ------------------------------------------------------------------ eventbridge
ENVELOPE_FIELDS = {
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
}


def assert_envelope(event: dict[str, Any]) -> None:
    assert set(event) == ENVELOPE_FIELDS
    assert event["version"] == "0"
    assert uuid.UUID(event["id"])
    assert re.fullmatch(r"\d{12}", event["account"])
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", event["region"])
    assert parse_time(event["time"])
    assert isinstance(event["resources"], list)
    assert isinstance(event["detail"], dict)


@pytest.mark.parametrize("name", samples("schedule"))
def test_schedule_samples_are_scheduled_events(name: str) -> None:
    event = load_event(name)
    assert_envelope(event)
    assert (event["detail-type"], event["source"], event["detail"]) == (
        "Scheduled Event",
        "aws.events",
        {},
    )
    (rule,) = event["resources"]
    assert rule.startswith(f"arn:aws:events:{event['region']}:{event['account']}:rule/")


@pytest.mark.parametrize("name", samples("eventbridge"))
def test_domain_event_samples_are_pitcrew_events(name: str) -> None:
    event = load_event(name)
    assert_envelope(event)
    assert event["source"] == "pitcrew"
    assert event["detail-type"] in {e.value for e in EventName}
    assert event["detail-type"] == stem(name)
    assert event["detail"]


def test_incident_diagnosed_carries_the_incident() -> None:
    incident = load_event("eventbridge/IncidentDiagnosed.json")["detail"]
    assert {
        "id",
        "signature",
        "cluster",
        "namespace",
        "workload",
        "status",
        "alerts",
        "first_seen",
        "last_seen",
        "diagnosis",
        "pull_request",
        "timeline",
    } <= set(incident)
    diagnosis = incident["diagnosis"]
    assert {"category", "root_cause", "confidence", "source", "evidence", "patch"} <= set(diagnosis)
    assert diagnosis["category"] in {
        "oom_killed",
        "app_crash",
        "missing_config",
        "image_pull",
        "probe_failure",
        "unschedulable",
        "pvc_pending",
        "rollout_stuck",
        "node_not_ready",
        "job_failed",
        "unknown",
    }
    workload = incident["workload"]
    assert incident["signature"] == "/".join(
        [
            incident["cluster"],
            incident["namespace"],
            workload["kind"],
            workload["name"],
            diagnosis["category"],
        ]
    )


# ------------------------------------------------------------------ step functions
def test_promotion_task_inputs() -> None:
    task = load_event("stepfunctions/promotion-task.json")
    waiting = load_event("stepfunctions/promotion-task-token.json")
    assert set(task) == {"step", "promotion", "execution"}
    assert set(waiting) == {"step", "promotion", "execution", "task_token"}
    assert set(task["promotion"]) == {"id", "app", "version", "environment", "target"}
    assert re.fullmatch(
        r"arn:aws:states:[a-z0-9-]+:\d{12}:execution:[^:]+:[^:]+", task["execution"]
    )
    assert (waiting["promotion"], waiting["execution"]) == (task["promotion"], task["execution"])
    assert waiting["task_token"]
