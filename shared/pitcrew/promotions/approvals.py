"""Approving or rejecting a promotion that waits for one: ``POST /promotions/{id}/approve``,
``pitcrew approve ID``, ``/pitcrew approve`` on the promotion's pull request. The waiting
task's token is read from the store (it never leaves it) and used once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pitcrew.errors import ConflictError, PitcrewError
from pitcrew.promotions.store import AWAITING_APPROVAL, RUNNING, Promotion, PromotionStore, iso

APPROVAL = "approval"
REJECTED = "PromotionRejected"


def decide(
    promotion_id: str,
    approve: bool,
    by: str,
    reason: str = "",
    *,
    store: PromotionStore | None = None,
    sfn: Any | None = None,
    clock: Callable[[], float] = time.time,
) -> Promotion:
    """Approve (``approve=True``) or reject the promotion's pending approval as ``by``.
    ``NotFoundError`` for an unknown promotion, ``ConflictError`` when nothing awaits approval."""
    store = store or PromotionStore(clock=clock)
    promotion = store.get(promotion_id)
    if promotion.status != AWAITING_APPROVAL:
        raise ConflictError(
            f"promotion {promotion_id} is not awaiting approval (it is {promotion.status})"
        )
    token = store.take_token(promotion_id, APPROVAL)
    if token is None:
        raise ConflictError(f"promotion {promotion_id} is not awaiting approval (decided already)")
    now = clock()

    def decided(p: Promotion) -> None:
        p.approval = {
            **(p.approval or {}),
            "decision": "approved" if approve else "rejected",
            "decided_by": by,
            "decided_at": iso(now),
            **({"reason": reason} if reason else {}),
        }
        if p.status == AWAITING_APPROVAL:
            p.status = RUNNING
        p.end_step(
            "approval",
            (p.approval or {}).get("environment"),
            now,
            "approved" if approve else "rejected",
            f"by {by}",
        )

    # Recorded before Step Functions hears of it: the execution's next step reads who decided.
    before = promotion.approval
    recorded = store.change(promotion_id, decided)

    def undo(p: Promotion, waits: bool) -> None:
        p.approval = before
        for step in reversed(p.steps):
            if step["step"] == "approval":
                for key in ("ended_at", "outcome", "detail"):
                    step.pop(key, None)
                break
        if waits and not p.ended:
            p.status = AWAITING_APPROVAL

    if sfn is None:
        from pitcrew.aws import client

        sfn = client("stepfunctions")
    from pitcrew.aws import aws_errors

    try:
        with aws_errors("stepfunctions"):
            try:
                if approve:
                    sfn.send_task_success(taskToken=token, output=json.dumps({"approved_by": by}))
                else:
                    cause = f"rejected by {by}" + (f": {reason}" if reason else "")
                    sfn.send_task_failure(taskToken=token, error=REJECTED, cause=cause[:32768])
            except sfn.exceptions.TaskTimedOut as exc:
                raise ConflictError(
                    f"promotion {promotion_id}: the approval already timed out"
                ) from exc
            except (sfn.exceptions.TaskDoesNotExist, sfn.exceptions.InvalidToken) as exc:
                raise ConflictError(
                    f"promotion {promotion_id}: nothing waits for this approval"
                ) from exc
    except ConflictError:
        store.change(promotion_id, lambda p: undo(p, waits=False))
        raise
    except PitcrewError:
        # Not delivered (throttled, unreachable): the task still waits, so its token goes
        # back for the next try and for the heartbeats.
        store.keep_token(promotion_id, APPROVAL, token, environment=promotion.environment)
        store.change(promotion_id, lambda p: undo(p, waits=True))
        raise
    return recorded
