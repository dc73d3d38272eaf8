"""The fix flow end to end: the real PyGithub against the fake GitHub REST API on loopback,
incidents in the emulated DynamoDB of template.yaml's stack.

Shown here: one commit on ``pitcrew/fix-<namespace>-<workload>-<short id>`` and a labelled
pull request whose body has the root cause, evidence, the diff, alert links and how to roll
back; the same incident diagnosed twice gives one pull request and one comment; patches
outside the allowlist never reach a commit; safe mode comments on one tracking issue; the
attempt limit; retries of 5xx and rate limits; permanent failures on the incident timeline.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pitcrew.config import Config, parse_config
from pitcrew.errors import PublishError, TransientServiceError
from pitcrew.events import DomainEvent
from pitcrew.fixes.flow import FixFlow
from pitcrew.github import RetryPolicy, connect
from pitcrew.incidents.alerts import Alert, parse_webhook, subject_of
from pitcrew.incidents.model import Diagnosis
from pitcrew.incidents.store import IncidentStore
from pitcrew.local.provision import Stack
from tests.conftest import harness_client
from tests.support.events import load_event, load_raw
from tests.support.fakegithub import FakeGitHub

REPO = "acme/platform-gitops"
TOKEN = "ghp_fake_token"
NOW = datetime(2024, 11, 19, 8, 0, tzinfo=UTC)
MANIFEST = """\
# payments/api: the public API of the payments team.
# Owned by #team-payments; resources tuned 2024-10.
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: payments
spec:
  selector: {app: api}
  ports:
    - port: 80
      targetPort: 8080   # the container's http port
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: payments
  labels:
    app: api
    team: 'payments'
spec:
  replicas: 3  # three zones
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: "ghcr.io/acme/payments-api:1.42.0"
          env:
            - name: LOG_LEVEL
              value: "info"
          resources:
            limits:
              memory: "512Mi"   # raised from 384Mi in October
              cpu: "1"
            requests:
              memory: 384Mi
              cpu: 250m
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
  namespace: payments
spec:
  minAvailable: 2
"""
OTHER_FILES = {
    "README.md": "# platform-gitops\n",
    "apps/payments/worker.yaml": "kind: Deployment\nmetadata: {name: worker}\n",
}


SAMPLE_START = "2024-11-19T07:58:17.204Z"


def oom_alert(*, starts_at: str = SAMPLE_START, status: str = "firing") -> Alert:
    raw = load_raw("alertmanager/firing-oom.json").replace(
        SAMPLE_START.encode(), starts_at.encode()
    )
    return parse_webhook(raw.replace(b'"firing"', f'"{status}"'.encode())).alerts[0]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    gh = FakeGitHub().start()
    gh.add_repo(REPO, {"apps/payments/api.yaml": MANIFEST, **OTHER_FILES})
    clock = Clock()
    gh.clock = clock
    try:
        yield gh
    finally:
        gh.stop()


def make_config(gh: FakeGitHub, **gitops: Any) -> Config:
    return parse_config(
        {
            "github": {"api_url": gh.url, "token": TOKEN},
            "gitops": {"repo": REPO, "safe_mode": False, "max_fix_attempts": 3, **gitops},
        }
    )


class Harness:
    """A FixFlow wired to the fake GitHub and the emulated stack, recording what it did."""

    def __init__(self, gh: FakeGitHub, config: Config) -> None:
        self.gh = gh
        self.published: list[DomainEvent] = []
        self.sleeps: list[float] = []
        self.store = IncidentStore()
        self.clock = Clock()
        self.flow = FixFlow(
            config,
            github=connect(
                config.github,  # type: ignore[arg-type]
                sleep=self.sleeps.append,
                retry=RetryPolicy(attempts=3, base_delay_s=0.5, max_delay_s=30),
                seconds_between_writes=None,
            ),
            store=self.store,
            publish=lambda *events: self.published.extend(events),
            clock=self.clock,
        )

    def diagnosed(
        self, patch: dict[str, Any] | None = None, *, starts_at: str = SAMPLE_START
    ) -> dict[str, Any]:
        """An incident from the sample OOM alert (firing since ``starts_at``), diagnosed with
        the sample diagnosis (or ``patch`` instead of its patch): the IncidentDiagnosed
        detail."""
        alert = oom_alert(starts_at=starts_at)
        incident, _ = self.store.record_alert(subject_of(alert), alert, self.clock())
        sample = load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]
        if patch is not None:
            sample = {**sample, "patch": patch}
        diagnosis = Diagnosis.from_dict(sample)
        return self.store.save_diagnosis(incident.id, diagnosis, self.clock()).as_api()

    def commits(self) -> int:
        return len(self.gh.repo(REPO).commits)


@pytest.fixture
def harness(stack: Stack, github: FakeGitHub) -> Harness:
    return Harness(github, make_config(github))


def the_patch() -> dict[str, Any]:
    return copy.deepcopy(
        load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]["patch"]
    )


def test_a_diagnosis_becomes_one_commit_and_a_labelled_pull_request(harness: Harness) -> None:
    incident = harness.diagnosed()
    before = harness.commits()

    outcome = harness.flow.handle(incident)

    assert outcome.action == "opened", outcome
    (pull,) = harness.gh.pulls(REPO)
    branch = f"pitcrew/fix-payments-api-{incident['id'][:8].lower()}"
    assert pull["pull"] == {"head": branch, "base": "main", "merged": False}
    assert pull["labels"] == ["pitcrew"]
    assert pull["title"].startswith("fix(payments/api): ")
    assert "768Mi" in pull["title"]
    assert harness.commits() == before + 1  # one commit
    repo = harness.gh.repo(REPO)
    commit = repo.commits[repo.refs[f"heads/{branch}"]]
    assert commit["parents"] == [repo.refs["heads/main"]]

    changed = harness.gh.files(REPO, branch)["apps/payments/api.yaml"]
    old_lines, new_lines = MANIFEST.splitlines(), changed.splitlines()
    assert len(old_lines) == len(new_lines)
    differing = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert differing == [
        (
            '              memory: "512Mi"   # raised from 384Mi in October',
            '              memory: "768Mi"   # raised from 384Mi in October',
        ),
        ("              memory: 384Mi", "              memory: 512Mi"),
    ]
    assert harness.gh.files(REPO, "main")["apps/payments/api.yaml"] == MANIFEST

    body = pull["body"]
    for part in (
        "Root cause",
        "OOM killer",
        "Evidence",
        "exitCode=137",
        "```diff",
        '+              memory: "768Mi"',
        "How to roll back",
        "git revert",
        "### Alerts",
        "KubeContainerOOMKilled",
        f"pitcrew:incident={incident['id']}",
    ):
        assert part in body, part

    stored = harness.store.get(incident["id"])
    assert stored.pull_request is not None
    assert stored.pull_request["number"] == pull["number"]
    assert stored.pull_request["state"] == "open"
    (opened,) = harness.published
    assert opened.name == "FixPullRequestOpened"
    assert opened.detail["pull_request"]["url"].endswith(f"/pull/{pull['number']}")


def test_a_manifest_over_a_megabyte_is_read_and_patched(harness: Harness) -> None:
    # Above 1 MB, GitHub's contents API answers "encoding": "none" and no content; the
    # file is read through the Git blobs API instead (a dashboards ConfigMap does that).
    dashboards = (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dashboards\n"
        f"data:\n  api.json: '{'x' * (1024 * 1024 + 10)}'\n"
    )
    harness.gh.add_repo(REPO, {"apps/payments/api.yaml": MANIFEST + dashboards})

    outcome = harness.flow.handle(harness.diagnosed())

    assert outcome.action == "opened", outcome
    (pull,) = harness.gh.pulls(REPO)
    changed = harness.gh.files(REPO, pull["pull"]["head"])["apps/payments/api.yaml"]
    assert changed.endswith(dashboards) and 'memory: "768Mi"' in changed


def test_the_same_incident_diagnosed_twice_gives_one_pull_request_and_one_comment(
    harness: Harness,
) -> None:
    incident = harness.diagnosed()
    assert harness.flow.handle(incident).action == "opened"
    again = harness.flow.handle(harness.store.get(incident["id"]).as_api())

    assert again.action == "commented"
    (pull,) = harness.gh.pulls(REPO)
    comments = harness.gh.comments(REPO, pull["number"])
    assert len(comments) == 1
    assert "diagnosed" in comments[0] and "no second one was opened" in comments[0]
    assert [e.name for e in harness.published] == ["FixPullRequestOpened"]


def test_two_deliveries_racing_announce_their_one_pull_request_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = harness.diagnosed()
    assert harness.flow.handle(incident).action == "opened"
    # The second delivery looked for an open fix before the first had opened it.
    monkeypatch.setattr(harness.flow, "_comment_on_open_fix", lambda incident, repo: None)

    again = harness.flow.handle(incident)

    assert again.action == "opened"
    (pull,) = harness.gh.pulls(REPO)
    assert again.detail == f"pull request #{pull['number']}"
    assert [e.name for e in harness.published] == ["FixPullRequestOpened"]
    timeline = harness.store.get(incident["id"]).timeline
    assert sum(1 for entry in timeline if entry["event"] == "pull_request") == 1


def test_an_event_lost_after_the_pull_request_opened_is_published_by_the_retry(
    harness: Harness,
) -> None:
    incident = harness.diagnosed()
    publish = harness.flow._publish

    def unavailable(*events: DomainEvent) -> None:
        raise PublishError([("FixPullRequestOpened", "EventBridge is unavailable")])

    harness.flow._publish = unavailable
    with pytest.raises(PublishError):
        harness.flow.handle(incident)  # the pull request is open, its event is not out
    harness.flow._publish = publish

    retried = harness.flow.handle(incident)  # Lambda's retry of the same event

    assert retried.action == "opened"
    (pull,) = harness.gh.pulls(REPO)
    assert harness.gh.comments(REPO, pull["number"]) == []  # no "diagnosed again" on a retry
    assert [e.name for e in harness.published] == ["FixPullRequestOpened"]
    assert harness.published[0].detail["pull_request"]["number"] == pull["number"]
    # Out now: a later diagnosis comments on the pull request, as before.
    assert harness.flow.handle(incident).action == "commented"
    assert [e.name for e in harness.published] == ["FixPullRequestOpened"]


@pytest.mark.parametrize(
    ("name", "container_change"),
    [
        ("image change", {"image": "ghcr.io/evil/api:latest"}),
        ("privileged", {"securityContext": {"privileged": True}}),
        ("memory x10", {"resources": {"limits": {"memory": "5120Mi"}}}),
    ],
)
def test_out_of_policy_patches_never_reach_a_commit(
    harness: Harness, name: str, container_change: dict[str, Any]
) -> None:
    patch = the_patch()
    patch["spec"]["template"]["spec"]["containers"] = [{"name": "api", **container_change}]
    incident = harness.diagnosed(patch)
    before = harness.commits()

    outcome = harness.flow.handle(incident)

    assert outcome.action == "refused", name
    assert harness.commits() == before
    assert set(harness.gh.repo(REPO).refs) == {"heads/main"}
    assert harness.gh.pulls(REPO) == [] and harness.gh.issues(REPO) == []
    writes = [r for r in harness.gh.service.requests if r.method in ("POST", "PUT", "PATCH")]
    assert writes == []
    timeline = harness.store.get(incident["id"]).timeline
    assert timeline[-1]["event"] == "fix refused"
    assert harness.published == []


def test_safe_mode_comments_on_one_tracking_issue_per_workload(
    stack: Stack, github: FakeGitHub
) -> None:
    harness = Harness(github, make_config(github, safe_mode=True))
    incident = harness.diagnosed()

    first = harness.flow.handle(incident)
    second = harness.flow.handle(harness.store.get(incident["id"]).as_api())

    assert first.action == second.action == "proposed"
    assert set(github.repo(REPO).refs) == {"heads/main"}  # no branch
    assert github.pulls(REPO) == []
    (tracking,) = github.issues(REPO)
    assert tracking["labels"] == ["pitcrew"]
    assert "proposed fixes for Deployment payments/api" in tracking["title"]
    comments = github.comments(REPO, tracking["number"])
    assert len(comments) == 2
    assert '+              memory: "768Mi"' in comments[0]
    stored = harness.store.get(incident["id"]).pull_request
    assert stored is not None and stored["issue"] == tracking["number"]
    assert harness.published == []


def test_past_the_attempt_limit_one_comment_and_no_pull_request(
    stack: Stack, github: FakeGitHub
) -> None:
    harness = Harness(github, make_config(github, max_fix_attempts=1))
    first = harness.diagnosed()
    assert harness.flow.handle(first).action == "opened"
    (pull,) = github.pulls(REPO)
    github.repo(REPO).issues[pull["number"]]["state"] = "closed"  # rejected by a human
    # The alert resolves, fires again: a new incident for the same workload, same day.
    resolved = oom_alert(status="resolved")
    harness.store.record_resolved(subject_of(resolved), resolved, harness.clock())
    harness.clock.now += timedelta(hours=1)
    second = harness.diagnosed(starts_at="2024-11-19T08:55:02.000Z")
    assert second["id"] != first["id"]

    limited = harness.flow.handle(second)
    again = harness.flow.handle(harness.store.get(second["id"]).as_api())

    assert limited.action == again.action == "limited"
    assert len(github.pulls(REPO)) == 1
    assert len(github.comments(REPO, pull["number"])) == 1  # one comment, not one per try
    events = [e["event"] for e in harness.store.get(second["id"]).timeline]
    assert events.count("fix attempts exhausted") == 1
    failed = [e for e in harness.published if e.name == "FixPullRequestFailed"]
    assert len(failed) == 1 and "the limit is 1" in failed[0].detail["error"]


def test_5xx_and_secondary_rate_limits_are_retried_honouring_retry_after(
    harness: Harness,
) -> None:
    harness.gh.fail("POST", r"/git/trees$", 502, times=2)
    harness.gh.fail(
        "POST",
        r"/pulls$",
        403,
        headers={"Retry-After": "7"},
        message="You have exceeded a secondary rate limit. Please wait a few minutes.",
    )
    incident = harness.diagnosed()

    outcome = harness.flow.handle(incident)

    assert outcome.action == "opened"
    assert harness.sleeps == [0.5, 1.0, 7.0]
    assert len(harness.gh.pulls(REPO)) == 1


def test_a_transient_failure_after_retries_is_recorded_and_raised(harness: Harness) -> None:
    harness.gh.fail("GET", r"/git/ref/heads/main$", 503, times=10)
    incident = harness.diagnosed()

    with pytest.raises(TransientServiceError):
        harness.flow.handle(incident)

    last = harness.store.get(incident["id"]).timeline[-1]
    assert last["event"] == "fix failed" and "503" in last["detail"]
    assert harness.published == []  # retried first: only a permanent failure is announced


def test_a_missing_manifest_is_a_permanent_failure_on_the_timeline(
    stack: Stack, github: FakeGitHub
) -> None:
    harness = Harness(github, make_config(github, repo="acme/platform-gitops"))
    github.add_repo(REPO, {"README.md": "nothing here\n"})
    incident = harness.diagnosed()

    outcome = harness.flow.handle(incident)

    assert outcome.action == "failed"
    last = harness.store.get(incident["id"]).timeline[-1]
    assert last["event"] == "fix failed"
    assert "no manifest for Deployment payments/api" in last["detail"]
    assert "apps/payments/api.yaml" in last["detail"]  # says what was tried
    (failed,) = harness.published
    assert failed.name == "FixPullRequestFailed"
    assert failed.detail["id"] == incident["id"]
    assert "no manifest for Deployment payments/api" in failed.detail["error"]


def test_a_github_app_installation_token_is_minted_and_used(
    stack: Stack, github: FakeGitHub
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    github.tokens.clear()  # only a minted installation token opens the repository
    github.add_app(4242, 5151, key.public_key())
    config = parse_config(
        {
            "github": {
                "api_url": github.url,
                "app": {"app_id": 4242, "private_key": pem, "installation_id": 5151},
            },
            "gitops": {"repo": REPO, "safe_mode": False},
        }
    )
    harness = Harness(github, config)

    outcome = harness.flow.handle(harness.diagnosed())

    assert outcome.action == "opened"
    assert github.minted and all(
        r.header("Authorization") == f"token {github.minted[0]}"
        for r in github.service.requests
        if r.path.startswith("/repos/")
    )


def test_the_handler_is_a_doorway_and_handles_each_event_id_once(stack: Stack) -> None:
    # The local configuration has no github section: the handler says so, and does nothing.
    import importlib.util
    from pathlib import Path

    from pitcrew.local.context import LambdaContext

    path = Path(__file__).resolve().parents[2] / "functions" / "fix_pr" / "app.py"
    spec = importlib.util.spec_from_file_location("fix_pr_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = LambdaContext(
        function_name="pitcrew-fix_pr",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:pitcrew-fix_pr",
        memory_limit_in_mb=512,
        timeout_s=120,
        log_group_name="/aws/lambda/pitcrew-fix_pr",
        log_stream_name="2024/11/19/[$LATEST]0123456789abcdef",
    )
    diagnosed = load_event("eventbridge/IncidentDiagnosed.json")
    resolved = load_event("eventbridge/IncidentResolved.json")

    first = module.handler(diagnosed, context)
    again = module.handler(diagnosed, context)

    assert (
        first
        == again
        == {
            "action": "skipped",
            "detail": "no github/gitops configuration",
            "url": None,
        }
    )
    assert module.handler(resolved, context)["action"] == "skipped"
    reopened = load_event("eventbridge/IncidentOpened.json")
    reopened["id"] = "c0a8d3e2-reopened"
    reopened["detail"]["reopened"] = True
    assert module.handler(reopened, context) == {
        "action": "skipped",
        "detail": "no github configuration",
    }
    table = stack.resolve({"Ref": "IdempotencyTable"})
    records = harness_client("dynamodb").scan(TableName=table)["Items"]
    assert len([r for r in records if r["status"]["S"] == "COMPLETED"]) == 3  # one per id
