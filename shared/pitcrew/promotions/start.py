"""Starting promotions (``POST /promotions``, ``pitcrew promote``, GitHub triggers) and
rollbacks to an environment's stable version (``pitcrew rollback``): the promotion is
recorded, then its execution starts, named after the promotion so that a start is never
run twice. The gate runs again inside the execution; checking here only answers a request
that cannot pass at once, with its reason.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pitcrew.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    PitcrewError,
    TransientServiceError,
)
from pitcrew.promotions.steps import environment, environments
from pitcrew.promotions.store import Promotion, PromotionStore, iso, new_id

if TYPE_CHECKING:
    from pitcrew.config import Config

STATE_MACHINE_ENV = "PROMOTION_STATE_MACHINE_ARN"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}")


def _checked(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadRequestError(
            f"{what}: expected letters, digits, '.', '_', '+' or '-' (at most 128), got {value!r}"
        )
    return value


def plan_for(config: Config, to: str | None, only: bool) -> list[str]:
    names = [e.name for e in environments(config)]
    # Only a missing `to` means the last environment: an empty one is a mistake, named below.
    target = names[-1] if to is None else to
    environment(config, target)
    return [target] if only else names[: names.index(target) + 1]


def start_promotion(
    config: Config,
    *,
    app: Any,
    version: Any,
    to: str | None = None,
    only: bool = False,
    requested_by: str | None = None,
    request_id: str | None = None,
    kind: str = "promotion",
    store: PromotionStore | None = None,
    sfn: Any | None = None,
    state_machine_arn: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Promotion:
    """Record the promotion and start its execution. ``only``: into ``to`` alone (the
    environment before it must have verified the version). ``request_id`` makes a repeated
    request return the promotion it started."""
    app, version = _checked("app", app), _checked("version", version)
    plan = plan_for(config, to, only)
    store = store or PromotionStore(clock=clock)
    now = clock()
    promotion = Promotion(
        id=new_id(now),
        app=app,
        version=version,
        target=plan[-1],
        plan=plan,
        created_at=iso(now),
        kind=kind,
        requested_by=requested_by,
    )
    arn = state_machine_arn or os.environ.get(STATE_MACHINE_ENV)
    if not arn:
        raise ConfigError([f"environment variable {STATE_MACHINE_ENV} is not set"])
    existing = _claim_request(store, request_id, promotion.id) if request_id else None
    found = store.find(existing) if existing is not None else None
    if found is not None and (found.execution is not None or found.ended):
        return found
    if found is not None:
        promotion = found  # recorded by a start that stopped before its execution began
    else:
        _refuse_at_once(store, config, promotion)
        # A start that stopped after claiming the request left its id to record it under.
        promotion.id = existing or promotion.id
        try:
            store.create(promotion)
        except ConflictError:
            if not request_id:
                raise
            return store.get(promotion.id)  # the same request, recorded meanwhile
    if sfn is None:
        from pitcrew.aws import client

        sfn = client("stepfunctions")
    from pitcrew.aws import aws_errors

    try:
        with aws_errors("stepfunctions"):
            try:
                started = sfn.start_execution(
                    stateMachineArn=arn,
                    name=promotion.id,
                    input=json.dumps({"promotion": promotion.ref()}),
                )
            except sfn.exceptions.ExecutionAlreadyExists:
                started = {
                    "executionArn": f"{arn.replace(':stateMachine:', ':execution:')}:{promotion.id}"
                }
    except PitcrewError as exc:
        if request_id and isinstance(exc, TransientServiceError):
            raise  # the request comes again (a redelivery) and starts this promotion then
        problem = f"could not start: {exc}"

        def failed(p: Promotion) -> None:
            p.status, p.reason, p.ended_at = "failed", problem, iso(clock())

        store.change(promotion.id, failed)
        raise

    def running(p: Promotion) -> None:
        p.execution = started["executionArn"]

    return store.change(promotion.id, running)


def _refuse_at_once(store: PromotionStore, config: Config, promotion: Promotion) -> None:
    """The gate's refusals that can be known now, as a 409 with the reason."""
    app, version, plan = promotion.app, promotion.version, promotion.plan
    names = [e.name for e in environments(config)]
    first = names.index(plan[0])
    if (
        promotion.kind == "promotion"
        and first > 0
        and not store.verified(app, names[first - 1], version)
    ):
        raise ConflictError(
            f"refused: {app} {version} was not verified in {names[first - 1]}: promote it into "
            f"{names[first - 1]} first (no environment is skipped)"
        )
    holder = store.lock_holder(app, plan[0])
    if holder is not None:
        raise ConflictError(
            f"refused: promotion {holder} is already promoting {app} into {plan[0]}"
        )


def _claim_request(store: PromotionStore, request_id: str, promotion_id: str) -> str | None:
    """The promotion an earlier request with this id started, or None (claimed for this one)."""
    key = {"pk": f"REQUEST#{request_id}", "sk": "REQUEST"}
    try:
        store.table.put(
            {**key, "promotion": promotion_id, "expires_at": int(store.clock()) + 7 * 24 * 3600},
            condition="attribute_not_exists(pk)",
        )
    except ConflictError:
        item = store.table.get(key) or {}
        return str(item.get("promotion") or "") or None
    return None


def start_rollback(
    config: Config,
    *,
    app: Any,
    environment_name: str,
    requested_by: str | None = None,
    store: PromotionStore | None = None,
    **kwargs: Any,
) -> Promotion:
    """Roll ``app`` in ``environment_name`` back to its stable version, or, when it runs that
    one, to the stable version before it (a promotion of kind ``rollback``, into that
    environment alone)."""
    app = _checked("app", app)
    environment(config, environment_name)
    store = store or PromotionStore()
    versions = store.versions(environment_name, app)
    if versions.stable is None:
        raise ConflictError(f"no stable version of {app} is recorded in {environment_name}")
    target = versions.stable
    if versions.current == versions.stable:
        if versions.previous_stable is None:
            raise ConflictError(
                f"{app} in {environment_name} runs its stable version {versions.stable} and "
                "no stable version before it is recorded"
            )
        target = versions.previous_stable
    return start_promotion(
        config,
        app=app,
        version=target,
        to=environment_name,
        only=True,
        requested_by=requested_by,
        kind="rollback",
        store=store,
        **kwargs,
    )
