"""Delivering one domain event to every channel that wants it.

``Notifier.dispatch`` composes the message once, sends it to each matching channel in
parallel (so a slow or failing channel costs the others nothing), and writes each permanent
failure to the dead-letter queue. It raises only when that write fails: a failure that is
parked in the queue must not make EventBridge retry the event, which would repeat the message
on every channel that already has it.

Retries share one budget per event: ``RETRY_BUDGET_S``, shortened when the function has less
time left than that plus ``RESERVE_S`` (kept for a last slow attempt and the queue write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit

from pitcrew.config import Config, NotificationConfig
from pitcrew.errors import PitcrewError
from pitcrew.notify.channels import Channel, channel_for
from pitcrew.notify.compose import compose
from pitcrew.notify.deadletter import DeadLetters, Failure
from pitcrew.notify.http import HttpDelivery, RetryBudget
from pitcrew.notify.message import Message
from pitcrew.notify.routing import BusEvent, route
from pitcrew.observability import Instruments, redact
from pitcrew.records import frozen

RETRY_BUDGET_S = 25.0
RESERVE_S = 12.0
MAX_PARALLEL = 8


@frozen
class Delivery:
    """One channel that got the event."""

    index: int
    kind: str
    target: str
    attempts: int


@frozen
class DispatchReport:
    """What happened to one event: who got it, and who did not (and why)."""

    event: str
    event_id: str
    delivered: tuple[Delivery, ...] = ()
    failed: tuple[Failure, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "id": self.event_id,
            "delivered": [
                {"channel": d.index, "type": d.kind, "target": d.target, "attempts": d.attempts}
                for d in self.delivered
            ],
            "dead_lettered": [
                {"channel": f.index, "type": f.kind, "target": f.target, "reason": f.reason}
                for f in self.failed
            ],
        }


class Notifier:
    """Sends events to the configured ``notifications``. What talks to the outside is
    injectable: ``http`` (webhooks), ``sns`` (a client per region, for email) and
    ``dead_letters``."""

    def __init__(
        self,
        notifications: Sequence[NotificationConfig],
        *,
        http: HttpDelivery | None = None,
        sns: Callable[[str | None], Any] | None = None,
        dead_letters: DeadLetters | None = None,
        retry_budget_s: float = RETRY_BUDGET_S,
        reserve_s: float = RESERVE_S,
        logger: Logger | logging.Logger | None = None,
    ) -> None:
        self.notifications = tuple(notifications)
        self.http = http or HttpDelivery()
        self.sns = sns
        self.dead_letters = dead_letters or DeadLetters()
        self.retry_budget_s = retry_budget_s
        self.reserve_s = reserve_s
        self.log = logger or logging.getLogger("pitcrew.notify")

    def dispatch(self, event: BusEvent, *, time_left_s: float | None = None) -> DispatchReport:
        """Deliver ``event`` to every entry that wants it. Raises only if a failure could not
        be written to the dead-letter queue."""
        routes = route(event, self.notifications)
        if not routes:
            self.log.info("no notification wants %s", event.name, extra={"event_id": event.id})
            return DispatchReport(event.name, event.id)
        message = compose(event).redacted()
        budget_s = self.retry_budget_s
        if time_left_s is not None:
            budget_s = max(min(budget_s, time_left_s - self.reserve_s), 0.0)
        budget = self.http.budget(budget_s)
        with ThreadPoolExecutor(min(len(routes), MAX_PARALLEL), "notify") as pool:
            outcomes = list(pool.map(lambda r: self._deliver(r[0], r[1], message, budget), routes))
        delivered = tuple(o for o in outcomes if isinstance(o, Delivery))
        failed = tuple(o for o in outcomes if isinstance(o, Failure))
        for d in delivered:
            self.log.info(
                "%s sent to %s %s",
                event.name,
                d.kind,
                d.target,
                extra={"event_id": event.id, "channel": d.index, "attempts": d.attempts},
            )
        for f in failed:
            self.log.error(
                "%s not sent to %s %s: %s",
                event.name,
                f.kind,
                f.target,
                f.reason,
                extra={"event_id": event.id, "channel": f.index},
            )
        if failed:
            self.dead_letters.send(event, failed)
        return DispatchReport(event.name, event.id, delivered, failed)

    def _deliver(
        self, index: int, entry: NotificationConfig, message: Message, budget: RetryBudget
    ) -> Delivery | Failure:
        target = f"notifications[{index}]"
        try:
            channel: Channel = channel_for(entry, self.http, self.sns)
            target = channel.target
            attempts = channel.send(message, budget)
        except PitcrewError as exc:
            return Failure(index, entry.type, target, redact(str(exc)))
        except Exception as exc:  # a bug in one channel must not cost the others their message
            self.log.exception("%s channel %s failed unexpectedly", entry.type, target)
            return Failure(index, entry.type, target, redact(f"{type(exc).__name__}: {exc}"))
        return Delivery(index, entry.type, target, attempts)


_http: HttpDelivery | None = None


def _shared_http() -> HttpDelivery:
    """One HTTP client per process, so warm invocations reuse its connections."""
    global _http  # noqa: PLW0603 - one connection pool per cold start
    if _http is None:
        _http = HttpDelivery()
    return _http


def dispatch(
    event: Mapping[str, Any],
    config: Config,
    *,
    instruments: Instruments | None = None,
    time_left_ms: int | None = None,
) -> DispatchReport:
    """Deliver one EventBridge event (the Lambda event) to the configured notifications.
    With the function's instruments, counts ``NotificationsDelivered``,
    ``NotificationsFailed`` (each dead-lettered) and ``NotificationDeadLetterWritesFailed``
    (then it raises)."""
    bus_event = BusEvent.from_eventbridge(event)
    notifier = Notifier(
        config.notifications or (),
        http=_shared_http(),
        logger=instruments.logger if instruments is not None else None,
    )
    time_left_s = time_left_ms / 1000 if time_left_ms is not None else None
    metrics = instruments.metrics if instruments is not None else None
    try:
        report = notifier.dispatch(bus_event, time_left_s=time_left_s)
    except PitcrewError:
        # Failures nobody will see unless this is alarmed on: the event goes back to Lambda.
        if metrics is not None:
            metrics.add_metric("NotificationDeadLetterWritesFailed", MetricUnit.Count, 1)
        raise
    if metrics is not None:
        metrics.add_metric("NotificationsDelivered", MetricUnit.Count, len(report.delivered))
        metrics.add_metric("NotificationsFailed", MetricUnit.Count, len(report.failed))
    return report
