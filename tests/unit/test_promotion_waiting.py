"""What "rolled out" means for a Deployment, an Argo CD Application and a Flux Kustomization;
the heartbeats the scheduled health check sends for waiting approvals, and the promotions it
ends when their execution ended without saying so (on template.yaml's table and moto's Step
Functions); and the state machine's contract with template.yaml."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pitcrew.config import parse_config_text
from pitcrew.events import DomainEvent
from pitcrew.local.template import Template
from pitcrew.promotions.health import EXECUTIONS_ENV, NEVER_STARTED_AFTER_S, longest_promotion_s
from pitcrew.promotions.rollout import (
    argocd_state,
    deployment_rollout,
    flux_state,
    revision_sha,
    split_image,
)
from pitcrew.promotions.steps import PromotionSteps
from pitcrew.promotions.store import (
    AWAITING_APPROVAL,
    RUNNING,
    Promotion,
    PromotionStore,
    iso,
    new_id,
)
from tests.conftest import harness_client
from tests.support.fakekube import container, deployment

ASL = Path(__file__).resolve().parents[2] / "infra" / "statemachines" / "promotion.asl.json"


def rolling(
    image: str = "ghcr.io/acme/api:v2",
    *,
    generation: int = 3,
    observed: int = 3,
    replicas: int = 3,
    updated: int = 3,
    available: int = 3,
    total: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    found = deployment("api", "shop", replicas=replicas, containers=[container("api", image)])
    found["metadata"]["generation"] = generation
    found["status"].update(
        observedGeneration=observed,
        updatedReplicas=updated,
        availableReplicas=available,
        replicas=replicas if total is None else total,
    )
    if conditions is not None:
        found["status"]["conditions"] = conditions
    return found


@pytest.mark.parametrize(
    ("found", "done", "failed", "said"),
    [
        (rolling(), True, False, "rolled out v2"),
        (rolling("ghcr.io/acme/api:v1"), False, False, "runs ghcr.io/acme/api:v1, not v2 yet"),
        (rolling(generation=4), False, False, "has not seen the new template"),
        (rolling(updated=1, total=3), False, False, "1 of 3 replicas updated"),
        (rolling(total=4), False, False, "1 old replicas pending termination"),
        (rolling(available=2), False, False, "2 of 3 updated replicas available"),
        (
            rolling(
                updated=1,
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "api-7d9" has timed out progressing.',
                    }
                ],
            ),
            False,
            True,
            "ProgressDeadlineExceeded: ReplicaSet",
        ),
    ],
)
def test_a_deployment_is_rolled_out_like_kubectl_rollout_status_says(
    found: dict[str, Any], done: bool, failed: bool, said: str
) -> None:
    rollout = deployment_rollout(found, "api", "v2", None)
    assert (rollout.done, rollout.failed) == (done, failed), rollout
    assert said in rollout.detail
    assert rollout.detail.startswith("Deployment shop/api")


def test_an_old_progress_deadline_does_not_fail_a_template_not_yet_updated() -> None:
    stale = rolling(
        "ghcr.io/acme/api:v1",
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    rollout = deployment_rollout(stale, "api", "v2", None)
    assert (rollout.done, rollout.failed) == (False, False)


def test_the_version_is_read_from_the_apps_image_not_a_sidecar() -> None:
    found = deployment(
        "api",
        "shop",
        containers=[container("proxy", "envoyproxy/envoy:v2"), container("api", "r:5000/x/api:v1")],
    )
    assert not deployment_rollout(found, "api", "v2", None).done
    # An image named in the configuration is the app's whatever its last segment.
    named = deployment("api", "shop", containers=[container("web", "ghcr.io/acme/web-api:v2")])
    assert deployment_rollout(named, "api", "v2", "ghcr.io/acme/web-api").done
    assert split_image("r:5000/x/api:v1@sha256:ab") == ("r:5000/x/api", "v1")
    assert split_image("r:5000/x/api") == ("r:5000/x/api", None)


def application(sync: str, health: str, message: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "api", "namespace": "argocd"},
        "status": {"sync": {"status": sync}, "health": {"status": health, "message": message}},
    }


def test_argo_cd_synced_and_healthy_degraded_fails_fast() -> None:
    assert argocd_state(application("Synced", "Healthy")).done
    waiting = argocd_state(application("OutOfSync", "Progressing"))
    assert (waiting.done, waiting.failed) == (False, False)
    assert "is OutOfSync and Progressing" in waiting.detail
    degraded = argocd_state(application("Synced", "Degraded", "Deployment exceeded its deadline"))
    assert degraded.failed
    assert "Degraded: Deployment exceeded its deadline" in degraded.detail


def test_flux_ready_at_the_merged_revision() -> None:
    def kustomization(ready: str, revision: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "status": {
                "conditions": [{"type": "Ready", "status": ready, "reason": "Progressing"}],
                "lastAppliedRevision": revision,
            },
        }

    merged = "a1b2c3"
    applied = lambda revision: revision_sha(revision) == merged  # noqa: E731
    assert flux_state(kustomization("True", "main@sha1:a1b2c3"), applied).done
    behind = flux_state(kustomization("True", "main@sha1:000000"), applied)
    assert not behind.done and "not the merge yet" in behind.detail
    assert not flux_state(kustomization("False", "main@sha1:a1b2c3"), applied).done
    assert revision_sha("main/a1b2c3") == revision_sha("a1b2c3") == "a1b2c3"


# -- heartbeats --------------------------------------------------------------------------------


class HeartbeatSfn:
    """Step Functions as the heartbeats see it: tokens in ``gone`` belong to tasks that timed
    out; everything sent is kept."""

    class exceptions:  # boto3's shape
        class TaskTimedOut(Exception):
            pass

        class TaskDoesNotExist(Exception):
            pass

        class InvalidToken(Exception):
            pass

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.heartbeats: list[str] = []

    def send_task_heartbeat(self, *, taskToken: str) -> dict[str, Any]:
        if taskToken in self.gone:
            raise self.exceptions.TaskTimedOut(taskToken)
        self.heartbeats.append(taskToken)
        return {}


def awaiting(store: PromotionStore, token: str) -> Promotion:
    promotion = Promotion(
        id=new_id(),
        app="api",
        version="v2",
        target="prod",
        plan=["prod"],
        created_at=iso(time.time()),
        status=AWAITING_APPROVAL,
        environment="prod",
    )
    store.create(promotion)
    store.keep_token(promotion.id, "approval", token, environment="prod")
    return promotion


@pytest.mark.usefixtures("stack")
def test_the_scheduled_health_check_sends_a_heartbeat_for_every_waiting_approval() -> None:
    store = PromotionStore()
    first, second, lost = (awaiting(store, t) for t in ("token-1", "token-2", "token-lost"))
    decided = awaiting(store, "token-decided")
    assert store.take_token(decided.id, "approval") == "token-decided"  # approved meanwhile
    sfn = HeartbeatSfn(gone={"token-lost"})
    steps = PromotionSteps(parse_config_text(""), store=store, sfn=sfn, publish=lambda *e: None)

    result = steps.handle({"step": "health_check"})

    assert sorted(sfn.heartbeats) == ["token-1", "token-2"]
    assert result["heartbeats"] == {"sent": 2, "gone": 1, "failed": []}
    assert result["environments"] == {}
    # The timed-out task's token is dropped; the others still wait, and get the next beat.
    assert sorted(store.waiting()) == sorted([(first.id, "approval"), (second.id, "approval")])
    assert store.peek_token(lost.id, "approval") is None
    steps.handle({"step": "health_check"})
    assert sorted(sfn.heartbeats) == ["token-1", "token-1", "token-2", "token-2"]


# -- promotions whose execution ended without saying so ----------------------------------------

# A state machine that only waits: its executions run until they are stopped.
WAITING_DEFINITION = {
    "StartAt": "Wait",
    "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}},
}


def running_promotion(
    store: PromotionStore, app: str, *, execution: str | None, age_s: float = 0
) -> Promotion:
    now = time.time() - age_s
    promotion = Promotion(
        id=new_id(now),
        app=app,
        version="v2",
        target="prod",
        plan=["staging", "prod"],
        created_at=iso(now),
        status=RUNNING,
        environment="staging",
        execution=execution,
    )
    store.create(promotion)
    store.lock(app, "staging", promotion.id, ttl_s=3600)
    return promotion


def start_execution(name: str) -> str:
    sfn = harness_client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"waits-{name}",
        definition=json.dumps(WAITING_DEFINITION),
        roleArn="arn:aws:iam::123456789012:role/pitcrew-promotion",
    )["stateMachineArn"]
    return str(sfn.start_execution(stateMachineArn=machine, name=name)["executionArn"])


@pytest.mark.usefixtures("stack")
def test_a_promotion_whose_execution_was_stopped_is_failed_and_unlocked_once() -> None:
    store = PromotionStore()
    published: list[DomainEvent] = []
    steps = PromotionSteps(
        parse_config_text(""), store=store, publish=lambda *e: published.extend(e)
    )
    execution = start_execution("stopped")
    stopped = running_promotion(store, "payments", execution=execution)
    still = running_promotion(store, "orders", execution=start_execution("still-running"))
    harness_client("stepfunctions").stop_execution(
        executionArn=execution, error="Operator", cause="stopped by hand"
    )

    result = steps.handle({"step": "health_check"})

    assert result["reconciled"] == {"ended": [stopped.id], "failed": []}
    ended = store.get(stopped.id)
    assert ended.status == "failed"
    assert ended.reason is not None and "aborted" in ended.reason
    assert store.lock_holder("payments", "staging") is None
    assert store.lock_holder("orders", "staging") == still.id
    assert store.get(still.id).status == RUNNING
    [failed] = published
    assert failed.name == "PromotionFailed"
    assert failed.detail["promotion"]["id"] == stopped.id
    assert failed.detail["execution"] == execution

    again = steps.handle({"step": "health_check"})
    assert again["reconciled"]["ended"] == []
    assert len(published) == 1


@pytest.mark.usefixtures("stack")
def test_a_promotion_whose_execution_never_started_or_is_gone_is_failed() -> None:
    store = PromotionStore()
    published: list[DomainEvent] = []
    steps = PromotionSteps(
        parse_config_text(""), store=store, publish=lambda *e: published.extend(e)
    )
    arn = "arn:aws:states:us-east-1:123456789012:execution:pitcrew-promotion:"
    gone = running_promotion(store, "payments", execution=arn + "gone")
    orphan = running_promotion(store, "orders", execution=None, age_s=NEVER_STARTED_AFTER_S + 60)
    starting = running_promotion(store, "billing", execution=None, age_s=30)  # starting now

    result = steps.handle({"step": "health_check"})

    assert sorted(result["reconciled"]["ended"]) == sorted([gone.id, orphan.id])
    assert "no longer exists" in str(store.get(gone.id).reason)
    assert "never started" in str(store.get(orphan.id).reason)
    assert store.get(starting.id).status == RUNNING
    assert sorted(e.detail["promotion"]["id"] for e in published) == sorted([gone.id, orphan.id])


@pytest.mark.usefixtures("stack")
def test_only_promotions_young_enough_to_still_run_are_read() -> None:
    config = parse_config_text(
        "environments:\n"
        "  - {name: prod, path: envs/prod, health_url: 'http://prod.test/healthz',\n"
        "     timeout_minutes: 30, approval_timeout_minutes: 60, merge_timeout_minutes: 30}\n"
    )
    assert longest_promotion_s(config) == 2 * 3600 + 24 * 3600
    store = PromotionStore()
    steps = PromotionSteps(config, store=store, publish=lambda *e: None)
    arn = "arn:aws:states:us-east-1:123456789012:execution:pitcrew-promotion:"
    recent = running_promotion(store, "payments", execution=arn + "recent", age_s=25 * 3600)
    ancient = running_promotion(store, "orders", execution=arn + "ancient", age_s=27 * 3600)

    result = steps.handle({"step": "health_check"})

    assert result["reconciled"]["ended"] == [recent.id]
    assert store.get(ancient.id).status == RUNNING  # outside the window: not read
    assert [p.id for p in store.unfinished()] == [ancient.id]


@pytest.mark.usefixtures("stack")
def test_an_execution_that_started_but_was_not_recorded_is_looked_up_by_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = PromotionStore()
    published: list[DomainEvent] = []
    steps = PromotionSteps(
        parse_config_text(""), store=store, publish=lambda *e: published.extend(e)
    )
    # The start stopped after StartExecution, before it recorded the execution's ARN.
    unrecorded = running_promotion(
        store, "payments", execution=None, age_s=NEVER_STARTED_AFTER_S + 60
    )
    execution = start_execution(unrecorded.id)  # executions are named after their promotion
    orphan = running_promotion(store, "orders", execution=None, age_s=NEVER_STARTED_AFTER_S + 60)
    monkeypatch.setenv(EXECUTIONS_ENV, execution.rsplit(":", 1)[0])

    result = steps.handle({"step": "health_check"})

    assert result["reconciled"]["ended"] == [orphan.id]  # still running: not failed, locked
    assert store.get(unrecorded.id).status == RUNNING
    assert store.lock_holder("payments", "staging") == unrecorded.id
    assert "never started" in str(store.get(orphan.id).reason)
    assert [e.detail["promotion"]["id"] for e in published] == [orphan.id]


# -- the definition and the template ----------------------------------------------------------


def test_await_approval_has_a_heartbeat_longer_than_the_health_checks_schedule(
    template: Template,
) -> None:
    definition = json.loads(ASL.read_text(encoding="utf-8"))
    state = definition["States"]["AwaitApproval"]
    schedule = template.resources["PromotionStepsFunction"].properties["Events"]
    rate = schedule["EnvironmentHealth"]["Properties"]["Schedule"]
    minutes = int(re.fullmatch(r"rate\((\d+) minutes?\)", rate)[1])  # type: ignore[index]
    # Two missed runs are tolerated; a third fails the approval.
    assert state["HeartbeatSeconds"] >= 2 * minutes * 60 + 60
    statements = [
        s
        for policy in template.resources["PromotionStepsFunction"].properties["Policies"]
        for s in policy.get("Statement", [])
    ]
    actions = {a for s in statements for a in s["Action"]}
    assert "states:SendTaskHeartbeat" in actions


def test_every_arn_of_the_definition_comes_from_definition_substitutions(
    template: Template,
) -> None:
    text = ASL.read_text(encoding="utf-8")
    machine = template.resources["PromotionStateMachine"].properties
    substitutions = set(machine["DefinitionSubstitutions"])
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used and used <= substitutions, used - substitutions
    # The only literal ARNs are Step Functions' own service integrations.
    literal = set(re.findall(r"arn:aws[\w-]*:[^\"]*", text))
    assert literal <= {
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::lambda:invoke.waitForTaskToken",
    }, literal
    resources = [
        state["Parameters"]["FunctionName"]
        for state in json.loads(text)["States"].values()
        if state["Type"] == "Task"
    ]
    assert set(resources) == {"${PromotionStepsFunctionArn}"}


class GoneSfn:
    """Step Functions that knows no execution."""

    class exceptions:  # boto3's shape
        class ExecutionDoesNotExist(Exception):
            pass

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        raise self.exceptions.ExecutionDoesNotExist(executionArn)


@pytest.mark.usefixtures("stack")
def test_a_promotion_that_cannot_be_ended_now_does_not_stop_the_others() -> None:
    from pitcrew.errors import ConflictError
    from pitcrew.promotions.health import reconcile

    store = PromotionStore()
    arn = "arn:aws:states:us-east-1:123456789012:execution:pitcrew-promotion:"
    stuck = running_promotion(store, "payments", execution=arn + "a")
    other = running_promotion(store, "orders", execution=arn + "b")
    done: list[str] = []

    def end_failed(promotion: Promotion, task: Any) -> None:
        if promotion.id == stuck.id:
            raise ConflictError(f"promotion {promotion.id} keeps changing; try again")
        done.append(promotion.id)

    result = reconcile(store, GoneSfn(), end_failed, time.time)

    assert result["ended"] == [other.id] and done == [other.id]
    (why,) = result["failed"]
    assert why.startswith(stuck.id) and "keeps changing" in why
