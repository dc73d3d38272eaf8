"""github_events: queued GitHub deliveries (the samples in events/github) handled against the
fake GitHub on loopback with the real PyGithub and the emulated stack: fixes merged and
rejected, /pitcrew commands with the permission check, promotion triggers, closing the loop,
and partial batch failures of the Lambda handler."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pitcrew.config import Config, parse_config
from pitcrew.events import DomainEvent
from pitcrew.fixes.deliveries import GithubDeliveries
from pitcrew.fixes.loop import on_incident_reopened, on_incident_resolved
from pitcrew.fixes.triggers import PromotionTriggers
from pitcrew.github import GitHub, connect
from pitcrew.incidents.alerts import parse_webhook, subject_of
from pitcrew.incidents.model import Diagnosis
from pitcrew.incidents.store import IncidentStore
from pitcrew.local.context import LambdaContext
from pitcrew.local.provision import Stack
from pitcrew.promotions.store import PromotionStore
from tests.conftest import harness_client
from tests.support.events import load_event, load_raw
from tests.support.fakegithub import FakeGitHub

REPO = "acme/platform-gitops"
SAMPLE_INCIDENT = "01JD3XK5Q8ZB7N4M2V6W9YT0RC"
NOW = datetime(2024, 11, 19, 8, 31, tzinfo=UTC)
FUNCTION = Path(__file__).resolve().parents[2] / "functions" / "github_events" / "app.py"


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    fake.add_repo(REPO, {"README.md": "gitops\n"})
    try:
        yield fake
    finally:
        fake.stop()


class World:
    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        self.config: Config = parse_config(
            {"github": {"api_url": gh.url, "token": "ghp_fake_token"}, "gitops": {"repo": REPO}}
        )
        assert self.config.github is not None
        self.github: GitHub = connect(self.config.github, seconds_between_writes=None)
        self.store = IncidentStore()
        self.published: list[DomainEvent] = []
        self.deliveries = GithubDeliveries(
            self.config,
            github=self.github,
            store=self.store,
            publish=lambda *events: self.published.extend(events),
            clock=lambda: NOW,
        )

    def incident(self) -> str:
        alert = parse_webhook(load_raw("alertmanager/firing-oom.json")).alerts[0]
        incident, _ = self.store.record_alert(subject_of(alert), alert, NOW)
        sample = load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]
        self.store.save_diagnosis(incident.id, Diagnosis.from_dict(sample), NOW)
        return incident.id

    def pitcrew_issue(self, body: str) -> int:
        return self.github.create_issue(REPO, title="pitcrew", body=body, labels=["pitcrew"]).number


@pytest.fixture
def world(stack: Stack, gh: FakeGitHub) -> World:
    return World(gh)


def payload(name: str, incident_id: str | None = None) -> dict[str, Any]:
    text = (load_raw(f"github/{name}")).decode()
    if incident_id is not None:
        text = text.replace(SAMPLE_INCIDENT, incident_id)
    return dict(json.loads(text))


def comment_payload(body: str, number: int, login: str, issue_body: str) -> dict[str, Any]:
    data = payload("issue_comment-created.json")
    data["comment"]["body"] = body
    data["comment"]["user"]["login"] = login
    data["issue"]["number"] = number
    data["issue"]["body"] = issue_body
    data["repository"]["full_name"] = REPO
    return data


def test_a_merged_fix_is_on_the_timeline_and_published(world: World) -> None:
    incident_id = world.incident()

    outcome = world.deliveries.handle(
        "d-1", "pull_request", payload("pull_request-closed-merged.json", incident_id)
    )

    assert outcome == "fix merged"
    incident = world.store.get(incident_id)
    assert incident.pull_request is not None
    assert incident.pull_request["state"] == "merged"
    assert incident.pull_request["merged_by"] == "marco-platform"
    assert incident.timeline[-1]["event"] == "fix merged"
    (merged,) = world.published
    assert merged.name == "FixPullRequestMerged"
    assert merged.detail["id"] == incident_id


def test_a_fix_closed_without_merging_is_rejected(world: World) -> None:
    incident_id = world.incident()
    outcome = world.deliveries.handle(
        "d-2", "pull_request", payload("pull_request-closed-unmerged.json", incident_id)
    )
    assert outcome == "fix rejected"
    incident = world.store.get(incident_id)
    assert incident.timeline[-1]["event"] == "fix rejected"
    assert incident.pull_request is not None and incident.pull_request["state"] == "closed"
    assert world.published == []


def test_pull_requests_that_are_not_pitcrews_are_ignored(world: World) -> None:
    data = payload("pull_request-closed-merged.json")
    data["pull_request"]["body"] = "a human's change"
    data["pull_request"]["labels"] = []
    assert world.deliveries.handle("d-3", "pull_request", data) == "not a pitcrew pull request"


def test_only_the_gitops_repositorys_pitcrew_items_count(world: World) -> None:
    # An org webhook or a GitHub App delivers for every repository: someone with write
    # access to another one must not merge a fix or approve a promotion from there.
    incident_id = world.incident()
    other = "acme/sandbox"
    world.gh.add_repo(other, {"README.md": "play\n"})
    world.gh.set_permission(other, "mallory", "admin")
    merged = payload("pull_request-closed-merged.json", incident_id)
    merged["repository"]["full_name"] = other
    body = payload("issue_comment-created.json")["issue"]["body"]
    number = world.github.create_issue(other, title="x", body=body, labels=["pitcrew"]).number
    approve = comment_payload("/pitcrew approve", number, "mallory", body)
    approve["repository"]["full_name"] = other
    decisions: list[tuple[str, bool, str, str]] = []
    world.deliveries._decide = lambda *decision: decisions.append(decision)
    world.gh.service.requests.clear()

    assert world.deliveries.handle("d-9", "pull_request", merged).startswith("not in ")
    assert world.deliveries.handle("d-10", "issue_comment", approve).startswith("not in ")

    assert world.store.get(incident_id).pull_request is None
    assert world.published == [] and decisions == []
    assert world.gh.service.requests == []  # not even a permission check


def test_commands_from_users_without_write_access_get_a_polite_refusal(world: World) -> None:
    incident_id = world.incident()
    number = world.pitcrew_issue(f"<!-- pitcrew:incident={incident_id} -->")
    world.gh.set_permission(REPO, "drive-by", "read")

    outcome = world.deliveries.handle(
        "d-4",
        "issue_comment",
        comment_payload(
            "/pitcrew retry", number, "drive-by", f"<!-- pitcrew:incident={incident_id} -->"
        ),
    )

    assert outcome == "refused"
    (reply,) = world.gh.comments(REPO, number)
    assert reply.startswith("Sorry @drive-by") and "write access" in reply
    assert _incident_queue() == []
    permission_checks = world.gh.service.received("GET", f"/repos/{REPO}/collaborators/drive-by")
    assert len(permission_checks) == 1


def test_retry_from_a_maintainer_queues_the_incident_for_diagnosis(world: World) -> None:
    incident_id = world.incident()
    body = f"<!-- pitcrew:incident={incident_id} -->"
    number = world.pitcrew_issue(body)
    world.gh.set_permission(REPO, "lena-sre", "maintain")

    outcome = world.deliveries.handle(
        "d-5", "issue_comment", comment_payload("/pitcrew retry\nplease", number, "lena-sre", body)
    )

    assert outcome == "retry queued"
    assert _incident_queue() == [{"retry": {"incident_id": incident_id}}]
    (reply,) = world.gh.comments(REPO, number)
    assert incident_id in reply
    assert world.store.get(incident_id).timeline[-1]["event"] == "retry requested"


def test_approve_answers_that_no_promotion_awaits_approval(world: World) -> None:
    data = payload("issue_comment-created.json")
    number = world.pitcrew_issue(data["issue"]["body"])
    world.gh.set_permission(REPO, "lena-sre", "write")
    data = comment_payload("/pitcrew approve", number, "lena-sre", data["issue"]["body"])
    PromotionStore().index_pull(REPO, number, "01JD4B7R2Y9K3M5N8P0Q2S4T6V", "prod", "update")

    outcome = world.deliveries.handle("d-6", "issue_comment", data)

    assert outcome == "approve: no promotion awaits approval"
    (reply,) = world.gh.comments(REPO, number)
    assert "01JD4B7R2Y9K3M5N8P0Q2S4T6V" in reply and "nothing awaits approval" in reply


def test_reject_with_a_reason_decides_the_promotions_approval(world: World) -> None:
    decisions: list[tuple[str, bool, str, str]] = []
    world.deliveries._decide = lambda *decision: decisions.append(decision)
    body = payload("issue_comment-created.json")["issue"]["body"]
    number = world.pitcrew_issue(body)
    world.gh.set_permission(REPO, "lena-sre", "admin")
    data = comment_payload("/pitcrew reject error budget spent", number, "lena-sre", body)
    # A copy of the marker on another issue decides nothing.
    assert world.deliveries.handle("d-7", "issue_comment", data) == (
        "reject: not the promotion's pull request"
    )
    assert decisions == []
    PromotionStore().index_pull(REPO, number, "01JD4B7R2Y9K3M5N8P0Q2S4T6V", "prod", "update")

    outcome = world.deliveries.handle("d-8", "issue_comment", data)

    assert outcome == "promotion rejected"
    assert decisions == [
        ("01JD4B7R2Y9K3M5N8P0Q2S4T6V", False, "@lena-sre on GitHub", "error budget spent")
    ]
    refusal, reply = world.gh.comments(REPO, number)
    assert "not the pull request pitcrew opened" in refusal
    assert "rejected promotion" in reply and "error budget spent" in reply


def test_comments_that_are_not_commands_cost_no_github_call(world: World) -> None:
    data = comment_payload("LGTM, thanks /pitcrew", 1, "lena-sre", "<!-- pitcrew:incident=x -->")
    assert world.deliveries.handle("d-7", "issue_comment", data) == "not a command"
    assert world.gh.service.requests == []


def test_releases_and_successful_workflow_runs_are_kept_as_promotion_triggers(
    world: World,
) -> None:
    release = payload("release-published.json")
    run = payload("workflow_run-completed.json")
    failed = copy.deepcopy(run)
    failed["workflow_run"]["conclusion"] = "failure"

    world.deliveries.handle("r-1", "release", release)
    world.deliveries.handle("r-1", "release", release)  # redelivered by SQS
    world.deliveries.handle("w-1", "workflow_run", run)
    assert world.deliveries.handle("w-2", "workflow_run", failed) == "workflow_run is not a trigger"

    repo = release["repository"]["full_name"]
    kept = PromotionTriggers().list(repo)
    assert sorted((t["kind"], t["delivery"]) for t in kept) == [
        ("release", "r-1"),
        ("workflow_run", "w-1"),
    ]
    assert [t["sk"] for t in kept] == sorted(t["sk"] for t in kept)  # oldest first
    by_kind = {t["kind"]: t for t in kept}
    assert by_kind["release"]["version"] == release["release"]["tag_name"]
    assert by_kind["workflow_run"]["head_sha"] == run["workflow_run"]["head_sha"]
    assert all(t["consumed"] is False and t["expires_at"] > 0 for t in kept)


def test_a_trigger_starts_a_promotion_only_for_an_app_the_environments_name(
    world: World,
) -> None:
    release = payload("release-published.json")
    app = release["repository"]["full_name"].rsplit("/", 1)[-1]
    started: list[Mapping[str, Any]] = []

    def start(config: Config, trigger: Mapping[str, Any]) -> str:
        started.append(trigger)
        return "promotion started"

    unknown = world.deliveries.handle("r-1", "release", release)
    assert unknown == f"promotion trigger kept; no environment names {app!r} in images"

    config = parse_config(
        {
            "environments": [
                {
                    "name": "dev",
                    "path": "envs/dev",
                    "health_url": "http://127.0.0.1:9/healthz",
                    "images": {app: f"ghcr.io/acme/{app}"},
                }
            ]
        }
    )
    deliveries = GithubDeliveries(config, store=world.store, start_from_trigger=start)
    assert deliveries.handle("r-2", "release", release) == "promotion started"
    assert [t["delivery"] for t in started] == ["r-2"]
    assert started[0]["version"] == release["release"]["tag_name"]


def test_a_closed_promotion_pull_request_goes_to_its_promotion(world: World) -> None:
    closed: list[tuple[str, int, bool, str]] = []
    deliveries = GithubDeliveries(
        world.config,
        store=world.store,
        promotion_pull_closed=lambda *args: closed.append(args) or "promotion resumed",
    )
    data = payload("pull_request-closed-merged.json")
    data["pull_request"]["body"] = "Bump api to 1.5.0\n<!-- pitcrew:promotion=01JPROMO -->"

    assert deliveries.handle("p-1", "pull_request", data) == "promotion resumed"
    pull = data["pull_request"]
    assert closed == [
        (data["repository"]["full_name"], pull["number"], True, pull["merged_by"]["login"])
    ]


def test_closing_the_loop_on_a_merged_fix(world: World) -> None:
    incident_id = world.incident()
    pull = world.github.create_issue(REPO, title="fix", body="x", labels=["pitcrew"])
    world.store.set_pull_request(
        incident_id, {"repo": REPO, "number": pull.number, "url": pull.url, "state": "merged"}, NOW
    )
    resolved = parse_webhook(
        load_raw("alertmanager/firing-oom.json").replace(b'"firing"', b'"resolved"')
    ).alerts[0]
    incident = world.store.record_resolved(subject_of(resolved), resolved, NOW)
    assert incident is not None and incident.status == "resolved"

    assert on_incident_resolved(incident.as_api(), github=world.github, store=world.store, now=NOW)
    # The alert fires again: the diagnose pipeline reopens the incident and publishes it.
    reopened = world.store.reopen(incident_id, NOW, "the alert fired again")
    assert on_incident_reopened(
        {**reopened.as_api(), "reopened": True}, github=world.github, store=world.store, now=NOW
    )

    resolved_note, refired_note = world.gh.comments(REPO, pull.number)
    assert "resolved" in resolved_note and incident_id in resolved_note
    assert "fired again" in refired_note and "reopened" in refired_note
    events = [e["event"] for e in world.store.get(incident_id).timeline]
    assert "alert resolved after fix" in events and events[-2:] == ["reopened", "fix did not hold"]


def test_the_handler_reports_only_the_failed_message_of_a_batch(stack: Stack) -> None:
    spec = importlib.util.spec_from_file_location("github_events_app", FUNCTION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    batch = load_event("sqs/github-delivery-batch.json")
    good = copy.deepcopy(batch["Records"][0])
    good["messageId"] = "good"
    good["body"] = json.dumps(
        {"delivery": "r-9", "event": "release", "payload": payload("release-published.json")}
    )
    # A command needs the GitHub API, which the local configuration leaves out: it fails,
    # and only it is retried.
    command = comment_payload(
        "/pitcrew retry", 7, "lena-sre", "<!-- pitcrew:incident=01JD3XK5Q8ZB7N4M2V6W9YT0RC -->"
    )
    command["issue"]["labels"] = [{"name": "pitcrew"}]
    bad = copy.deepcopy(good)
    bad["messageId"] = "bad"
    bad["body"] = json.dumps({"delivery": "c-1", "event": "issue_comment", "payload": command})
    # Not a delivery at all: retrying cannot help, so it is kept with the reason at once.
    malformed = copy.deepcopy(good)
    malformed["messageId"] = "malformed"
    malformed["body"] = "{not json"

    context = LambdaContext(
        function_name="pitcrew-github_events",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:pitcrew-github_events",
        memory_limit_in_mb=512,
        timeout_s=30,
        log_group_name="/aws/lambda/pitcrew-github_events",
        log_stream_name="2024/11/19/[$LATEST]0123456789abcdef",
    )

    result = module.handler({"Records": [good, bad, malformed]}, context)

    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    sqs = harness_client("sqs")
    kept = sqs.receive_message(QueueUrl=os.environ["GITHUB_DLQ_URL"], MaxNumberOfMessages=10)
    (message,) = [json.loads(m["Body"]) for m in kept["Messages"]]
    assert message["message"] == "{not json"
    assert "not JSON" in message["reason"]


def _incident_queue() -> list[dict[str, Any]]:
    sqs = harness_client("sqs")
    url = os.environ["INCIDENT_QUEUE_URL"]
    found = []
    for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found.append(json.loads(message["Body"]))
    return found
