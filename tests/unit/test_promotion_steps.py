"""Steps of the promotion state machine run again and again (polls, retries, redeliveries),
on template.yaml's table in moto: bounded health polls, the recorded versions, why a
rejected promotion failed, an approval that could not be delivered, and repeated starts."""

from __future__ import annotations

import time
from typing import Any
from unittest.mock import create_autospec

import httpx
import pytest

from pitcrew.config import parse_config_text
from pitcrew.errors import NotFoundError, TransientServiceError
from pitcrew.promotions.approvals import decide
from pitcrew.promotions.checks import Checker
from pitcrew.promotions.gitops import GitopsRepo, PromotionPull
from pitcrew.promotions.start import start_promotion
from pitcrew.promotions.steps import (
    MAX_POLLS,
    PromotionSteps,
    PromotionUnhealthy,
    poll_seconds,
)
from pitcrew.promotions.store import AWAITING_APPROVAL, Promotion, PromotionStore, iso, new_id
from pitcrew.stores import Table

CONFIG = """
environments:
  - {name: dev, path: envs/dev, health_url: 'http://dev.test/healthz', poll_seconds: 0,
     timeout_minutes: 60}
  - {name: prod, path: envs/prod, health_url: 'http://prod.test/healthz', approval: required}
"""
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:pitcrew-promotion"


def down() -> Checker:
    """A health URL that answers 503 (through httpx's own transport stack)."""
    return Checker(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))))


def in_dev(store: PromotionStore, **extra: Any) -> Promotion:
    promotion = Promotion(
        id=new_id(),
        app="api",
        version="v2",
        target="dev",
        plan=["dev"],
        created_at=iso(time.time()),
        environment="dev",
        **extra,
    )
    store.create(promotion)
    return promotion


class StartingSfn:
    """Step Functions' StartExecution, failing the first ``failures`` calls as throttled."""

    class exceptions:  # boto3's shape
        class ExecutionAlreadyExists(Exception):
            pass

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.started: list[str] = []

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
                "StartExecution",
            )
        self.started.append(name)
        return {"executionArn": f"{ARN.replace(':stateMachine:', ':execution:')}:{name}"}


def test_long_health_timeouts_space_their_polls() -> None:
    config = parse_config_text(CONFIG)
    dev, prod = config.environments
    assert poll_seconds(dev) == 24  # 60 min in about 150 polls, not one every 0 s
    assert poll_seconds(prod) == 15  # the configured 15 s already keeps 10 min short


@pytest.mark.usefixtures("stack")
def test_health_polls_end_before_the_execution_history_runs_out() -> None:
    store = PromotionStore()
    steps = PromotionSteps(
        parse_config_text(CONFIG), store=store, checker=down(), publish=lambda *e: None
    )
    promotion = in_dev(store)
    task = {"step": "check_health", "promotion": promotion.ref()}

    assert steps.handle(task)["healthy"] is False  # the first poll: its deadline is an hour off
    store.change(promotion.id, lambda p: p.settings.update({"polls:dev:update": MAX_POLLS - 2}))
    assert steps.handle(task)["healthy"] is False
    with pytest.raises(PromotionUnhealthy, match=f"in {MAX_POLLS} polls"):
        steps.handle(task)
    (wait,) = store.get(promotion.id).steps
    assert (wait["step"], wait["outcome"]) == ("wait healthy", "timed out")


@pytest.mark.usefixtures("stack")
def test_record_keeps_the_version_the_update_replaced_as_previous() -> None:
    store = PromotionStore()
    steps = PromotionSteps(parse_config_text(CONFIG), store=store, publish=lambda *e: None)
    promotion = in_dev(store, replaced={"dev": "v1"})
    task = {"step": "record", "promotion": promotion.ref()}

    steps.handle(task)
    steps.handle(task)  # retried by Step Functions

    versions = store.versions("dev", "api")
    assert (versions.current, versions.previous, versions.stable) == ("v2", "v1", "v2")


def proposing(state: str) -> GitopsRepo:
    """A GitOps repository whose promotion pull request comes back in ``state``."""
    repo = create_autospec(GitopsRepo, instance=True)
    number = 0 if state == "unchanged" else 7
    repo.propose.return_value = PromotionPull(
        "acme/gitops", number, None, "pitcrew/promote", state, "v1", "envs/prod"
    )
    return repo


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize(("state", "approval"), [("unchanged", False), ("open", True)])
def test_an_environment_already_at_the_version_needs_no_approval(
    state: str, approval: bool
) -> None:
    store = PromotionStore()
    repo = proposing(state)
    steps = PromotionSteps(
        parse_config_text(CONFIG), store=store, gitops=lambda: repo, publish=lambda *e: None
    )
    promotion = in_dev(store)
    steps.store.change(promotion.id, lambda p: setattr(p, "environment", "prod"))

    result = steps.handle({"step": "update", "promotion": promotion.ref()})

    assert result == {"merged": state == "unchanged", "approval": approval}
    (update,) = store.get(promotion.id).steps
    if state == "unchanged":
        assert update["detail"] == "already at this version: no change, no approval needed"
    repo.merge.assert_not_called()  # prod's change waits for its approval; no change, no merge


@pytest.mark.usefixtures("stack")
def test_a_rejected_promotion_says_who_rejected_it_and_why() -> None:
    store = PromotionStore()
    steps = PromotionSteps(parse_config_text(CONFIG), store=store, publish=lambda *e: None)
    decision = {"decision": "rejected", "decided_by": "ana", "reason": "error budget spent"}
    promotion = in_dev(store, approval={"environment": "dev", **decision})

    # The Catch's error as an executor that drops SendTaskFailure's cause passes it on.
    steps.handle(
        {
            "step": "fail",
            "promotion": promotion.ref(),
            "error": {"Error": "PromotionRejected", "Cause": None},
        }
    )

    ended = store.get(promotion.id)
    assert (ended.status, ended.reason) == ("failed", "rejected by ana: error budget spent")


class ThrottledSfn:
    class exceptions:  # boto3's shape
        class TaskTimedOut(Exception):
            pass

        class TaskDoesNotExist(Exception):
            pass

        class InvalidToken(Exception):
            pass

    def send_task_success(self, **kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
            "SendTaskSuccess",
        )


@pytest.mark.usefixtures("stack")
def test_an_approval_not_delivered_keeps_the_token_for_the_next_try() -> None:
    store = PromotionStore()
    promotion = in_dev(store, status=AWAITING_APPROVAL)
    store.keep_token(promotion.id, "approval", "task-token", environment="dev")

    with pytest.raises(TransientServiceError):
        decide(promotion.id, True, "marco", store=store, sfn=ThrottledSfn())

    assert store.peek_token(promotion.id, "approval") == "task-token"
    assert store.waiting() == [(promotion.id, "approval")]  # the heartbeats go on
    still = store.get(promotion.id)
    assert still.status == AWAITING_APPROVAL
    assert still.approval is None  # no decision was made
    assert "ended_at" not in still.steps[-1]


class EagerSfn(ThrottledSfn):
    """Delivers the rejection, and the execution's next step runs before the call returns."""

    def __init__(self, store: PromotionStore) -> None:
        self.store = store
        self.seen: list[Any] = []

    def send_task_failure(self, **kwargs: Any) -> None:
        self.seen.append(self.store.get(kwargs["taskToken"]).approval)


@pytest.mark.usefixtures("stack")
def test_the_decision_is_recorded_before_the_execution_hears_of_it() -> None:
    store = PromotionStore()
    promotion = in_dev(store, status=AWAITING_APPROVAL)
    store.keep_token(promotion.id, "approval", promotion.id, environment="dev")
    sfn = EagerSfn(store)

    decide(promotion.id, False, "ana", "error budget spent", store=store, sfn=sfn)

    ((seen,),) = [sfn.seen]
    assert seen["decided_by"] == "ana" and seen["reason"] == "error budget spent"


@pytest.mark.usefixtures("stack")
def test_a_redelivered_start_starts_the_promotion_its_first_try_could_not() -> None:
    config = parse_config_text(CONFIG)
    store, sfn = PromotionStore(), StartingSfn(failures=1)
    start = {"app": "api", "version": "v2", "to": "dev", "request_id": "delivery-1"}

    with pytest.raises(TransientServiceError):
        start_promotion(config, **start, store=store, sfn=sfn, state_machine_arn=ARN)
    (first,) = store.recent()
    assert first.status == "running" and first.execution is None

    again = start_promotion(config, **start, store=store, sfn=sfn, state_machine_arn=ARN)
    once_more = start_promotion(config, **start, store=store, sfn=sfn, state_machine_arn=ARN)

    assert again.id == once_more.id == first.id
    assert sfn.started == [first.id]
    assert [p.id for p in store.recent()] == [first.id]


@pytest.mark.usefixtures("stack")
def test_a_start_that_stopped_after_claiming_its_request_is_recorded_on_redelivery() -> None:
    config = parse_config_text(CONFIG)
    store, sfn = PromotionStore(), StartingSfn()
    claimed = new_id()
    store.table.put({"pk": "REQUEST#delivery-2", "sk": "REQUEST", "promotion": claimed})

    started = start_promotion(
        config,
        app="api",
        version="v2",
        to="dev",
        request_id="delivery-2",
        store=store,
        sfn=sfn,
        state_machine_arn=ARN,
    )

    assert started.id == claimed
    assert sfn.started == [claimed]


def test_an_id_that_is_no_promotion_id_is_not_found_without_asking_dynamodb() -> None:
    table = create_autospec(Table, instance=True)
    with pytest.raises(NotFoundError):
        PromotionStore(table).get("A" * 2000)  # DynamoDB refuses keys over 1024 bytes: a 5xx
    table.get.assert_not_called()
