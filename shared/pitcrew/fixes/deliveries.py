"""What ``github_events`` does with each GitHub delivery the API queued
(``{"delivery", "event", "payload", ...}``, written by ``pitcrew.api.github``):

Pull requests and comments count only in ``gitops.repo`` (where pitcrew writes); the same
label and markers elsewhere are ignored.

- ``pull_request`` closed on a pitcrew fix: merged → the incident's pull request is marked
  merged, timeline ``fix merged``, ``FixPullRequestMerged`` published; closed unmerged →
  timeline ``fix rejected``.
- ``issue_comment`` created with a ``/pitcrew`` command on a pitcrew pull request or issue:
  only users with write, maintain or admin permission on the repository (asked of GitHub)
  may command; others get a polite refusal. ``retry`` queues ``{"retry": {"incident_id"}}``
  on the incident queue for the diagnose pipeline; ``approve``/``reject [reason]`` on a
  promotion's pull request decide its pending approval (``pitcrew.promotions.approvals``),
  or answer why nothing awaits one.
- ``pull_request`` closed on a promotion's version bump (``pitcrew.promotions``): the
  waiting promotion resumes (merged) or fails (closed unmerged).
- ``release`` published and successful ``workflow_run`` completions: kept as promotion
  triggers (``pitcrew.fixes.triggers``); one about an app the environments name in
  ``images`` starts its promotion.

Everything else is ignored, with a log line saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pitcrew.errors import BadRequestError, ConfigError, ConflictError, NotFoundError
from pitcrew.events import EventName, event, publish
from pitcrew.fixes import render
from pitcrew.fixes.commands import WRITERS, Command, parse_command, usage
from pitcrew.fixes.triggers import PromotionTriggers

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from pitcrew.config import Config
    from pitcrew.github import GitHub
    from pitcrew.incidents.store import IncidentStore


# Approves (True) or rejects a promotion: (promotion id, approve, by, reason).
Decide = Callable[[str, bool, str, str], None]
# A promotion's pull request was closed: (repo, number, merged, by) -> what was done.
PromotionPullClosed = Callable[[str, int, bool, str], str]
# The promotion a pull request belongs to, by pitcrew's own record: (repo, number) -> id.
PromotionOfPull = Callable[[str, int], "str | None"]
# A kept trigger starts a promotion: (config, trigger item) -> what was done.
StartFromTrigger = Callable[["Config", Mapping[str, Any]], str]


def _now() -> datetime:
    return datetime.now(UTC)


def parse_message(body: str) -> tuple[str, str, dict[str, Any]]:
    """(delivery id, event name, payload) of a GitHub delivery queue message."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"GitHub delivery message is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise BadRequestError("GitHub delivery message is not a JSON object")
    delivery, name, payload = message.get("delivery"), message.get("event"), message.get("payload")
    if not isinstance(delivery, str) or not isinstance(name, str) or not isinstance(payload, dict):
        raise BadRequestError("GitHub delivery message needs 'delivery', 'event' and 'payload'")
    return delivery, name, payload


def _command_in(
    payload: Mapping[str, Any],
) -> tuple[Command, str, Mapping[str, Any], str] | str:
    """(command, login, issue, repo) of an ``issue_comment`` delivery, or why it is none."""
    if payload.get("action") != "created":
        return f"issue_comment {payload.get('action')} is not used"
    comment = payload.get("comment") or {}
    command = parse_command(comment.get("body"))
    if command is None:
        return "not a command"
    user = comment.get("user") or {}
    if user.get("type") == "Bot":
        return "comments by bots are not commands"
    issue = payload.get("issue") or {}
    if not _is_pitcrew(issue):
        return "not a pitcrew pull request or issue"
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    return command, str(user.get("login") or ""), issue, repo


def _decide(promotion_id: str, approve: bool, by: str, reason: str) -> None:
    from pitcrew.promotions.approvals import decide

    decide(promotion_id, approve, by, reason)


def _promotion_pull_closed(repo: str, number: int, merged: bool, by: str) -> str:
    from pitcrew.promotions.updates import on_pull_request_closed

    return on_pull_request_closed(repo, number, merged, by)


def _promotion_of_pull(repo: str, number: int) -> str | None:
    from pitcrew.promotions.store import PromotionStore

    owner = PromotionStore().pull_owner(repo, number)
    return str(owner["promotion"]) if owner and owner.get("promotion") else None


def _start_from_trigger(config: Config, trigger: Mapping[str, Any]) -> str:
    """Start the promotion a trigger asks for, when an environment knows its app (by the
    repository's name, in ``environments[].images``). A refusal (not verified, already
    promoting) is an answer, not an error: retrying the delivery would not change it."""
    from pitcrew.promotions.updates import knows_app, on_trigger, trigger_app

    app = trigger_app(trigger)
    if not knows_app(config, app):
        return f"promotion trigger kept; no environment names {app!r} in images"

    try:
        promotion = on_trigger(config, trigger)
    except ConflictError as exc:
        return f"promotion trigger kept; promotion refused: {exc}"
    if promotion is None:
        return "promotion trigger kept"
    return f"promotion {promotion.id} started"


def _is_pitcrew(item: Mapping[str, Any]) -> bool:
    labels = {
        str(label.get("name")) for label in item.get("labels") or [] if isinstance(label, Mapping)
    }
    return render.LABEL in labels or bool(render.markers(item.get("body")))


class GithubDeliveries:
    """Handles GitHub deliveries. Collaborators are injectable; by default built on use."""

    def __init__(
        self,
        config: Config,
        *,
        github: GitHub | None = None,
        store: IncidentStore | None = None,
        triggers: PromotionTriggers | None = None,
        sqs: Any | None = None,
        publish: Callable[..., None] = publish,
        clock: Callable[[], datetime] = _now,
        decide: Decide = _decide,
        promotion_pull_closed: PromotionPullClosed = _promotion_pull_closed,
        promotion_of_pull: PromotionOfPull = _promotion_of_pull,
        start_from_trigger: StartFromTrigger = _start_from_trigger,
        logger: Logger | None = None,
    ) -> None:
        self.config = config
        self._decide = decide
        self._promotion_pull_closed = promotion_pull_closed
        self._promotion_of_pull = promotion_of_pull
        self._start_from_trigger = start_from_trigger
        self._github = github
        self._store = store
        self._triggers = triggers
        self._sqs = sqs
        self._publish = publish
        self._clock = clock
        self._logger = logger

    @property
    def github(self) -> GitHub:
        if self._github is None:
            if self.config.github is None:
                raise ConfigError(["github: needed to answer /pitcrew commands"])
            from pitcrew.github import connect

            self._github = connect(self.config.github)
        return self._github

    @property
    def store(self) -> IncidentStore:
        if self._store is None:
            from pitcrew.incidents.store import IncidentStore

            self._store = IncidentStore()
        return self._store

    @property
    def triggers(self) -> PromotionTriggers:
        if self._triggers is None:
            self._triggers = PromotionTriggers()
        return self._triggers

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            from pitcrew.aws import client

            self._sqs = client("sqs")
        return self._sqs

    def handle_body(self, body: str) -> str:
        """Handle one queue message body; a word saying what was done (for logs/tests)."""
        delivery, name, payload = parse_message(body)
        return self.handle(delivery, name, payload)

    def _outside_gitops(self, payload: Mapping[str, Any]) -> str | None:
        """Why a delivery about a pull request or issue is not looked at, when it is not from
        ``gitops.repo``: pitcrew's fixes, tracking issues and promotion pull requests are
        there, and an organisation webhook or a GitHub App also delivers from repositories
        where others may write (and copy pitcrew's label and markers)."""
        repo = str((payload.get("repository") or {}).get("full_name") or "")
        gitops = self.config.gitops
        if gitops is not None and repo.lower() == gitops.repo.lower():
            return None
        return f"not in the GitOps repository ({repo or 'no repository'})"

    def handle(self, delivery: str, name: str, payload: Mapping[str, Any]) -> str:
        if name in ("pull_request", "issue_comment") and (outside := self._outside_gitops(payload)):
            outcome = outside
        elif name == "pull_request":
            outcome = self._pull_request(payload)
        elif name == "issue_comment":
            outcome = self._issue_comment(payload)
        elif name in ("release", "workflow_run"):
            kept = self.triggers.record(name, delivery, payload)
            if kept is None:
                outcome = f"{name} is not a trigger"
            else:
                outcome = self._start_from_trigger(self.config, kept)
        else:
            outcome = f"{name} events are not used"
        self._log(outcome, delivery=delivery, event=name, action=payload.get("action"))
        return outcome

    # -- pull requests -----------------------------------------------------------------------
    def _pull_request(self, payload: Mapping[str, Any]) -> str:
        pull = payload.get("pull_request") or {}
        if payload.get("action") != "closed":
            return f"pull_request {payload.get('action')} is not used"
        markers = render.markers(pull.get("body"))
        if markers.get("promotion") is not None:
            merged_by = (pull.get("merged_by") or payload.get("sender") or {}).get("login")
            return self._promotion_pull_closed(
                str((payload.get("repository") or {}).get("full_name") or ""),
                int(pull.get("number") or 0),
                bool(pull.get("merged")),
                str(merged_by or ""),
            )
        incident_id = markers.get("incident")
        if incident_id is None or not _is_pitcrew(pull):
            return "not a pitcrew pull request"
        merged = bool(pull.get("merged"))
        who = (pull.get("merged_by") if merged else payload.get("sender")) or {}
        record = {
            "repo": (payload.get("repository") or {}).get("full_name"),
            "number": pull.get("number"),
            "url": pull.get("html_url"),
            "title": pull.get("title"),
            "branch": (pull.get("head") or {}).get("ref"),
            "state": "merged" if merged else "closed",
            "merged_at" if merged else "closed_at": pull.get(
                "merged_at" if merged else "closed_at"
            ),
            "merged_by" if merged else "closed_by": who.get("login"),
        }
        now = self._clock()
        try:
            self.store.set_pull_request(incident_id, record, now)
        except NotFoundError:
            return f"incident {incident_id} is gone"
        if merged:
            incident = self.store.add_timeline(
                incident_id, "fix merged", now, detail=f"#{record['number']} by {who.get('login')}"
            )
            self._publish(event(EventName.FIX_PULL_REQUEST_MERGED, incident.as_api()))
            return "fix merged"
        self.store.add_timeline(
            incident_id,
            "fix rejected",
            now,
            detail=f"#{record['number']} closed without merging by {who.get('login')}",
        )
        return "fix rejected"

    # -- commands ----------------------------------------------------------------------------
    def _issue_comment(self, payload: Mapping[str, Any]) -> str:
        found = _command_in(payload)
        if isinstance(found, str):
            return found
        command, login, issue, repo = found
        number = int(issue.get("number") or 0)
        permission = self.github.permission(repo, login)
        if permission not in WRITERS:
            self.github.comment(
                repo,
                number,
                f"Sorry @{login}, pitcrew takes commands only from people with write access "
                f"to {repo} (yours is {permission}). Ask a maintainer to run "
                f"`/pitcrew {command.verb}`.",
            )
            return "refused"
        if command.verb == "retry":
            return self._retry(repo, number, issue, login)
        if command.verb in ("approve", "reject"):
            return self._approval(repo, number, issue, login, command)
        self.github.comment(
            repo, number, f"@{login}, `/pitcrew {command.verb}` is not a command. {usage()}"
        )
        return "unknown command"

    def _incident_of(self, issue: Mapping[str, Any]) -> str | None:
        found = render.markers(issue.get("body"))
        if "incident" in found:
            return found["incident"]
        tracking = found.get("tracking")
        if tracking is None:
            return None
        cluster, namespace, kind, name = [*tracking.split("/"), "", "", "", ""][:4]
        incident = self.store.open_for(cluster, None if namespace == "-" else namespace, kind, name)
        return incident.id if incident is not None else None

    def _retry(self, repo: str, number: int, issue: Mapping[str, Any], login: str) -> str:
        incident_id = self._incident_of(issue)
        if incident_id is None:
            self.github.comment(
                repo, number, f"@{login}, there is no open incident here to diagnose again."
            )
            return "nothing to retry"
        queue = os.environ.get("INCIDENT_QUEUE_URL")
        if not queue:
            raise ConfigError(
                ["environment variable INCIDENT_QUEUE_URL is not set (the incident queue)"]
            )
        from pitcrew.aws import aws_errors

        with aws_errors("sqs"):
            self.sqs.send_message(
                QueueUrl=queue, MessageBody=json.dumps({"retry": {"incident_id": incident_id}})
            )
        # The diagnose pipeline reports a missing incident itself.
        with contextlib.suppress(NotFoundError):
            self.store.add_timeline(
                incident_id, "retry requested", self._clock(), detail=f"by @{login} on #{number}"
            )
        self.github.comment(
            repo, number, f"@{login}, pitcrew is diagnosing incident `{incident_id}` again."
        )
        return "retry queued"

    def _approval(
        self, repo: str, number: int, issue: Mapping[str, Any], login: str, command: Command
    ) -> str:
        """Approve or reject the promotion whose pull request this is."""
        promotion = render.markers(issue.get("body")).get("promotion")
        if promotion is None:
            self.github.comment(
                repo,
                number,
                f"@{login}, nothing awaits approval here: this is not a promotion, so "
                f"`/pitcrew {command.verb}` changed nothing.",
            )
            return f"{command.verb}: not a promotion"
        if self._promotion_of_pull(repo, number) != promotion:
            # The marker is text anyone with write access can copy into another issue: only
            # the pull request pitcrew opened for the promotion decides it.
            self.github.comment(
                repo,
                number,
                f"@{login}, this is not the pull request pitcrew opened for promotion "
                f"`{promotion}`: approve or reject it there, or with `pitcrew approve`. "
                f"`/pitcrew {command.verb}` changed nothing.",
            )
            return f"{command.verb}: not the promotion's pull request"
        approve = command.verb == "approve"
        try:
            self._decide(promotion, approve, f"@{login} on GitHub", command.argument)
        except (ConflictError, NotFoundError) as exc:
            self.github.comment(
                repo,
                number,
                f"@{login}, nothing awaits approval for promotion `{promotion}`: {exc}. "
                f"`/pitcrew {command.verb}` changed nothing.",
            )
            return f"{command.verb}: no promotion awaits approval"
        decision = "approved" if approve else "rejected"
        reason = f" ({command.argument})" if command.argument and not approve else ""
        self.github.comment(repo, number, f"@{login} {decision} promotion `{promotion}`{reason}.")
        return f"promotion {decision}"

    def _log(self, message: str, **extra: Any) -> None:
        if self._logger is not None:
            self._logger.info(message, extra=extra)
