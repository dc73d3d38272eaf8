"""Incidents in DynamoDB (``INCIDENTS_TABLE``): one open incident per workload, its alerts,
diagnosis, pull request and a bounded timeline.

Items (``pk`` / ``sk``):

- ``INCIDENT#<id>`` / ``INCIDENT``: the incident. ``version`` guards every change (optimistic
  concurrency: a write that lost a race re-reads and applies its change again). ``list_pk``
  (``STATUS#open`` / ``STATUS#resolved``) and ``id`` feed the ``ByStatus`` index that lists
  incidents newest first (ids are time-ordered, like ULIDs). A resolved incident expires
  (``expires_at``) after ``RETENTION_DAYS``.
- ``WORKLOAD#<cluster>/<namespace>/<kind>/<name>`` / ``WORKLOAD``: which incident is the
  workload's latest and whether it is open. Opening an incident is a conditional write of this
  item, so of many concurrent ``diagnose`` invocations about one workload exactly one opens it
  and the others join it.

An incident tracks the alerts firing for it (fingerprint -> startsAt); it resolves when the
last of them resolves. A firing alert after that opens a NEW incident (a new episode with its
own diagnosis); ``reopen`` is the explicit way back, for a fix that did not hold.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pitcrew.errors import BadRequestError, ConflictError, NotFoundError, ServiceError
from pitcrew.incidents.alerts import Alert
from pitcrew.incidents.model import Category, Diagnosis, Subject, WorkloadRef
from pitcrew.records import mutable
from pitcrew.stores import Table, table_name

STATUSES = ("open", "resolved")
LIST_STATUSES = (*STATUSES, "all")
MAX_LIST = 1000
MAX_TIMELINE = 200
MAX_ENDED = 500  # resolved alert instances remembered per incident (late firings are ignored)
MAX_ALERT_LINKS = 10
RETENTION_DAYS = 90
INDEX = "ByStatus"
# A workload item that says "open" while its incident item is not written yet: the opener is
# between its two writes, or died there. After this long the opening is taken as abandoned.
OPENING_GRACE_S = 10.0
MAX_ATTEMPTS = 200

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: datetime, randbits: Callable[[int], int] = secrets.randbits) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (26 chars), so
    ids sort by creation time."""
    value = (int(now.timestamp() * 1000) << 80) | randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def iso(moment: datetime) -> str:
    """A UTC timestamp as the API shows it: ``2024-11-19T08:14:32.517Z``."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def workload_key(cluster: str, namespace: str | None, kind: str, name: str) -> str:
    return f"{cluster}/{namespace or '-'}/{kind}/{name}"


# ------------------------------------------------------------------ the record


def subject_to_dict(subject: Subject) -> dict[str, Any]:
    data = asdict(subject)
    data["category_hint"] = str(subject.category_hint)
    return data


def subject_from_dict(data: Mapping[str, Any]) -> Subject:
    workload = data.get("workload")
    return Subject(
        cluster=str(data["cluster"]),
        alertname=str(data.get("alertname", "")),
        namespace=data.get("namespace"),
        workload=WorkloadRef(**workload) if workload else None,
        pod=data.get("pod"),
        container=data.get("container"),
        node=data.get("node"),
        pvc=data.get("pvc"),
        category_hint=Category(data.get("category_hint", "unknown")),
    )


@mutable
class Incident:
    """One incident: a workload's trouble from its first alert until its last one resolves."""

    id: str
    cluster: str
    namespace: str | None
    workload: WorkloadRef
    subject: Subject
    status: str = "open"
    alerts: int = 0
    first_seen: str = ""
    last_seen: str = ""
    resolved_at: str | None = None
    diagnosis: Diagnosis | None = None
    pull_request: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    firing: dict[str, str] = field(default_factory=dict)  # fingerprint -> startsAt
    ended: dict[str, str] = field(default_factory=dict)  # resolved: fingerprint -> startsAt
    # The number of the fix pull request whose FixPullRequestOpened is not out yet.
    announcing: int | None = None
    version: int = 0

    @property
    def category(self) -> Category:
        """The diagnosis' category, the alert's hint before there is one."""
        if self.diagnosis is not None:
            return self.diagnosis.category
        return self.subject.category_hint

    @property
    def signature(self) -> str:
        """``cluster/namespace/Kind/name/category`` (``-`` for a cluster-scoped object)."""
        key = workload_key(self.cluster, self.namespace, self.workload.kind, self.workload.name)
        return f"{key}/{self.category}"

    @property
    def workload_key(self) -> str:
        return workload_key(self.cluster, self.namespace, self.workload.kind, self.workload.name)

    def as_api(self) -> dict[str, Any]:
        """DESIGN.md's incident shape; also the detail of the Incident* domain events."""
        return {
            "id": self.id,
            "signature": self.signature,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "workload": self.workload.as_dict(),
            "status": self.status,
            "alerts": self.alerts,
            "firing": len(self.firing),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "resolved_at": self.resolved_at,
            "category_hint": str(self.subject.category_hint),
            "subject": subject_to_dict(self.subject),
            "diagnosis": self.diagnosis.as_dict() if self.diagnosis is not None else None,
            "pull_request": self.pull_request,
            "timeline": list(self.timeline),
            "links": list(self.links),
        }

    def note(self, at: datetime, event: str, detail: str | None = None) -> None:
        """Add a timeline entry, keeping the first (how it opened) and the latest ones."""
        entry: dict[str, Any] = {"at": iso(at), "event": event}
        if detail:
            entry["detail"] = detail
        self.timeline.append(entry)
        if len(self.timeline) > MAX_TIMELINE:
            self.timeline = [self.timeline[0], *self.timeline[-(MAX_TIMELINE - 1) :]]

    def to_item(self) -> dict[str, Any]:
        # The structured parts go in one JSON string (``detail``): read and written whole,
        # never queried, and far cheaper to (de)serialize than nested DynamoDB maps.
        detail = {
            "workload": {"kind": self.workload.kind, "name": self.workload.name},
            "subject": subject_to_dict(self.subject),
            "diagnosis": self.diagnosis.as_dict() if self.diagnosis is not None else None,
            "pull_request": self.pull_request,
            "timeline": self.timeline,
            "links": self.links,
            "firing": self.firing,
            "ended": self.ended,
            "announcing": self.announcing,
        }
        item: dict[str, Any] = {
            "pk": f"INCIDENT#{self.id}",
            "sk": "INCIDENT",
            "list_pk": f"STATUS#{self.status}",
            "id": self.id,
            "signature": self.signature,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "status": self.status,
            "alerts": self.alerts,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "resolved_at": self.resolved_at,
            "detail": json.dumps(detail, separators=(",", ":")),
            "version": self.version,
        }
        if self.status == "resolved" and self.resolved_at:
            resolved = datetime.fromisoformat(self.resolved_at.replace("Z", "+00:00"))
            item["expires_at"] = int((resolved + timedelta(days=RETENTION_DAYS)).timestamp())
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Incident:
        namespace = item.get("namespace")
        detail = json.loads(item["detail"])
        workload = detail["workload"]
        diagnosis = detail.get("diagnosis")
        return cls(
            id=item["id"],
            cluster=item["cluster"],
            namespace=namespace,
            workload=WorkloadRef(workload["kind"], workload["name"], namespace),
            subject=subject_from_dict(detail["subject"]),
            status=item["status"],
            alerts=int(item.get("alerts", 0)),
            first_seen=item.get("first_seen", ""),
            last_seen=item.get("last_seen", ""),
            resolved_at=item.get("resolved_at"),
            diagnosis=Diagnosis.from_dict(diagnosis) if diagnosis else None,
            pull_request=detail.get("pull_request"),
            timeline=list(detail.get("timeline") or []),
            links=list(detail.get("links") or []),
            firing=dict(detail.get("firing") or {}),
            ended=dict(detail.get("ended") or {}),
            announcing=detail.get("announcing"),
            version=int(item.get("version", 0)),
        )


def _alert_detail(alert: Alert, subject: Subject) -> str:
    workload = subject.workload.name if subject.workload is not None else None
    # A volume alert's `node` label is the kubelet that reported it, not what it is about.
    where = subject.pod or subject.pvc or subject.node or workload
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"{alert.name} {alert.status}" + (f" on {where}" if where else "")
    return f"{text}: {summary}"[:300] if summary else text


# ------------------------------------------------------------------ the store


class IncidentStore:
    """Incidents in ``INCIDENTS_TABLE``; every change is safe under concurrent writers."""

    table_env = "INCIDENTS_TABLE"

    def __init__(
        self,
        table: Table | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table or Table(table_name(self.table_env))
        self.clock = clock
        self.sleep = sleep

    # -------------------------------------------------------------- reads

    def get(self, incident_id: str) -> Incident:
        found = self._find(incident_id)
        if found is None:
            raise NotFoundError(f"no incident {incident_id!r}")
        return found

    def list(self, status: str = "open", limit: int = 100) -> list[Incident]:
        """Incidents with ``status`` (``open``, ``resolved`` or ``all``), newest first."""
        if status not in LIST_STATUSES:
            raise BadRequestError(
                f"status: expected one of {', '.join(LIST_STATUSES)}, got {status!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise BadRequestError(f"limit: expected an integer from 1 to {MAX_LIST}, got {limit!r}")
        wanted = STATUSES if status == "all" else (status,)
        found: list[Incident] = []
        for one in wanted:
            items = self.table.query(
                "list_pk = :pk",
                values={":pk": f"STATUS#{one}"},
                index=INDEX,
                forward=False,
                limit=limit,
            )
            found.extend(Incident.from_item(item) for item in items)
        found.sort(key=lambda incident: incident.id, reverse=True)
        return found[:limit]

    def open_for(
        self, cluster: str, namespace: str | None, kind: str, name: str
    ) -> Incident | None:
        """The open incident about this workload, if there is one."""
        pointer = self.table.get(self._workload_pk(workload_key(cluster, namespace, kind, name)))
        if not pointer or not pointer.get("open"):
            return None
        incident = self._find(pointer["incident_id"])
        return incident if incident is not None and incident.status == "open" else None

    def last_resolved_for(
        self, cluster: str, namespace: str | None, kind: str, name: str
    ) -> Incident | None:
        """The workload's most recent incident when none is open for it: one read (of the
        workload's pointer) while an incident is open, the common case in a storm."""
        pointer = self.table.get(self._workload_pk(workload_key(cluster, namespace, kind, name)))
        if not pointer or pointer.get("open"):
            return None
        return self._find(pointer["incident_id"])

    # -------------------------------------------------------------- alerts

    def record_alert(self, subject: Subject, alert: Alert, now: datetime) -> tuple[Incident, bool]:
        """Add a firing alert to its workload's open incident, opening one if there is none.
        True when this call opened it. A redelivered alert changes nothing."""
        workload = _workload_of(subject)
        key = workload_key(subject.cluster, subject.namespace, workload.kind, workload.name)
        for attempt in range(MAX_ATTEMPTS):
            pointer = self.table.get(self._workload_pk(key))
            current = self._current(pointer)
            if current is _RETRY:
                self._backoff(attempt)
                continue
            if isinstance(current, Incident) and current.status == "open":
                if self._join(current, subject, alert, now):
                    return current, False
                self._backoff(attempt)
                continue
            if isinstance(current, Incident) and current.ended.get(alert.fingerprint) == (
                alert.starts_at
            ):
                # A late redelivery of a firing that has already resolved.
                return current, False
            opened = self._open(pointer, key, subject, alert, now)
            if opened is not None:
                return opened, True
            self._backoff(attempt)
        raise ServiceError("dynamodb", f"incident of {key}: too many concurrent writers")

    def record_resolved(self, subject: Subject, alert: Alert, now: datetime) -> Incident | None:
        """Mark ``alert`` resolved in its incident; the incident resolves (``resolved_at``)
        when it was the last one firing. None when no incident knows the workload."""
        workload = _workload_of(subject)
        key = workload_key(subject.cluster, subject.namespace, workload.kind, workload.name)
        pointer = self.table.get(self._workload_pk(key))
        if not pointer:
            return None

        def resolve(incident: Incident) -> bool:
            if incident.firing.get(alert.fingerprint) is None and (
                incident.ended.get(alert.fingerprint) == alert.starts_at
            ):
                return False  # already recorded
            incident.firing.pop(alert.fingerprint, None)
            incident.ended[alert.fingerprint] = alert.starts_at
            while len(incident.ended) > MAX_ENDED:
                incident.ended.pop(next(iter(incident.ended)))
            incident.last_seen = iso(now)
            incident.note(now, "alert_resolved", _alert_detail(alert, subject))
            if incident.status == "open" and not incident.firing:
                incident.status = "resolved"
                incident.resolved_at = iso(now)
                incident.note(now, "resolved", "the last firing alert resolved")
            return True

        incident = self._change(pointer["incident_id"], resolve)
        if incident.status == "resolved":
            self._close_pointer(key, incident.id)
        return incident

    # -------------------------------------------------------------- later changes

    def save_diagnosis(self, incident_id: str, diagnosis: Diagnosis, now: datetime) -> Incident:
        def diagnose(incident: Incident) -> bool:
            incident.diagnosis = diagnosis
            incident.note(
                now,
                "diagnosed",
                f"{diagnosis.category} ({diagnosis.source}) {diagnosis.summary_line}".strip(),
            )
            return True

        return self._change(incident_id, diagnose)

    def add_timeline(
        self, incident_id: str, event: str, now: datetime, detail: str | None = None
    ) -> Incident:
        def add(incident: Incident) -> bool:
            incident.note(now, event, detail)
            return True

        return self._change(incident_id, add)

    def set_pull_request(
        self, incident_id: str, pull_request: Mapping[str, Any], now: datetime
    ) -> Incident:
        return self._change(incident_id, lambda i: _attach(i, pull_request, now))

    def attach_new_pull_request(
        self, incident_id: str, pull_request: Mapping[str, Any], now: datetime
    ) -> tuple[Incident, bool]:
        """Attach a pull request just opened, to be announced (``announced`` once its
        ``FixPullRequestOpened`` is out); False (and nothing written) when the incident has
        it already: another delivery of the same diagnosis, racing this one, got there first
        (and announces it)."""
        attached = False

        def attach(incident: Incident) -> bool:
            nonlocal attached
            current = incident.pull_request or {}
            same = ("repo", "number")
            attached = any(current.get(k) != pull_request.get(k) for k in same)
            if not attached:
                return False
            incident.announcing = pull_request.get("number")
            return _attach(incident, pull_request, now)

        return self._change(incident_id, attach), attached

    def announced(self, incident_id: str, number: int) -> Incident:
        """Pull request ``number``'s ``FixPullRequestOpened`` is out."""

        def done(incident: Incident) -> bool:
            if incident.announcing != number:
                return False
            incident.announcing = None
            return True

        return self._change(incident_id, done)

    def reopen(self, incident_id: str, now: datetime, reason: str) -> Incident:
        """Open a resolved incident again (a fix that did not hold). ``ConflictError`` when
        another incident is open for the same workload."""
        incident = self.get(incident_id)
        key = incident.workload_key
        try:
            self.table.put(
                {
                    **self._workload_pk(key),
                    "incident_id": incident_id,
                    "open": True,
                    "at": self.clock(),
                },
                condition="attribute_not_exists(pk) OR #open = :false OR incident_id = :id",
                names={"#open": "open"},
                values={":false": False, ":id": incident_id},
            )
        except ConflictError as exc:
            other = self.open_for(
                incident.cluster, incident.namespace, incident.workload.kind, incident.workload.name
            )
            raise ConflictError(
                f"incident {other.id if other else '?'} is open for {key}; "
                f"{incident_id} cannot be reopened"
            ) from exc

        def reopen(incident: Incident) -> bool:
            if incident.status == "open":
                return False
            incident.status = "open"
            incident.resolved_at = None
            incident.note(now, "reopened", reason)
            return True

        return self._change(incident_id, reopen)

    # -------------------------------------------------------------- internals

    def _workload_pk(self, key: str) -> dict[str, str]:
        return {"pk": f"WORKLOAD#{key}", "sk": "WORKLOAD"}

    def _find(self, incident_id: str) -> Incident | None:
        item = self.table.get({"pk": f"INCIDENT#{incident_id}", "sk": "INCIDENT"})
        return Incident.from_item(item) if item else None

    def _current(self, pointer: Mapping[str, Any] | None) -> Incident | object | None:
        """The workload's latest incident, None if it has none, ``_RETRY`` while another
        writer is between its two writes of a new incident."""
        if not pointer:
            return None
        incident = self._find(pointer["incident_id"])
        if incident is not None:
            if pointer.get("open") and incident.status != "open":
                # Resolved, but the writer stopped before closing the pointer.
                self._close_pointer(pointer["pk"].removeprefix("WORKLOAD#"), incident.id)
            return incident
        if not pointer.get("open"):
            return None
        if self.clock() - float(pointer.get("at", 0)) < OPENING_GRACE_S:
            return _RETRY
        # Abandoned opening: let the next writer open afresh.
        self._close_pointer(pointer["pk"].removeprefix("WORKLOAD#"), pointer["incident_id"])
        return _RETRY

    def _open(
        self,
        pointer: Mapping[str, Any] | None,
        key: str,
        subject: Subject,
        alert: Alert,
        now: datetime,
    ) -> Incident | None:
        workload = _workload_of(subject)
        incident = Incident(
            id=new_id(now),
            cluster=subject.cluster,
            namespace=subject.namespace,
            workload=WorkloadRef(workload.kind, workload.name, subject.namespace),
            subject=subject,
            alerts=1,
            first_seen=iso(now),
            last_seen=iso(now),
            firing={alert.fingerprint: alert.starts_at},
            version=1,
        )
        incident.note(now, "opened", _alert_detail(alert, subject))
        _keep_links(incident, alert)
        claim: dict[str, Any] = {
            **self._workload_pk(key),
            "incident_id": incident.id,
            "open": True,
            "at": self.clock(),
        }
        try:
            if pointer:
                self.table.put(
                    claim,
                    condition="incident_id = :last AND #open = :false",
                    names={"#open": "open"},
                    values={":last": pointer["incident_id"], ":false": False},
                )
            else:
                self.table.put(claim, condition="attribute_not_exists(pk)")
        except ConflictError:
            return None  # another writer opened it first: join theirs
        self.table.put(incident.to_item(), condition="attribute_not_exists(pk)")
        return incident

    def _join(self, incident: Incident, subject: Subject, alert: Alert, now: datetime) -> bool:
        """Add the alert to ``incident`` (changed in place); False if a concurrent writer won."""
        fingerprint, starts_at = alert.fingerprint, alert.starts_at
        if incident.firing.get(fingerprint) == starts_at or (
            incident.ended.get(fingerprint) == starts_at
        ):
            return True  # redelivery: already counted
        incident.firing[fingerprint] = starts_at
        incident.alerts += 1
        incident.last_seen = iso(now)
        incident.subject = subject
        incident.note(now, "alert", _alert_detail(alert, subject))
        _keep_links(incident, alert)
        return self._write(incident)

    def _change(self, incident_id: str, change: Callable[[Incident], bool]) -> Incident:
        """Apply ``change`` to the stored incident, again on a fresh copy if another writer
        changed it meanwhile. ``change`` returns False when there is nothing to write."""
        for attempt in range(MAX_ATTEMPTS):
            incident = self.get(incident_id)
            if not change(incident):
                return incident
            if self._write(incident):
                return incident
            self._backoff(attempt)
        raise ServiceError("dynamodb", f"incident {incident_id}: too many concurrent writers")

    def _write(self, incident: Incident) -> bool:
        expected = incident.version
        updated = replace(incident, version=expected + 1)
        try:
            self.table.put(updated.to_item(), condition="version = :v", values={":v": expected})
        except ConflictError:
            return False
        incident.version = expected + 1
        return True

    def _close_pointer(self, key: str, incident_id: str) -> None:
        # A ConflictError: the workload has moved on to another incident.
        with contextlib.suppress(ConflictError):
            self.table.put(
                {
                    **self._workload_pk(key),
                    "incident_id": incident_id,
                    "open": False,
                    "at": self.clock(),
                },
                condition="incident_id = :id",
                values={":id": incident_id},
            )

    def _backoff(self, attempt: int) -> None:
        # Jitter, so that writers who lost a race do not collide again.
        self.sleep(min(0.2, 0.002 * (2 ** min(attempt, 7))) * random.random())  # noqa: S311


_RETRY = object()


def _keep_links(incident: Incident, alert: Alert) -> None:
    """The alert's Prometheus graph and runbook, for the fix pull request and the API; a few
    distinct ones, since a storm repeats the same."""
    for link in (alert.generator_url, alert.annotations.get("runbook_url")):
        if link and link not in incident.links and len(incident.links) < MAX_ALERT_LINKS:
            incident.links.append(link)


def _workload_of(subject: Subject) -> WorkloadRef:
    if subject.workload is not None:
        return subject.workload
    return WorkloadRef("Alert", subject.alertname or "unnamed", subject.namespace)


def _attach(incident: Incident, pull_request: Mapping[str, Any], now: datetime) -> bool:
    incident.pull_request = dict(pull_request)
    url = pull_request.get("url")
    if url and url not in incident.links:
        incident.links.append(str(url))
    what = (
        f"issue #{pull_request['issue']}"
        if "issue" in pull_request
        else f"pull request #{pull_request.get('number')} {pull_request.get('state', '')}"
    )
    incident.note(now, "pull_request", what.strip())
    return True
