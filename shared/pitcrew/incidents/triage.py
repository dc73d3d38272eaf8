"""The diagnose pipeline: each alert from the incident queue is grouped into its incident,
and a newly opened incident is diagnosed (cluster context, rule-based analyzers, the LLM,
the patch allowlist), stored and published.

``Triage`` is what ``functions/diagnose`` calls for each SQS message. A message carries the
alerts of one Alertmanager delivery (``{"group": {...}, "alerts": [...]}``, written by
``pitcrew.incidents.intake``) or a request to diagnose an incident again
(``{"retry": {"incident_id": ...}}``, from ``/pitcrew retry`` on GitHub). Each alert is
processed once (powertools Idempotency keyed by fingerprint, startsAt and status), so SQS
redeliveries and Alertmanager resends never count an alert twice.

An incident is diagnosed when it opens, and again when a diagnosis is missing (the attempt
that opened it failed: its alert comes back, or ``DIAGNOSIS_GRACE`` has passed) or asked for;
later alerts of the same storm only add to its count, even while the opener is still at it.
An alert firing again within a week after its incident resolved with a merged fix reopens
that incident (``IncidentOpened`` with ``reopened``, on which ``fix_pr`` tells the pull
request) and diagnoses it again.
Anything that fails raises, so the message is retried and, after the queue's
``maxReceiveCount``, kept in its dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pitcrew.errors import BadRequestError, ConflictError
from pitcrew.events import EventName, event, publish
from pitcrew.incidents.alerts import Alert, alert_from_dict, subject_of
from pitcrew.incidents.model import ClusterContext, Diagnosis, Subject
from pitcrew.incidents.store import Incident, IncidentStore

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

    from pitcrew.config import Config

# A resolved incident whose fix merged is reopened when its alert fires again this soon.
REFIRE_WINDOW = timedelta(days=7)
# Longer than diagnose's Lambda timeout (90 s): an incident still without a diagnosis this
# long after it opened was not diagnosed by the invocation that opened it (that one failed;
# its message retries or went to the dead-letter queue). Before that, the alerts joining it
# from concurrent invocations leave the diagnosis, and its LLM call, to the opener.
DIAGNOSIS_GRACE = timedelta(seconds=180)

Gather = Callable[[Subject, "Config"], ClusterContext]
Analyze = Callable[[Subject, ClusterContext], Diagnosis]
Investigate = Callable[..., Diagnosis]
Publish = Callable[..., None]


def _now() -> datetime:
    return datetime.now(UTC)


def _default_gather(subject: Subject, config: Config) -> ClusterContext:
    from pitcrew.kube import gather

    return gather(subject, config)


def _default_analyze(subject: Subject, context: ClusterContext) -> Diagnosis:
    from pitcrew.incidents.analyzers import analyze

    return analyze(subject, context)


def _default_investigate(
    subject: Subject,
    context: ClusterContext,
    rules: Diagnosis,
    config: Config,
    *,
    signature: str,
) -> Diagnosis:
    if config.llm is None or config.llm.provider == "none":
        return rules
    from pitcrew.llm import investigate

    return investigate(subject, context, rules, config.llm, signature=signature)


class Triage:
    """Groups alerts into incidents and diagnoses them; every outside call is injectable."""

    def __init__(
        self,
        config: Config,
        *,
        store: IncidentStore | None = None,
        gather: Gather = _default_gather,
        analyze: Analyze = _default_analyze,
        investigate: Investigate = _default_investigate,
        publish_events: Publish = publish,
        clock: Callable[[], datetime] = _now,
        logger: Logger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._gather = gather
        self._analyze = analyze
        self._investigate = investigate
        self._publish = publish_events
        self._clock = clock
        self._logger = logger
        self._metrics = metrics

    @property
    def store(self) -> IncidentStore:
        if self._store is None:
            self._store = IncidentStore()
        return self._store

    # -- messages ------------------------------------------------------------------------
    def alerts_of(self, message: Mapping[str, Any]) -> list[Alert]:
        """The alerts a queue message carries (``BadRequestError`` for a malformed one)."""
        raw = message.get("alerts")
        if raw is None and "alert" in message:  # one alert per message, as older intakes wrote
            raw = [message["alert"]]
        if not isinstance(raw, list):
            raise BadRequestError("incident queue message has no 'alerts' list")
        return [alert_from_dict(item) for item in raw]

    def retry_of(self, message: Mapping[str, Any]) -> str | None:
        retry = message.get("retry")
        if retry is None:
            return None
        incident_id = retry.get("incident_id") if isinstance(retry, Mapping) else None
        if not isinstance(incident_id, str) or not incident_id:
            raise BadRequestError("retry message needs 'retry.incident_id'")
        return incident_id

    # -- one alert -----------------------------------------------------------------------
    def handle_alert(self, alert: Alert) -> dict[str, Any]:
        """Record one alert on its incident; diagnose the incident if it needs it."""
        subject = subject_of(alert)
        now = self._clock()
        if alert.status == "resolved":
            incident = self.store.record_resolved(subject, alert, now)
            if incident is not None and incident.status == "resolved":
                self._emit(EventName.INCIDENT_RESOLVED, incident)
            return {"alert": alert.key, "incident": incident.id if incident else None}
        reopened = self._reopen_if_fix_did_not_hold(subject, alert, now)
        incident, opened = self.store.record_alert(subject, alert, now)
        if opened:
            self._emit(EventName.INCIDENT_OPENED, incident)
        if opened or reopened or self._left_undiagnosed(incident, alert, now):
            incident = self.diagnose(incident, subject)
        return {"alert": alert.key, "incident": incident.id, "opened": opened}

    def _left_undiagnosed(self, incident: Incident, alert: Alert, now: datetime) -> bool:
        """No diagnosis, and this is the opening alert again (its first attempt failed) or
        the opener has had time to finish."""
        if incident.diagnosis is not None:
            return False
        opening = next(iter(incident.firing.items()), None)
        if opening == (alert.fingerprint, alert.starts_at) or not incident.first_seen:
            return True
        opened_at = datetime.fromisoformat(incident.first_seen.replace("Z", "+00:00"))
        return now - opened_at >= DIAGNOSIS_GRACE

    def _reopen_if_fix_did_not_hold(self, subject: Subject, alert: Alert, now: datetime) -> bool:
        """An alert firing for a workload whose last incident resolved, within a week, after
        its fix pull request merged: that incident is reopened instead of a new one opening,
        and it is diagnosed again."""
        latest = self._resolved_lately(subject, alert, now)
        if latest is None:
            return False
        from pitcrew.fixes.loop import merged_fix

        pull = merged_fix(latest.as_api())
        if pull is None:
            return False
        try:
            incident = self.store.reopen(
                latest.id, now, f"the alert fired again after fix #{pull['number']} merged"
            )
        except ConflictError:
            return False  # another incident is open for the workload: the alert joins it
        # fix_pr tells the pull request (pitcrew.fixes.loop.on_incident_reopened).
        self._publish(
            event(EventName.INCIDENT_OPENED, {**incident.as_api(), "reopened": True}, resources=())
        )
        return True

    def _resolved_lately(self, subject: Subject, alert: Alert, now: datetime) -> Incident | None:
        """The workload's latest incident if it resolved within ``REFIRE_WINDOW`` and
        ``alert`` is a new firing, not a late redelivery of one that resolved."""
        workload = subject.workload
        if workload is None:
            return None
        latest = self.store.last_resolved_for(
            subject.cluster, subject.namespace, workload.kind, workload.name
        )
        if latest is None or latest.status != "resolved" or not latest.resolved_at:
            return None
        if latest.ended.get(alert.fingerprint) == alert.starts_at:
            return None
        resolved_at = datetime.fromisoformat(latest.resolved_at.replace("Z", "+00:00"))
        return latest if now - resolved_at <= REFIRE_WINDOW else None

    # -- diagnosis -----------------------------------------------------------------------
    def diagnose(self, incident: Incident, subject: Subject | None = None) -> Incident:
        """Gather context, run the analyzers and the LLM, enforce the patch allowlist, store
        and publish the diagnosis."""
        from pitcrew.incidents.patches import enforce

        subject = subject or incident.subject
        context = self._gather(subject, self.config)
        rules = self._analyze(subject, context)
        diagnosis = self._investigate(
            subject, context, rules, self.config, signature=incident.signature
        )
        # The LLM's patch, and the rules' too, pass the same allowlist before anyone sees it.
        diagnosis = enforce(diagnosis, context.workload)
        incident = self.store.save_diagnosis(incident.id, diagnosis, self._clock())
        self._emit(EventName.INCIDENT_DIAGNOSED, incident)
        if self._logger is not None:
            self._logger.info(
                "incident diagnosed",
                extra={
                    "incident": incident.id,
                    "signature": incident.signature,
                    "category": str(diagnosis.category),
                    "source": diagnosis.source,
                },
            )
        return incident

    def retry(self, incident_id: str) -> Incident:
        """Diagnose an incident again (``/pitcrew retry``)."""
        incident = self.store.get(incident_id)
        incident = self.store.add_timeline(incident.id, "diagnosis requested again", self._clock())
        return self.diagnose(incident)

    def _emit(self, name: EventName, incident: Incident) -> None:
        self._publish(event(name, incident.as_api(), resources=()))
        if self._metrics is not None:
            # IncidentOpened -> IncidentsOpened, ...: one EMF count per domain event.
            metric = str(name).replace("Incident", "Incidents", 1)
            self._metrics.add_metric(name=metric, unit="Count", value=1)
