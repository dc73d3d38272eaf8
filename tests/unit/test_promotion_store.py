"""Promotion locks, approvals and the API's refusals, on template.yaml's table in moto."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pitcrew.errors import ConflictError
from pitcrew.promotions.approvals import decide
from pitcrew.promotions.store import AWAITING_APPROVAL, Promotion, PromotionStore, iso, new_id


class RecordingSfn:
    """A Step Functions client stand-in that keeps what was sent (tokens stay server-side)."""

    class exceptions:  # boto3's shape
        class TaskTimedOut(Exception):
            pass

        class TaskDoesNotExist(Exception):
            pass

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task_success(self, **kwargs: Any) -> None:
        self.sent.append(("success", kwargs))

    def send_task_failure(self, **kwargs: Any) -> None:
        self.sent.append(("failure", kwargs))


def waiting(store: PromotionStore) -> Promotion:
    promotion = Promotion(
        id=new_id(),
        app="api",
        version="v1",
        target="prod",
        plan=["prod"],
        created_at=iso(time.time()),
    )
    promotion.status = AWAITING_APPROVAL
    promotion.environment = "prod"
    promotion.approval = {"environment": "prod"}
    store.create(promotion)
    store.keep_token(promotion.id, "approval", "secret-task-token", environment="prod")
    return promotion


@pytest.mark.usefixtures("stack")
def test_one_lock_per_app_and_environment() -> None:
    store = PromotionStore()
    store.lock("api", "dev", "P1", 60)
    store.lock("api", "dev", "P1", 60)  # its holder may take it again (a retried step)
    store.lock("api", "staging", "P2", 60)

    with pytest.raises(ConflictError, match="P1 is already promoting api into dev"):
        store.lock("api", "dev", "P2", 60)
    store.unlock("api", "dev", "P2")  # not its lock: nothing happens
    assert store.lock_holder("api", "dev") == "P1"
    store.unlock("api", "dev", "P1")
    store.lock("api", "dev", "P2", 60)


@pytest.mark.usefixtures("stack")
def test_an_approval_uses_the_stored_token_once() -> None:
    store, sfn = PromotionStore(), RecordingSfn()
    promotion = waiting(store)

    approved = decide(promotion.id, True, "marco", store=store, sfn=sfn)

    assert sfn.sent == [
        (
            "success",
            {"taskToken": "secret-task-token", "output": json.dumps({"approved_by": "marco"})},
        )
    ]
    assert approved.status == "running"
    assert approved.approval is not None and approved.approval["decided_by"] == "marco"
    assert "secret-task-token" not in json.dumps(approved.as_api())
    with pytest.raises(ConflictError, match="not awaiting approval"):
        decide(promotion.id, False, "marco", store=store, sfn=sfn)


@pytest.mark.usefixtures("stack")
def test_a_rejection_fails_the_waiting_task_with_the_reason() -> None:
    store, sfn = PromotionStore(), RecordingSfn()
    promotion = waiting(store)

    decide(promotion.id, False, "ana", "error budget spent", store=store, sfn=sfn)

    ((kind, sent),) = sfn.sent
    assert kind == "failure"
    assert sent["error"] == "PromotionRejected"
    assert sent["cause"] == "rejected by ana: error budget spent"
