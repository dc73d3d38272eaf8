"""The fix flow (``fix_pr``, on ``IncidentDiagnosed``): a diagnosis with a patch becomes one
reviewable change in the GitOps repository, guarded.

In order: skip what has no patch or no GitHub configuration; never twice (an open pitcrew
pull request for the same signature gets a comment instead); at most
``gitops.max_fix_attempts`` pull requests per workload per 24 h (past that, one timeline
entry, one comment and one ``FixPullRequestFailed``, no pull request); find the manifest
(``pitcrew.gitops``); check the patch against the allowlist again, against the manifest as
Git has it, right before anything is written (an out-of-policy patch never reaches a
commit); then either ``safe_mode``'s comment on the workload's tracking issue, or one commit
on ``pitcrew/fix-<namespace>-<workload>-<short id>`` and a labelled pull request, recorded on
the incident and published as ``FixPullRequestOpened``.

Failures are never silent: a permanent one (no manifest, refused by GitHub, bad patch) is
recorded on the incident's timeline as ``fix failed`` with the reason, logged, counted
(metric ``FixFailed``) and published as ``FixPullRequestFailed``; a transient one (GitHub
5xx or rate limits, after the retries of ``pitcrew.github``) is recorded on the timeline and
raised, so the invocation is retried and, after Lambda's retries, kept in the function's
dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pitcrew.errors import InputError, PitcrewError, PublishError, TransientServiceError
from pitcrew.events import EventName, event, publish
from pitcrew.fixes import render
from pitcrew.records import frozen

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

    from pitcrew.config import Config, GitopsConfig
    from pitcrew.github import GitHub
    from pitcrew.incidents.store import Incident, IncidentStore

# Kinds with a manifest in Git that a patch can change (a bare Pod, a Node or an alert cannot).
PATCHABLE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
WINDOW = timedelta(hours=24)
EXHAUSTED = "fix attempts exhausted"
CheckPatch = Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[str]]


@frozen
class FixOutcome:
    """What the flow did: ``opened``, ``commented`` (never twice), ``proposed`` (safe mode),
    ``limited`` (attempts), ``refused`` (allowlist), ``unchanged`` (already in Git),
    ``skipped`` or ``failed``; ``url`` of what was written on GitHub."""

    action: str
    detail: str
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "detail": self.detail, "url": self.url}


class RepoSnapshot:
    """The GitOps repository at one commit, read through GitHub (a ``ManifestSource``)."""

    def __init__(self, github: GitHub, repo: str, sha: str) -> None:
        self.github = github
        self.repo = repo
        self.sha = sha

    def files(self) -> tuple[str, ...]:
        return self.github.list_files(self.repo, self.sha)

    def read(self, path: str) -> str | None:
        found = self.github.read_file(self.repo, path, self.sha)
        return found.text if found is not None else None


def _now() -> datetime:
    return datetime.now(UTC)


def _default_check(patch: Mapping[str, Any], workload: Mapping[str, Any] | None) -> list[str]:
    from pitcrew.incidents.patches import check_patch

    return check_patch(patch, workload)


class FixFlow:
    """The fix flow for one configuration. GitHub, the incident store, publishing, the clock
    and the allowlist check are injectable; by default they are built on first use."""

    def __init__(
        self,
        config: Config,
        *,
        github: GitHub | None = None,
        store: IncidentStore | None = None,
        publish: Callable[..., None] = publish,
        clock: Callable[[], datetime] = _now,
        check_patch: CheckPatch = _default_check,
        logger: Logger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._github = github
        self._store = store
        self._publish = publish
        self._clock = clock
        self._check = check_patch
        self._logger = logger
        self._metrics = metrics

    @property
    def github(self) -> GitHub:
        if self._github is None:
            from pitcrew.github import connect

            assert self.config.github is not None
            self._github = connect(self.config.github)
        return self._github

    @property
    def store(self) -> IncidentStore:
        if self._store is None:
            from pitcrew.incidents.store import IncidentStore

            self._store = IncidentStore()
        return self._store

    # -- entry point -------------------------------------------------------------------------
    def handle(self, incident: Mapping[str, Any]) -> FixOutcome:
        """Propose the fix of one diagnosed incident (the ``IncidentDiagnosed`` detail)."""
        diagnosis = incident.get("diagnosis") or {}
        patch = diagnosis.get("patch")
        workload = incident.get("workload") or {}
        if not patch:
            return self._skip(incident, "the diagnosis has no patch")
        if self.config.github is None or self.config.gitops is None:
            return self._skip(incident, "no github/gitops configuration")
        if workload.get("kind") not in PATCHABLE_KINDS:
            return self._skip(incident, f"a {workload.get('kind')} has no manifest to patch")
        try:
            return self._propose(incident, patch, self.config.gitops)
        except PublishError:
            raise  # the change is on GitHub; only the event is missing: retry the event
        except TransientServiceError as exc:
            self._failed(incident, exc, permanent=False)
            raise
        except (InputError, PitcrewError) as exc:
            return self._failed(incident, exc)

    # -- the steps ---------------------------------------------------------------------------
    def _propose(
        self, incident: Mapping[str, Any], patch: Mapping[str, Any], gitops: GitopsConfig
    ) -> FixOutcome:
        # Imported here: the handler module imports fast, and most events need no manifest.
        from pitcrew.gitops import WorkloadId, find_manifest, render_change

        repo = gitops.repo
        if not gitops.safe_mode:
            # In order: this fix's own event still to publish (a retry), a fix already open
            # for the signature, the attempt limit.
            settled = (
                self._announce_pending(incident)
                or self._comment_on_open_fix(incident, repo)
                or self._limit_attempts(incident, repo, gitops.max_fix_attempts)
            )
            if settled is not None:
                return settled
        workload = incident["workload"]
        target_id = WorkloadId(
            cluster=str(incident.get("cluster") or "default"),
            namespace=incident.get("namespace"),
            kind=str(workload["kind"]),
            name=str(workload["name"]),
        )
        head = self.github.branch_head(repo, gitops.branch)
        snapshot = RepoSnapshot(self.github, repo, head)
        target = find_manifest(snapshot, target_id, gitops.manifest_paths, patch)
        # The allowlist again, against what Git holds, before anything is written.
        problems = self._check(patch, target.workload)
        if problems:
            detail = "; ".join(problems)
            self._note(incident, "fix refused", f"the patch is outside the allowlist: {detail}")
            self._count("FixRefused")
            return FixOutcome("refused", detail)
        change = render_change(target, patch)
        if change.empty:
            self._note(incident, "fix already in git", f"{target.path} already says this")
            return FixOutcome("unchanged", f"{target.path} already has the patched values")
        if gitops.safe_mode:
            return self._track(incident, repo, target.how, change.diff)
        commit = self.github.commit_files(
            repo,
            parent_sha=head,
            files=change.files,
            message=render.commit_message(incident, ", ".join(change.files)),
        )
        branch = render.branch_name(incident)
        self.github.set_branch(repo, branch, commit)
        pull, new = self.github.open_pull(
            repo,
            base=gitops.branch,
            branch=branch,
            title=render.title(incident),
            body=render.pull_body(incident, target.how, change.diff),
            labels=[render.LABEL],
        )
        record = {
            "repo": repo,
            "number": pull.number,
            "url": pull.url,
            "title": pull.title,
            "branch": branch,
            "state": "open",
        }
        updated, first = self.store.attach_new_pull_request(
            str(incident["id"]), record, self._clock()
        )
        if first:  # else a delivery racing this one attached it, and announces it
            self._announce(updated)
        self._log("fix pull request opened", incident, url=pull.url, new=new, announced=first)
        return FixOutcome("opened", f"pull request #{pull.number}", pull.url)

    def _announce(self, incident: Incident) -> None:
        """``FixPullRequestOpened`` for the incident's pull request, then noted as out (a
        failed publish raises, and the event's retry announces it: ``_announce_pending``)."""
        self._count("FixPullRequestOpened")
        self._publish(event(EventName.FIX_PULL_REQUEST_OPENED, incident.as_api()))
        if incident.announcing is not None:
            self.store.announced(incident.id, incident.announcing)

    def _announce_pending(self, incident: Mapping[str, Any]) -> FixOutcome | None:
        """A retry after the pull request was opened but its event was not published: the
        event now, and neither a second pull request nor a "diagnosed again" comment."""
        stored = self.store.get(str(incident["id"]))
        pull = stored.pull_request or {}
        if stored.announcing is None or pull.get("number") != stored.announcing:
            return None
        self._announce(stored)
        self._log("fix pull request announced on retry", incident, url=pull.get("url"))
        return FixOutcome("opened", f"pull request #{stored.announcing}", pull.get("url"))

    def _comment_on_open_fix(self, incident: Mapping[str, Any], repo: str) -> FixOutcome | None:
        """Never twice: the open pitcrew pull request for this signature gets a comment."""
        signature = str(incident.get("signature"))
        for item in self.github.issues(repo, label=render.LABEL, state="open"):
            if item.is_pull and render.markers(item.body).get("signature") == signature:
                url = self.github.comment(repo, item.number, render.diagnosed_again(incident))
                current = incident.get("pull_request") or {}
                if current.get("number") != item.number:
                    self.store.set_pull_request(
                        str(incident["id"]),
                        {
                            "repo": repo,
                            "number": item.number,
                            "url": item.url,
                            "title": item.title,
                            "state": "open",
                        },
                        self._clock(),
                    )
                self._note(incident, "fix already proposed", f"commented on #{item.number}: {url}")
                return FixOutcome("commented", f"pull request #{item.number} is open", url)
        return None

    def _limit_attempts(
        self, incident: Mapping[str, Any], repo: str, limit: int
    ) -> FixOutcome | None:
        """At most ``limit`` pitcrew pull requests per workload in 24 h."""
        since = self._clock() - WINDOW
        key = render.workload_key(incident)
        recent = [
            item
            for item in self.github.issues(repo, label=render.LABEL, state="all", since=since)
            if item.is_pull
            and item.created_at >= since
            and render.markers(item.body).get("workload") == key
        ]
        if len(recent) < limit:
            return None
        detail = f"{len(recent)} pull request(s) for {key} in 24 h; the limit is {limit}"
        already = any(e.get("event") == EXHAUSTED for e in incident.get("timeline") or [])
        url = None
        if not already:
            self._note(incident, EXHAUSTED, detail)
            self._count("FixAttemptsExhausted")
            # The one event: subscribers learn that no further fix will come today.
            self._publish(
                event(EventName.FIX_PULL_REQUEST_FAILED, {**incident, "error": f"{detail}"})
            )
            if recent:
                newest = max(recent, key=lambda item: item.created_at)
                url = self.github.comment(
                    repo, newest.number, render.attempts_exhausted(incident, limit)
                )
        return FixOutcome("limited", detail, url)

    def _track(self, incident: Mapping[str, Any], repo: str, how: str, diff: str) -> FixOutcome:
        """Safe mode: the proposal as a comment on the workload's one tracking issue."""
        key = render.workload_key(incident)
        tracking = next(
            (
                item
                for item in self.github.issues(repo, label=render.LABEL, state="open")
                if not item.is_pull and render.markers(item.body).get("tracking") == key
            ),
            None,
        )
        if tracking is None:
            tracking = self.github.create_issue(
                repo,
                title=render.tracking_title(incident),
                body=render.tracking_body(incident),
                labels=[render.LABEL],
            )
        url = self.github.comment(
            repo, tracking.number, render.proposal_comment(incident, how, diff)
        )
        self.store.set_pull_request(
            str(incident["id"]),
            {
                "repo": repo,
                "issue": tracking.number,
                "url": tracking.url,
                "state": "open",
                "comment": url,
                "safe_mode": True,
            },
            self._clock(),
        )
        self._count("FixProposed")
        self._log("fix proposed on the tracking issue", incident, url=url)
        return FixOutcome("proposed", f"comment on tracking issue #{tracking.number}", url)

    # -- bookkeeping -------------------------------------------------------------------------
    def _skip(self, incident: Mapping[str, Any], why: str) -> FixOutcome:
        self._log(f"no fix: {why}", incident)
        return FixOutcome("skipped", why)

    def _failed(
        self, incident: Mapping[str, Any], exc: Exception, *, permanent: bool = True
    ) -> FixOutcome:
        """Record the failure on the incident; a permanent one is also published
        (``FixPullRequestFailed``), a transient one is retried first."""
        detail = str(exc)
        self._count("FixFailed")
        if self._logger is not None:
            self._logger.error(
                "fix failed", extra={"incident": incident.get("id"), "error": detail}
            )
        self._note(incident, "fix failed", detail)
        if permanent:
            self._publish(
                event(EventName.FIX_PULL_REQUEST_FAILED, {**incident, "error": detail[:1000]})
            )
        return FixOutcome("failed", detail)

    def _note(self, incident: Mapping[str, Any], what: str, detail: str) -> None:
        try:
            self.store.add_timeline(str(incident["id"]), what, self._clock(), detail=detail)
        except PitcrewError as exc:  # the log line still says what happened
            if self._logger is not None:
                self._logger.error(
                    "cannot record on the incident",
                    extra={"incident": incident.get("id"), "entry": what, "error": str(exc)},
                )

    def _count(self, name: str) -> None:
        if self._metrics is not None:
            from aws_lambda_powertools.metrics import MetricUnit

            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)

    def _log(self, message: str, incident: Mapping[str, Any], **extra: Any) -> None:
        if self._logger is not None:
            self._logger.info(
                message,
                extra={
                    "incident": incident.get("id"),
                    "signature": incident.get("signature"),
                    **extra,
                },
            )
