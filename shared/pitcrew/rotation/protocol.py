"""The Secrets Manager rotation protocol: the four steps ``createSecret``, ``setSecret``,
``testSecret``, ``finishSecret``, with the guards of AWS's reference rotation functions.

Before any step: rotation must be enabled on the secret; the token must be a version of it;
a version already ``AWSCURRENT`` means the rotation is done (return); otherwise it must be
staged ``AWSPENDING``. Every step is safe to run twice:

- createSecret keeps a pending value that exists, unless it equals AWSCURRENT's (moto, the
  local emulator, fills the pending version with the current value: that is no new value,
  and on AWS a pending version never legitimately holds the current value either);
- setSecret and testSecret are the strategy's, which are idempotent;
- finishSecret moves AWSCURRENT to the token (Secrets Manager moves AWSPREVIOUS with it)
  and removes AWSPENDING wherever it is, so no stray label blocks the next rotation.

Outcomes are domain events: ``SecretRotated`` after finishSecret, ``SecretRotationFailed``
naming the step that failed; neither ever carries a value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pitcrew.config import Config, RotationConfig
from pitcrew.errors import BadRequestError, ConflictError, PitcrewError
from pitcrew.events import DomainEvent, EventName, event
from pitcrew.rotation.store import CURRENT, PENDING, SecretInfo, SecretStore
from pitcrew.rotation.strategy import RotationContext, Strategy, strategy_name

log = logging.getLogger("pitcrew.rotation")


class RotationStep(StrEnum):
    """The steps Secrets Manager invokes, in order."""

    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"


def default_strategies(config: Config | None) -> dict[str, Strategy]:
    """Every strategy, built from the configuration (imports stay lazy: pg8000 and httpx
    load only when a secret uses them)."""
    from pitcrew.rotation.endpoints import HttpStrategy
    from pitcrew.rotation.github_webhook import GithubWebhookStrategy
    from pitcrew.rotation.password import PasswordStrategy
    from pitcrew.rotation.postgres import PostgresStrategy

    return {
        "password": PasswordStrategy(),
        "postgres": PostgresStrategy(
            config.rotation.postgres if config and config.rotation else None
        ),
        "github-webhook": GithubWebhookStrategy(config.github if config else None),
        "http": HttpStrategy(),
    }


class SecretRotation:
    """Runs one step of a rotation. Secrets Manager, the strategies, the event publisher and
    the clock are injected; the defaults are the real ones."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        store: SecretStore | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        publish: Callable[..., None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = (config.rotation if config else None) or RotationConfig()
        self.store = store or SecretStore()
        self._strategies = dict(strategies) if strategies is not None else None
        self._config = config
        self._publish = publish
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def strategies(self) -> dict[str, Strategy]:
        if self._strategies is None:
            self._strategies = default_strategies(self._config)
        return self._strategies

    def handle(self, event: Mapping[str, Any]) -> RotationStep:
        """Run the step Secrets Manager's invocation asks for (``Step``, ``SecretId``,
        ``ClientRequestToken``); the step run. ``BadRequestError`` names a missing key."""
        missing = [
            key
            for key in ("Step", "SecretId", "ClientRequestToken")
            if not isinstance(event.get(key), str) or not event[key]
        ]
        if missing:
            raise BadRequestError(
                f"not a Secrets Manager rotation request: no {', '.join(missing)}"
            )
        self.run(event["Step"], event["SecretId"], event["ClientRequestToken"])
        return RotationStep(event["Step"])

    def run(self, step: str, secret_id: str, token: str) -> None:
        """Run ``step`` for the version ``token`` of ``secret_id``."""
        try:
            chosen = RotationStep(step)
        except ValueError:
            raise BadRequestError(
                f"unknown rotation step {step!r} (one of {', '.join(RotationStep)})"
            ) from None
        secret = self.store.describe(secret_id)
        strategy_label = secret.tags.get("pitcrew:rotation", "")
        try:
            # A guard refusing is a failed rotation too: reported like any other step error.
            if not self._needs_work(secret, token):
                log.info(
                    "%s: version %s is already AWSCURRENT; %s has nothing to do",
                    secret.name,
                    token,
                    step,
                )
                return
            strategy = self.strategies[strategy_name(secret)]
            self._dispatch(chosen, secret, token, strategy)
        except Exception as exc:
            # pitcrew's errors and any library's alike: reported, then raised for Lambda.
            self._report_failure(secret, token, chosen, strategy_label, exc)
            raise
        log.info("%s: %s done for version %s (%s)", secret.name, step, token, strategy_label)
        if chosen is RotationStep.FINISH:
            self._emit(self._rotated(secret, token, strategy_label))

    # --- guards --------------------------------------------------------------------------

    @staticmethod
    def _needs_work(secret: SecretInfo, token: str) -> bool:
        if not secret.rotation_enabled:
            raise ConflictError(f"{secret.name}: rotation is not enabled on this secret")
        stages = secret.stages.get(token)
        if stages is None:
            raise ConflictError(f"{secret.name}: version {token} has no stage for rotation")
        if CURRENT in stages:
            return False
        if PENDING not in stages:
            raise ConflictError(f"{secret.name}: version {token} is not staged AWSPENDING")
        return True

    # --- the steps -----------------------------------------------------------------------

    def _dispatch(
        self, step: RotationStep, secret: SecretInfo, token: str, strategy: Strategy
    ) -> None:
        current = self.store.value(secret.arn, stage=CURRENT)
        pending = self.store.value_or_none(secret.arn, version=token, stage=PENDING)
        if pending == current:
            pending = None  # no new value yet (see the module docstring)
        context = RotationContext(
            secret=secret,
            token=token,
            store=self.store,
            current=current,
            pending=pending,
            settings=self.settings,
        )
        if step is RotationStep.CREATE:
            if pending is None:
                value = strategy.create(context)
                if value == current:
                    raise ConflictError(f"{secret.name}: the strategy made no new value")
                self.store.put_pending(secret.arn, token, value)
        elif step is RotationStep.SET:
            strategy.set(context)
        elif step is RotationStep.TEST:
            strategy.test(context)
        else:
            self._finish(secret, token, pending)

    def _finish(self, secret: SecretInfo, token: str, pending: str | None) -> None:
        if pending is None:
            raise ConflictError(f"{secret.name}: version {token} has no new value to make current")
        current_version = secret.version_with(CURRENT)
        self.store.move_stage(secret.arn, CURRENT, to=token, away_from=current_version)
        for version, stages in secret.stages.items():
            if PENDING in stages:
                self.store.move_stage(secret.arn, PENDING, to=None, away_from=version)

    # --- events --------------------------------------------------------------------------

    def _rotated(self, secret: SecretInfo, token: str, strategy: str) -> DomainEvent:
        return event(
            EventName.SECRET_ROTATED,
            {
                "secret": secret.name,
                "arn": secret.arn,
                "store": "secretsmanager",
                "strategy": strategy,
                "version": token,
                "rotated_at": self._now(),
                "next_rotation": secret.next_rotation,
            },
            resources=[secret.arn],
        )

    def _report_failure(
        self, secret: SecretInfo, token: str, step: RotationStep, strategy: str, exc: Exception
    ) -> None:
        log.error("%s: %s failed for version %s: %s", secret.name, step, token, exc)
        failed = event(
            EventName.SECRET_ROTATION_FAILED,
            {
                "secret": secret.name,
                "arn": secret.arn,
                "store": "secretsmanager",
                "strategy": strategy,
                "step": step.value,
                "version": token,
                "error": f"{type(exc).__name__}: {exc}",
                "failed_at": self._now(),
            },
            resources=[secret.arn],
        )
        try:
            self._emit(failed)
        except PitcrewError as publish_error:
            # The step's own error is what Secrets Manager must see; this one is logged.
            log.error("%s: SecretRotationFailed not published: %s", secret.name, publish_error)

    def _emit(self, *events: DomainEvent) -> None:
        if self._publish is not None:
            self._publish(*events)
            return
        from pitcrew.events import publish

        publish(*events)

    def _now(self) -> str:
        return self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
