"""The scheduled health check of every environment (``promotion_steps`` with
``{"step": "health_check"}``): each health URL's status and latency, the run of
consecutive failures, kept per environment for ``GET /environments``;
``EnvironmentDegraded`` once when a run of failures reaches ``degraded_after``. The same
schedule sends the heartbeats of waiting tasks (``AwaitApproval`` has ``HeartbeatSeconds``,
so an approval whose token was lost fails instead of waiting for its whole timeout), and
ends the promotions whose execution ended without saying so (``reconcile``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pitcrew.errors import PitcrewError
from pitcrew.events import DomainEvent, EventName, event
from pitcrew.promotions.store import Promotion, PromotionStore, epoch, iso

# An execution that ended this way without ending its promotion: the Catch that runs the
# "fail" task did not (the execution's history limit, a state that failed before any Catch,
# StopExecution, the fail task's own Lambda failing).
_EXECUTION_ENDED = {
    "FAILED": "ExecutionFailed",
    "TIMED_OUT": "ExecutionTimedOut",
    "ABORTED": "ExecutionAborted",
}
# A promotion recorded whose execution never started (the start stopped between the two):
# after this long no redelivery of its request will start it.
NEVER_STARTED_AFTER_S = 3600
# The ARN prefix of the state machine's executions (``...:execution:<stack>-promotion``):
# an execution is named after its promotion, so one a start did not record is found by it.
EXECUTIONS_ENV = "PROMOTION_EXECUTIONS"

if TYPE_CHECKING:
    from pitcrew.config import Config
    from pitcrew.promotions.checks import Checker


def check_environments(
    config: Config,
    store: PromotionStore,
    checker: Checker,
    publish: Callable[..., None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    degraded: list[DomainEvent] = []
    for env in config.environments or ():
        url = env.health_url.get()
        result = checker.health(url)
        now = clock()
        before = store.health(env.name) or {}
        failures = 0 if result.ok else int(before.get("consecutive_failures", 0)) + 1
        since = before.get("since") if not result.ok and before.get("since") else iso(now)
        health = {
            "status": "healthy"
            if result.ok
            else ("degraded" if failures >= env.degraded_after else "failing"),
            "http_status": result.status,
            "latency_ms": result.latency_ms,
            "detail": result.detail,
            "consecutive_failures": failures,
            "checked_at": iso(now),
            "since": since,
        }
        store.save_health(env.name, health)
        results[env.name] = health
        if failures == env.degraded_after:
            versions = store.all_versions(env.name)
            degraded.append(
                event(
                    EventName.ENVIRONMENT_DEGRADED,
                    {
                        "environment": env.name,
                        "version": versions[0].current if len(versions) == 1 else None,
                        "versions": {v.app: v.current for v in versions},
                        "health_url": url,
                        "status": result.status,
                        "error": f"{result.detail}, {failures} times in a row",
                        "since": since,
                    },
                )
            )
    if degraded:
        publish(*degraded)
    return {"environments": results}


def send_heartbeats(store: PromotionStore, sfn: Any) -> dict[str, Any]:
    """``SendTaskHeartbeat`` for every waiting task whose token is kept. A task that is gone
    (timed out, its execution stopped) has its token dropped; a failed call is counted and
    tried again at the next run."""
    from pitcrew.aws import aws_errors

    sent, gone, failed = 0, 0, []
    for promotion_id, purpose in store.waiting():
        token = store.peek_token(promotion_id, purpose)
        if token is None:
            store.take_token(promotion_id, purpose)  # clears the stale waiting entry
            continue
        try:
            with aws_errors("stepfunctions"):
                try:
                    sfn.send_task_heartbeat(taskToken=token)
                except (
                    sfn.exceptions.TaskTimedOut,
                    sfn.exceptions.TaskDoesNotExist,
                    sfn.exceptions.InvalidToken,
                ):
                    store.take_token(promotion_id, purpose)
                    gone += 1
                    continue
        except PitcrewError as exc:
            failed.append(f"{promotion_id} {purpose}: {exc}")
            continue
        sent += 1
    return {"sent": sent, "gone": gone, "failed": failed}


def longest_promotion_s(config: Config) -> float:
    """How long a promotion can run at most: every environment's health, approval and merge
    waits, a day to spare; at most a year (a Standard execution's own limit)."""
    waits = sum(
        (e.timeout_minutes + e.approval_timeout_minutes + e.merge_timeout_minutes) * 60
        for e in config.environments or ()
    )
    return min(waits + 24 * 3600, 366 * 24 * 3600)


def reconcile(
    store: PromotionStore,
    sfn: Any,
    end_failed: Callable[[Promotion, Mapping[str, Any]], Any],
    clock: Callable[[], float],
    executions: str | None = None,
    *,
    window_s: float = 366 * 24 * 3600,
) -> dict[str, Any]:
    """End, as failed, every unfinished promotion whose execution has ended (or never started):
    otherwise it would show "running" and hold its environments' locks until they expire.
    ``end_failed`` is the state machine's own "fail" task (closes open pull requests, releases
    the locks, publishes ``PromotionFailed`` once), given the error the execution ended with.
    ``executions``: the executions' ARN prefix, to find one its start did not record.
    Only promotions started within ``window_s`` are read (``longest_promotion_s``): an older
    one's execution has ended by its own timeouts, and was reconciled while in the window."""
    from pitcrew.aws import aws_errors

    never_started = {"Error": "ExecutionNeverStarted", "Cause": "its execution never started"}
    ended: list[str] = []
    failed: list[str] = []
    for promotion in store.unfinished(since=clock() - window_s):
        execution = promotion.execution
        if execution is None:
            created = epoch(promotion.created_at)
            if created is None or clock() - created <= NEVER_STARTED_AFTER_S:
                continue
            if executions is None:  # it cannot be looked up
                _end(promotion, never_started, end_failed, ended, failed)
                continue
            # The start may have stopped after StartExecution and before recording it.
            execution = f"{executions}:{promotion.id}"
        try:
            with aws_errors("stepfunctions"):
                try:
                    described = sfn.describe_execution(executionArn=execution)
                except sfn.exceptions.ExecutionDoesNotExist:
                    described = {"status": "MISSING"}
        except PitcrewError as exc:
            failed.append(f"{promotion.id}: {exc}")  # asked again at the next run
            continue
        status = str(described.get("status"))
        if status == "MISSING" and promotion.execution is None:
            error = never_started
        elif status == "MISSING":
            error = {"Error": "ExecutionMissing", "Cause": "its execution no longer exists"}
        elif status in _EXECUTION_ENDED:
            cause = described.get("cause") or described.get("error")
            what = status.lower().replace("_", " ")
            error = {
                "Error": _EXECUTION_ENDED[status],
                "Cause": f"its execution {what}: {cause}" if cause else f"its execution {what}",
            }
        else:
            continue  # RUNNING, or SUCCEEDED a moment before its last task's write lands
        _end(promotion, error, end_failed, ended, failed)
    return {"ended": ended, "failed": failed}


def _end(
    promotion: Promotion,
    error: Mapping[str, str],
    end_failed: Callable[[Promotion, Mapping[str, Any]], Any],
    ended: list[str],
    failed: list[str],
) -> None:
    """One promotion ended; a failure to end it is reported and tried at the next run, and
    does not stop the health checks after it."""
    try:
        end_failed(promotion, {"error": error})
    except PitcrewError as exc:
        failed.append(f"{promotion.id}: {exc}")
        return
    ended.append(promotion.id)
