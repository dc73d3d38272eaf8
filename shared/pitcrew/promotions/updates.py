"""What GitHub tells promotions (called by ``github_events``): a promotion pull request was
merged or closed (the execution waiting for the merge resumes or fails), and promotion
triggers (a release published, a successful workflow run) start promotions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pitcrew.promotions.store import PromotionStore

if TYPE_CHECKING:
    from pitcrew.config import Config
    from pitcrew.promotions.store import Promotion

CLOSED = "PullRequestClosed"


def resume_merge(
    store: PromotionStore, sfn: Any, promotion_id: str, environment: str, *, merged: bool, by: str
) -> bool:
    """Resume the execution waiting for this merge; False when none waits."""
    token = store.take_token(promotion_id, f"merge:{environment}")
    if token is None:
        return False
    from pitcrew.aws import aws_errors

    with aws_errors("stepfunctions"):
        try:
            if merged:
                sfn.send_task_success(taskToken=token, output=json.dumps({"merged_by": by}))
            else:
                sfn.send_task_failure(
                    taskToken=token,
                    error=CLOSED,
                    cause=f"the pull request was closed without merging{f' by {by}' if by else ''}",
                )
        except (sfn.exceptions.TaskTimedOut, sfn.exceptions.TaskDoesNotExist):
            return False
    return True


def on_pull_request_closed(
    repo: str,
    number: int,
    merged: bool,
    by: str = "",
    *,
    store: PromotionStore | None = None,
    sfn: Any | None = None,
) -> str:
    """A ``pull_request`` closed delivery: what was done, as a short phrase for the log."""
    store = store or PromotionStore()
    owner = store.pull_owner(repo, number)
    if owner is None:
        return "not a promotion pull request"
    if sfn is None:
        from pitcrew.aws import client

        sfn = client("stepfunctions")

    def mark(p: Promotion) -> None:
        pull = p.pull_request(str(owner["environment"]), str(owner["purpose"]))
        if pull is not None:
            pull["state"] = "merged" if merged else "closed"

    store.change(str(owner["promotion"]), mark)
    resumed = resume_merge(
        store, sfn, str(owner["promotion"]), str(owner["environment"]), merged=merged, by=by
    )
    word = "merged" if merged else "closed"
    return f"promotion pull request {word}" + ("; execution resumed" if resumed else "")


def on_pull_request_merged(repo: str, number: int, by: str = "", **kwargs: Any) -> str:
    return on_pull_request_closed(repo, number, True, by, **kwargs)


def trigger_app(trigger: Mapping[str, Any]) -> str:
    """The app a trigger is about: its repository's name (the last segment)."""
    return str(trigger.get("repo") or "").rsplit("/", 1)[-1]


def knows_app(config: Config, app: str) -> bool:
    """Whether an environment names ``app`` in its ``images``."""
    return bool(app) and any(app in env.images for env in config.environments or ())


def on_trigger(config: Config, trigger: Mapping[str, Any], **kwargs: Any) -> Promotion | None:
    """A kept trigger (``pitcrew.fixes.triggers`` item) starts a promotion of the app named
    like the repository (its last segment) at the trigger's version, through every
    environment. None when no environment knows the app, or the trigger has no version."""
    from pitcrew.promotions.start import start_promotion

    app = trigger_app(trigger)
    version = trigger.get("version")
    if not version or not knows_app(config, app):
        return None
    if trigger.get("kind") == "workflow_run":
        version = str(version)[:12]
    actor = trigger.get("actor") or "github"
    return start_promotion(
        config,
        app=app,
        version=str(version),
        requested_by=f"{actor} ({trigger.get('kind')} {trigger.get('delivery')})",
        request_id=str(trigger.get("delivery") or "") or None,
        **kwargs,
    )
