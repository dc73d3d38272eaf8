"""What each Task state of the promotion state machine does (``promotion_steps`` dispatches
on the task's ``step``). A task gets ``{"step", "promotion": {id, app, version, environment,
target}, "execution"}`` (plus ``task_token`` for the waiting tasks, ``error`` after a Catch);
the promotion's own state lives in the store, so each step can be run again (Step Functions
retries) and does what is left to do.

Errors the definition catches by name: ``PromotionRefused`` (the gate said no),
``PromotionUnhealthy`` (no health within the environment's timeout), ``VerificationFailed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pitcrew.errors import ConfigError, ConflictError, InputError, PitcrewError
from pitcrew.events import DomainEvent, EventName, event
from pitcrew.promotions.approvals import REJECTED
from pitcrew.promotions.checks import Checker, CheckResult
from pitcrew.promotions.store import (
    AWAITING_APPROVAL,
    RUNNING,
    Promotion,
    PromotionStore,
    epoch,
    iso,
)

if TYPE_CHECKING:
    from pitcrew.config import Config, EnvironmentConfig
    from pitcrew.kube.clusters import Connect
    from pitcrew.promotions.gitops import GitopsRepo
    from pitcrew.promotions.rollout import Rollout

APPROVAL = "approval"
KUBE_BUDGET_S = 20.0  # of one health poll's reads from the cluster (the function has 60 s)
# A Standard execution ends, past any Catch, at 25,000 history events; one poll of the
# WaitHealthy loop costs about 9. Polls are spaced so a wait takes about POLLS of them, and
# MAX_POLLS (health too slow to come for poll_seconds: 0) fails the wait, rolled back.
POLLS = 150
MAX_POLLS = 2 * POLLS


class PromotionRefused(PitcrewError):
    """The gate refused the promotion (reason in the message)."""


class PromotionUnhealthy(PitcrewError):
    """The environment did not become healthy in time."""


class VerificationFailed(PitcrewError):
    """A configured check failed."""


def merge_purpose(environment: str) -> str:
    return f"merge:{environment}"


def environments(config: Config) -> list[EnvironmentConfig]:
    found = list(config.environments or ())
    if not found:
        raise ConfigError(["environments: no environment is configured; promotions need some"])
    return found


def environment(config: Config, name: str) -> EnvironmentConfig:
    for env in environments(config):
        if env.name == name:
            return env
    known = ", ".join(e.name for e in environments(config))
    raise InputError(f"unknown environment {name!r} (known: {known})")


def poll_seconds(env: EnvironmentConfig) -> int:
    """The Wait between health polls: ``poll_seconds``, raised so that waiting the whole
    ``timeout_minutes`` takes no more than about ``POLLS`` polls."""
    return max(env.poll_seconds, int(env.timeout_minutes * 60 // POLLS))


def lock_ttl_s(env: EnvironmentConfig) -> int:
    """A lock outlives a promotion that died without releasing it by this much."""
    waits = env.timeout_minutes * 2 + env.approval_timeout_minutes + env.merge_timeout_minutes * 2
    return int(waits * 60) + 3600


class PromotionSteps:
    """The steps, with what they talk to injectable (``gitops``: a factory of the GitOps
    repository; ``sfn``: the Step Functions client for tokens; ``publish``: domain events;
    ``kube``: ``connect(name, cluster_config)`` to a cluster, default
    ``pitcrew.kube.clusters.connect``)."""

    def __init__(
        self,
        config: Config,
        *,
        store: PromotionStore | None = None,
        gitops: Callable[[], GitopsRepo] | None = None,
        checker: Checker | None = None,
        sfn: Any | None = None,
        incidents: Any | None = None,
        publish: Callable[..., None] | None = None,
        kube: Connect | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._kube = kube
        self._store = store
        self._gitops_factory = gitops
        self._gitops: GitopsRepo | None = None
        self._checker = checker
        self._sfn = sfn
        self._incidents = incidents
        self._publish = publish
        self.clock = clock

    # -- collaborators, built on first use ---------------------------------------------------
    @property
    def store(self) -> PromotionStore:
        if self._store is None:
            self._store = PromotionStore(clock=self.clock)
        return self._store

    @property
    def gitops(self) -> GitopsRepo:
        if self._gitops is None:
            if self._gitops_factory is not None:
                self._gitops = self._gitops_factory()
            else:
                self._gitops = default_gitops(self.config)
        return self._gitops

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            prometheus = self.config.prometheus.url.get() if self.config.prometheus else None
            self._checker = Checker(prometheus_url=prometheus)
        return self._checker

    @property
    def sfn(self) -> Any:
        if self._sfn is None:
            from pitcrew.aws import client

            self._sfn = client("stepfunctions")
        return self._sfn

    def publish(self, *events: DomainEvent) -> None:
        if self._publish is not None:
            self._publish(*events)
            return
        from pitcrew.events import publish

        publish(*events)

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Run the step a task names; its result is what the state machine reads."""
        step = task.get("step")
        if step == "health_check":
            from pitcrew.promotions.health import (
                EXECUTIONS_ENV,
                check_environments,
                longest_promotion_s,
                reconcile,
                send_heartbeats,
            )

            # Heartbeats first: a waiting approval must not time out because a slow health
            # URL used up the invocation.
            heartbeats = send_heartbeats(self.store, self.sfn)
            reconciled = reconcile(
                self.store,
                self.sfn,
                self.fail,
                self.clock,
                os.environ.get(EXECUTIONS_ENV),
                window_s=longest_promotion_s(self.config),
            )
            checked = check_environments(
                self.config, self.store, self.checker, self.publish, self.clock
            )
            return {**checked, "heartbeats": heartbeats, "reconciled": reconciled}
        handler = _STEPS.get(str(step))
        if handler is None:
            raise InputError(f"unknown step {step!r} (known: {', '.join(sorted(_STEPS))})")
        ref = task.get("promotion") or {}
        if not isinstance(ref, Mapping) or not ref.get("id"):
            raise InputError("the task has no promotion id")
        promotion = self.store.get(str(ref["id"]))
        result: dict[str, Any] = handler(self, promotion, task)
        return result

    # -- helpers -----------------------------------------------------------------------------
    def _change(self, promotion: Promotion, edit: Callable[[Promotion], Any]) -> Promotion:
        return self.store.change(promotion.id, edit)

    def _note(
        self,
        promotion: Promotion,
        name: str,
        outcome: str,
        detail: str = "",
        *,
        env: str | None = None,
    ) -> Promotion:
        now = self.clock()
        where = env if env is not None else promotion.environment
        return self._change(promotion, lambda p: p.end_step(name, where, now, outcome, detail))

    def _started(self, promotion: Promotion, name: str) -> Promotion:
        now = self.clock()
        return self._change(promotion, lambda p: p.begin_step(name, p.environment, now))

    def _once(self, promotion: Promotion, key: str, *events: DomainEvent) -> None:
        """Publish ``events`` unless this promotion already did under ``key``."""
        if key in promotion.published:
            return
        self.publish(*events)
        self._change(
            promotion, lambda p: p.published.append(key) if key not in p.published else None
        )

    def _detail(
        self, promotion: Promotion, task: Mapping[str, Any], **extra: Any
    ) -> dict[str, Any]:
        return {
            "promotion": promotion.ref(),
            "execution": task.get("execution") or promotion.execution,
            **extra,
        }

    def _env(self, promotion: Promotion) -> EnvironmentConfig:
        if promotion.environment is None:
            raise InputError(f"promotion {promotion.id} is in no environment yet")
        return environment(self.config, promotion.environment)

    def _values(self, promotion: Promotion, env: EnvironmentConfig) -> dict[str, str | None]:
        return {
            "app": promotion.app,
            "version": promotion.version,
            "environment": env.name,
            "namespace": env.namespace,
        }

    # -- the steps ---------------------------------------------------------------------------
    def next_stage(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """The next environment of the plan (``stage.done`` when there is none)."""
        self._once(
            promotion,
            "started",
            event(
                EventName.PROMOTION_STARTED,
                self._detail(
                    promotion, task, requested_by=promotion.requested_by, plan=promotion.plan
                ),
            ),
        )
        left = [name for name in promotion.plan if name not in promotion.done]
        if not left:
            return {"promotion": promotion.ref(), "stage": {"done": True}}
        env = environment(self.config, left[0])

        def enter(p: Promotion) -> None:
            p.environment = env.name
            p.status = RUNNING

        promotion = self._change(promotion, enter)
        stage = {
            "done": False,
            "environment": env.name,
            "poll_seconds": poll_seconds(env),
            "approval_timeout_s": max(1, round(env.approval_timeout_minutes * 60)),
            "merge_timeout_s": max(1, round(env.merge_timeout_minutes * 60)),
        }
        return {"promotion": promotion.ref(), "stage": stage}

    def gate(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """Refuse unless the version was verified in the environment before this one, no
        incident is open for the app there, and no other promotion of the app is under way
        into it (a conditional write: the lock)."""
        env = self._env(promotion)
        names = [e.name for e in environments(self.config)]
        index = names.index(env.name)
        try:
            if promotion.kind == "promotion" and index > 0:
                before = names[index - 1]
                if not self.store.verified(promotion.app, before, promotion.version):
                    raise PromotionRefused(
                        f"{promotion.app} {promotion.version} was not verified in {before}: "
                        f"promote it into {before} first (no environment is skipped)"
                    )
            incident = self._open_incident(promotion.app, env)
            if incident is not None:
                raise PromotionRefused(
                    f"incident {incident} is open for {promotion.app} in {env.name}: "
                    "resolve it before promoting"
                )
            try:
                self.store.lock(promotion.app, env.name, promotion.id, lock_ttl_s(env))
            except ConflictError as exc:
                raise PromotionRefused(str(exc)) from None
        except PromotionRefused as exc:
            self._note(promotion, "gate", "refused", str(exc))
            raise
        self._note(promotion, "gate", "passed")
        return {"passed": True}

    def _open_incident(self, app: str, env: EnvironmentConfig) -> str | None:
        if env.cluster is None and env.namespace is None:
            return None  # nowhere to look: the environment does not say where its apps run
        store = self._incidents
        if store is None:
            from pitcrew.incidents.store import IncidentStore

            store = self._incidents = IncidentStore()
        for incident in store.list(status="open", limit=200):
            if incident.workload.name != app:
                continue
            if env.cluster is not None and incident.cluster != env.cluster:
                continue
            if env.namespace is not None and incident.namespace != env.namespace:
                continue
            return str(incident.id)
        return None

    def update(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """The pull request bumping the version in the environment's folder; merged now when
        the environment promotes automatically and needs no approval."""
        env = self._env(promotion)
        needs_approval = env.approval == "required"
        pull = promotion.pull_request(env.name, "update")
        if pull is None:
            self._started(promotion, "update")
            from pitcrew.fixes.render import marker

            title = f"Promote {promotion.app} {promotion.version} to {env.name}"
            if promotion.kind == "rollback":
                title = f"Roll {promotion.app} in {env.name} back to {promotion.version}"
            body = (
                f"pitcrew promotion `{promotion.id}`: {promotion.app} {promotion.version} into "
                f"**{env.name}** (`{env.path}`).\n\n"
                + (
                    "This environment needs an approval: `/pitcrew approve` or "
                    "`/pitcrew reject [reason]` here, or `pitcrew approve "
                    f"{promotion.id}`.\n\n"
                    if needs_approval
                    else ""
                )
                + marker("promotion", promotion.id)
            )
            opened = self.gitops.propose(
                purpose="promote",
                promotion_id=promotion.id,
                app=promotion.app,
                environment=env.name,
                folder=env.path,
                version=promotion.version,
                image=env.images.get(promotion.app),
                title=title,
                body=body,
            )
            pull = {**opened.as_dict(), "environment": env.name, "purpose": "update"}
            if opened.number:
                self.store.index_pull(opened.repo, opened.number, promotion.id, env.name, "update")

            def keep(p: Promotion, pull: dict[str, Any] = pull) -> None:
                if p.pull_request(env.name, "update") is None:
                    p.pull_requests.append(pull)
                if opened.previous is not None:
                    p.replaced.setdefault(env.name, opened.previous)

            promotion = self._change(promotion, keep)
        merged = pull["state"] in ("merged", "unchanged")
        if pull["state"] == "unchanged":
            # The environment runs this version already: nothing changes, nothing to approve.
            # Its health and checks still run, and verify the version there.
            needs_approval = False
        if not merged and env.auto_promote and not needs_approval:
            promotion = self._merge(promotion, env.name, "update")
            merged = True
        state = "merged" if merged else pull["state"]
        detail = (
            f"#{pull['number']} {state}"
            if pull["number"]
            else "already at this version: no change, no approval needed"
        )
        self._note(promotion, "update", "merged" if merged else "opened", detail)
        return {"merged": merged, "approval": needs_approval}

    def _merge(self, promotion: Promotion, env_name: str, purpose: str) -> Promotion:
        pull = promotion.pull_request(env_name, purpose)
        if pull is None or pull["state"] in ("merged", "unchanged"):
            return promotion
        self.gitops.merge(int(pull["number"]), f"{promotion.app} {promotion.version} to {env_name}")
        return self._set_pull_state(promotion, env_name, purpose, "merged")

    def _set_pull_state(
        self, promotion: Promotion, env_name: str, purpose: str, state: str
    ) -> Promotion:
        def edit(p: Promotion) -> None:
            found = p.pull_request(env_name, purpose)
            if found is not None:
                found["state"] = state

        return self._change(promotion, edit)

    def merge(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """Merge the approved update."""
        env = self._env(promotion)
        promotion = self._merge(promotion, env.name, "update")
        self._note(promotion, "merge", "merged")
        return {"merged": True}

    def await_approval(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """Keep the task token (in the store only) and ask for an approval."""
        env = self._env(promotion)
        token = str(task.get("task_token") or "")
        if not token:
            raise InputError("await_approval needs the task token")
        now = self.clock()
        self.store.keep_token(promotion.id, APPROVAL, token, environment=env.name)

        def wait(p: Promotion) -> None:
            p.status = AWAITING_APPROVAL
            p.approval = {"environment": env.name, "requested_at": iso(now)}
            p.begin_step("approval", env.name, now)

        promotion = self._change(promotion, wait)
        pull = promotion.pull_request(env.name, "update")
        detail = self._detail(
            promotion,
            task,
            approve=f"POST /promotions/{promotion.id}/approve",
            reject=f"POST /promotions/{promotion.id}/reject",
            timeout_s=round(env.approval_timeout_minutes * 60),
        )
        if pull and pull.get("number"):
            detail["pull_request"] = {k: pull[k] for k in ("repo", "number", "url")}
        self._once(
            promotion, f"awaiting:{env.name}", event(EventName.PROMOTION_AWAITING_APPROVAL, detail)
        )
        return {"waiting": True}

    def await_merge(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """Keep the task token until the pull request's merge (the ``pull_request`` webhook)
        resumes the execution; if it was merged meanwhile, resume it now."""
        env = self._env(promotion)
        token = str(task.get("task_token") or "")
        if not token:
            raise InputError("await_merge needs the task token")
        purpose = (
            "rollback" if promotion.settings.get(f"phase:{env.name}") == "rollback" else "update"
        )
        pull = promotion.pull_request(env.name, purpose)
        self.store.keep_token(promotion.id, merge_purpose(env.name), token, environment=env.name)
        self._started(promotion, "await merge")
        if pull is not None and pull.get("number"):
            state = self.gitops.state(int(pull["number"]))
            if state != "open":
                from pitcrew.promotions.updates import resume_merge

                resume_merge(
                    self.store, self.sfn, promotion.id, env.name, merged=state == "merged", by=""
                )
        return {"waiting": True}

    def check_health(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """One look at the environment's health URL and, where it has a cluster, the app's
        rollout there; ``healthy`` false means "poll again", ``PromotionUnhealthy`` once the
        environment's timeout has passed, or at once for a rollout that cannot complete."""
        env = self._env(promotion)
        phase = promotion.settings.get(f"phase:{env.name}", "update")
        key = f"deadline:{env.name}:{phase}"
        now = self.clock()
        if key not in promotion.settings:
            deadline = now + env.timeout_minutes * 60

            def start(p: Promotion) -> None:
                p.settings.setdefault(key, deadline)
                p.begin_step("wait healthy", env.name, now)

            promotion = self._change(promotion, start)
        rollout = self._rollout(promotion, env, phase) if env.cluster is not None else None
        if rollout is not None and rollout.failed:
            reason = f"{env.name} cannot become healthy: {rollout.detail}"
            self._note(promotion, "wait healthy", "failed", reason)
            raise PromotionUnhealthy(reason)
        result = self.checker.health(env.health_url.get())
        ok = result.ok and (rollout is None or rollout.done)
        detail = result.detail + (f"; {rollout.detail}" if rollout is not None else "")
        if ok:
            self._note(promotion, "wait healthy", "healthy", detail)
            return {"healthy": True}
        if now >= float(promotion.settings[key]):
            reason = (
                f"{env.name} did not become healthy within {env.timeout_minutes * 60:g} s: {detail}"
            )
            self._note(promotion, "wait healthy", "timed out", reason)
            raise PromotionUnhealthy(reason)
        polls = f"polls:{env.name}:{phase}"

        def count(p: Promotion) -> None:
            p.settings[polls] = int(p.settings.get(polls, 0)) + 1

        promotion = self._change(promotion, count)
        if int(promotion.settings[polls]) >= MAX_POLLS:
            reason = (
                f"{env.name} did not become healthy in {MAX_POLLS} polls (poll_seconds "
                f"{env.poll_seconds} is too short for its timeout_minutes): {detail}"
            )
            self._note(promotion, "wait healthy", "timed out", reason)
            raise PromotionUnhealthy(reason)
        return {"healthy": False, "detail": detail}

    def _rollout(self, promotion: Promotion, env: EnvironmentConfig, phase: str) -> Rollout:
        """The app's rollout in the environment's cluster: of the promoted version, or of the
        version it replaced while rolling back. An unreachable cluster is "not yet"."""
        from pitcrew.kube.clusters import cluster_for
        from pitcrew.promotions.rollout import Rollout, RolloutReader, check_rollout

        chosen = cluster_for(str(env.cluster), self.config)
        if chosen is None:
            configured = ", ".join(sorted(self.config.clusters or {})) or "none"
            raise ConfigError(
                [
                    f"environments.{env.name}.cluster: no cluster {env.cluster!r} is "
                    f"configured (clusters: {configured})"
                ]
            )
        name, cluster = chosen
        rolling_back = phase == "rollback"
        purpose = "rollback" if rolling_back else "update"
        version = promotion.replaced.get(env.name) if rolling_back else promotion.version
        if version is None:
            return Rollout(True, "the version rolled back to is unknown: not checked")
        if self._kube is None:
            from pitcrew.kube.clusters import connect

            self._kube = connect
        try:
            api_client = self._kube(name, cluster)
        except ConfigError:
            raise
        except PitcrewError as exc:
            return Rollout(False, f"cluster {name!r} cannot be reached: {exc}")
        try:
            return check_rollout(
                RolloutReader(api_client, budget_s=KUBE_BUDGET_S),
                app=promotion.app,
                version=version,
                namespace=env.namespace or "default",
                image=env.images.get(promotion.app),
                argocd=env.argocd,
                flux=env.flux,
                applied=self._applied(promotion, env.name, purpose),
            )
        except ConfigError:
            raise
        except PitcrewError as exc:
            return Rollout(False, f"cluster {name!r}: {exc}")
        finally:
            api_client.close()

    def _applied(self, promotion: Promotion, env_name: str, purpose: str) -> Callable[[str], bool]:
        """Whether a Flux revision holds the promotion's change: the pull request's merge
        commit, or the branch's head now (which has it, once merged)."""
        from pitcrew.promotions.rollout import revision_sha

        pull = promotion.pull_request(env_name, purpose)
        number = int(pull["number"]) if pull and pull.get("number") else 0

        def applied(revision: str) -> bool:
            if not number:
                return True  # the folder already had the version: nothing new to apply
            sha = revision_sha(revision)
            merged = self.gitops.merge_commit(number)
            if merged is None:
                return False
            return sha == merged or sha == self.gitops.head()

        return applied

    def verify(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        env = self._env(promotion)
        self._started(promotion, "verify")
        values = self._values(promotion, env)
        results: list[CheckResult] = [self.checker.run(check, values) for check in env.checks]
        failed = [r for r in results if not r.ok]
        summary = "; ".join(r.detail for r in (failed or results)) or "no checks configured"
        if failed:
            reason = f"verify failed in {env.name}: {summary}"
            self._note(promotion, "verify", "failed", reason)
            raise VerificationFailed(reason)
        self._note(promotion, "verify", "passed", summary)
        return {"verified": True, "checks": [r.as_dict() for r in results]}

    def record(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """The environment now runs the version, verified: current, previous, stable."""
        env = self._env(promotion)
        self.store.mark_verified(promotion.app, env.name, promotion.version, promotion.id)
        versions = self.store.record_version(
            env.name,
            promotion.app,
            promotion.version,
            promotion.id,
            stable=True,
            rollback=promotion.kind == "rollback",
            replaced=promotion.replaced.get(env.name),
        )

        def done(p: Promotion) -> None:
            if env.name not in p.done:
                p.done.append(env.name)

        promotion = self._change(promotion, done)
        self.store.unlock(promotion.app, env.name, promotion.id)
        self._note(promotion, "record", "recorded", f"previous {versions.previous or 'none'}")
        return {"recorded": True}

    def rollback(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        """After a failure: if the update was merged, the pull request restoring the version
        it replaced (merged where the environment promotes automatically)."""
        env = self._env(promotion)
        reason = _reason(task, promotion)

        def failing(p: Promotion) -> None:
            p.reason = p.reason or reason
            p.failed_step = p.failed_step or _failed_step(p)

        promotion = self._change(promotion, failing)
        update = promotion.pull_request(env.name, "update")
        if update is None or update["state"] not in ("merged",):
            self._close_open(promotion)
            self._note(promotion, "rollback", "not needed", "the update was never merged")
            return {"needed": False, "merged": False}
        previous = promotion.replaced.get(env.name)
        if previous is None:
            self._note(promotion, "rollback", "impossible", "the replaced version is unknown")
            return {"needed": False, "merged": False}
        pull = promotion.pull_request(env.name, "rollback")
        if pull is None:
            self._started(promotion, "rollback")
            from pitcrew.fixes.render import marker

            opened = self.gitops.propose(
                purpose="rollback",
                promotion_id=promotion.id,
                app=promotion.app,
                environment=env.name,
                folder=env.path,
                version=previous,
                image=env.images.get(promotion.app),
                title=f"Roll {promotion.app} in {env.name} back to {previous}",
                body=(
                    f"pitcrew rolls back promotion `{promotion.id}` ({promotion.app} "
                    f"{promotion.version}) in **{env.name}**: {promotion.reason}\n\n"
                    + marker("promotion", promotion.id)
                ),
            )
            pull = {**opened.as_dict(), "environment": env.name, "purpose": "rollback"}
            if opened.number:
                self.store.index_pull(
                    opened.repo, opened.number, promotion.id, env.name, "rollback"
                )

            def keep(p: Promotion, pull: dict[str, Any] = pull) -> None:
                if p.pull_request(env.name, "rollback") is None:
                    p.pull_requests.append(pull)
                p.settings[f"phase:{env.name}"] = "rollback"

            promotion = self._change(promotion, keep)
        merged = pull["state"] in ("merged", "unchanged")
        if not merged and env.auto_promote:
            promotion = self._merge(promotion, env.name, "rollback")
            merged = True
        self._note(promotion, "rollback", "merged" if merged else "opened", f"back to {previous}")
        return {"needed": True, "merged": merged}

    def rolled_back(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        env = self._env(promotion)
        previous = promotion.replaced.get(env.name)
        if previous is not None:
            before = self.store.versions(env.name, promotion.app)
            self.store.record_version(
                env.name, promotion.app, previous, promotion.id, stable=before.stable == previous
            )
        promotion = self._end(promotion, "rolled_back")
        pull = promotion.pull_request(env.name, "rollback") or {}
        self._once(
            promotion,
            "rolled_back",
            event(
                EventName.PROMOTION_ROLLED_BACK,
                self._detail(
                    promotion,
                    task,
                    rolled_back_to=previous,
                    reason=promotion.reason,
                    pull_request={k: pull.get(k) for k in ("repo", "number", "url")},
                ),
            ),
        )
        return {"status": promotion.status}

    def fail(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        error = task.get("error") or {}
        refused = isinstance(error, Mapping) and error.get("Error") == "PromotionRefused"
        reason = _reason(task, promotion)

        def failing(p: Promotion) -> None:
            p.reason = p.reason or reason
            p.failed_step = p.failed_step or _failed_step(p)

        promotion = self._change(promotion, failing)
        self._close_open(promotion)
        promotion = self._end(promotion, "refused" if refused else "failed")
        self._once(
            promotion,
            "failed",
            event(
                EventName.PROMOTION_FAILED,
                self._detail(promotion, task, step=promotion.failed_step, reason=promotion.reason),
            ),
        )
        return {"status": promotion.status}

    def succeed(self, promotion: Promotion, task: Mapping[str, Any]) -> dict[str, Any]:
        promotion = self._end(promotion, "succeeded")
        pull = promotion.pull_request(promotion.target, "update") or {}
        created = epoch(promotion.created_at)
        self._once(
            promotion,
            "succeeded",
            event(
                EventName.PROMOTION_SUCCEEDED,
                self._detail(
                    promotion,
                    task,
                    pull_request={k: pull.get(k) for k in ("repo", "number", "url", "state")},
                    approved_by=(promotion.approval or {}).get("decided_by"),
                    previous_version=promotion.replaced.get(promotion.target),
                    duration_s=round(self.clock() - created) if created else None,
                ),
            ),
        )
        return {"status": promotion.status}

    # -- endings -----------------------------------------------------------------------------
    def _end(self, promotion: Promotion, status: str) -> Promotion:
        now = self.clock()

        def end(p: Promotion) -> None:
            if not p.ended:
                p.status = status
                p.ended_at = iso(now)
            for step in p.steps:
                if step.get("ended_at") is None:
                    step.update(ended_at=iso(now), outcome="stopped")

        promotion = self._change(promotion, end)
        for name in promotion.plan:
            self.store.unlock(promotion.app, name, promotion.id)
        for token in self.store.waiting_tokens(promotion.id):
            self.store.take_token(promotion.id, str(token["sk"]))
        return promotion

    def _close_open(self, promotion: Promotion) -> None:
        """Close the promotion's update pull requests that were never merged."""
        for pull in promotion.pull_requests:
            if pull.get("state") != "open" or not pull.get("number"):
                continue
            number = int(pull["number"])
            with contextlib.suppress(PitcrewError):
                self.gitops.github.comment(
                    self.gitops.repo,
                    number,
                    f"pitcrew closes this: promotion `{promotion.id}` ended: {promotion.reason}",
                )
                self.gitops.close(number)
                self._set_pull_state(
                    promotion, str(pull["environment"]), str(pull["purpose"]), "closed"
                )


def _reason(task: Mapping[str, Any], promotion: Promotion | None = None) -> str:
    error = task.get("error")
    if not isinstance(error, Mapping):
        return "failed"
    name = str(error.get("Error") or "failed")
    cause = error.get("Cause")
    text = str(cause or "")
    decision = (promotion.approval or {}) if promotion is not None else {}
    if name == REJECTED and decision.get("decision") == "rejected":
        # The decision as kept, not the Cause: not every executor passes SendTaskFailure's on.
        why = f": {decision['reason']}" if decision.get("reason") else ""
        return f"rejected by {decision.get('decided_by')}{why}"
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text)
        if isinstance(parsed, Mapping) and parsed.get("errorMessage"):
            text = str(parsed["errorMessage"])
    if name == "States.Timeout":
        return f"timed out waiting: {text}" if text else "timed out waiting (approval or merge)"
    if name == "States.HeartbeatTimeout":
        return "no heartbeat reached the waiting approval (its task token was lost): " + (
            text or "the scheduled health check did not run"
        )
    return text or name


def _failed_step(promotion: Promotion) -> str | None:
    for step in reversed(promotion.steps):
        if step.get("outcome") not in ("passed", "merged", "healthy", "recorded", "opened"):
            return str(step["step"])
    return promotion.steps[-1]["step"] if promotion.steps else None


def default_gitops(config: Config) -> GitopsRepo:
    if config.github is None or config.gitops is None:
        raise ConfigError(["github and gitops: promotions need both configured"])
    from pitcrew.github.client import connect
    from pitcrew.promotions.gitops import GitopsRepo

    # A promotion writes a handful of times per environment, minutes apart: no burst for
    # GitHub's spacing of writes to smooth out.
    github = connect(config.github, seconds_between_writes=None)
    return GitopsRepo(github, config.gitops.repo, config.gitops.branch)


_STEPS: dict[str, Callable[[PromotionSteps, Promotion, Mapping[str, Any]], dict[str, Any]]] = {
    "next_stage": PromotionSteps.next_stage,
    "gate": PromotionSteps.gate,
    "update": PromotionSteps.update,
    "merge": PromotionSteps.merge,
    "await_approval": PromotionSteps.await_approval,
    "await_merge": PromotionSteps.await_merge,
    "check_health": PromotionSteps.check_health,
    "verify": PromotionSteps.verify,
    "record": PromotionSteps.record,
    "rollback": PromotionSteps.rollback,
    "rolled_back": PromotionSteps.rolled_back,
    "fail": PromotionSteps.fail,
    "succeed": PromotionSteps.succeed,
}
