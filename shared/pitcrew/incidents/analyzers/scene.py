"""What the analyzers look at: one subject and its cluster context, read through accessors
that tolerate missing or malformed fields (a rule never raises on an odd API object)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import field
from datetime import datetime
from typing import Any

from pitcrew.incidents.model import Category, ClusterContext, Diagnosis, LogExcerpt, Subject
from pitcrew.records import frozen, mutable

MAX_LINE = 300  # characters of one evidence line


def dig(obj: Any, *keys: str | int) -> Any:
    """``obj[k1][k2]...``, or ``None`` as soon as a step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and -len(obj) <= key < len(obj) else None
        else:
            obj = obj.get(key) if isinstance(obj, Mapping) else None
        if obj is None:
            return None
    return obj


def items(obj: Any, *keys: str) -> list[Mapping[str, Any]]:
    """The objects of the list at ``keys`` (non-objects skipped)."""
    value = dig(obj, *keys)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def clip(line: str, limit: int = MAX_LINE) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def name_of(obj: Any) -> str:
    return text(dig(obj, "metadata", "name"))


def timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_between(start: Any, end: Any) -> int | None:
    first, last = timestamp(start), timestamp(end)
    return int((last - first).total_seconds()) if first and last else None


@mutable
class Finding:
    """One analyzer's answer. ``rank`` orders findings by how specific their root cause is:
    the highest wins (an OOMKilled container explains a stuck rollout, not the reverse)."""

    category: Category
    rank: int
    confidence: float
    root_cause: str
    summary_line: str
    evidence: list[str] = field(default_factory=list)
    patch: dict[str, Any] | None = None

    def diagnosis(self, supporting: list[str]) -> Diagnosis:
        evidence = list(dict.fromkeys([*self.evidence, *supporting]))
        return Diagnosis(
            category=self.category,
            root_cause=self.root_cause,
            confidence=round(self.confidence, 2),
            source="rules",
            evidence=tuple(clip(line) for line in evidence if line),
            patch=self.patch,
            summary_line=clip(self.summary_line, 160),
        )


@frozen
class ContainerState:
    """One container status of one pod, with the terminated state that matters: the current
    one if the container is terminated, else the last one."""

    pod: Mapping[str, Any]
    status: Mapping[str, Any]
    init: bool

    @property
    def pod_name(self) -> str:
        return name_of(self.pod)

    @property
    def name(self) -> str:
        return text(self.status.get("name"))

    @property
    def restarts(self) -> int:
        value = self.status.get("restartCount")
        return value if isinstance(value, int) else 0

    @property
    def waiting(self) -> Mapping[str, Any]:
        return dig(self.status, "state", "waiting") or {}

    @property
    def terminated(self) -> Mapping[str, Any]:
        current = dig(self.status, "state", "terminated")
        return current or dig(self.status, "lastState", "terminated") or {}

    @property
    def exit_code(self) -> int | None:
        code = self.terminated.get("exitCode")
        return code if isinstance(code, int) else None

    @property
    def ran_seconds(self) -> int | None:
        return seconds_between(self.terminated.get("startedAt"), self.terminated.get("finishedAt"))

    @property
    def where(self) -> str:
        kind = "init container" if self.init else "container"
        return f"pod {self.pod_name} {kind} {self.name}"

    def termination_line(self) -> str:
        term = self.terminated
        parts = [f"{self.where}: terminated {text(term.get('reason')) or 'without a reason'}"]
        if self.exit_code is not None:
            parts.append(f"(exit code {self.exit_code}")
            parts[-1] += f", signal {term['signal']})" if term.get("signal") else ")"
        if self.ran_seconds is not None:
            parts.append(f"after running {self.ran_seconds}s")
        if self.restarts:
            parts.append(f"restarted {self.restarts} times")
        if self.waiting.get("reason"):
            parts.append(f"now {self.waiting['reason']}")
        return " ".join(parts)


class Scene:
    """A subject and its context, with the lookups every analyzer needs."""

    def __init__(self, subject: Subject, context: ClusterContext) -> None:
        self.subject = subject
        self.context = context
        self.workload: Mapping[str, Any] = (
            context.workload if isinstance(context.workload, Mapping) else {}
        )
        pods = [p for p in context.pods if isinstance(p, Mapping)]
        # The alert's own pod first, so the evidence starts with what the alert named.
        self.pods = sorted(pods, key=lambda pod: name_of(pod) != subject.pod)
        self.events: list[Mapping[str, Any]] = [e for e in context.events if isinstance(e, Mapping)]
        self.namespace = (
            text(dig(self.workload, "metadata", "namespace")) or subject.namespace or ""
        )

    # -- naming ---------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """The object the incident is about, as a person says it: ``Deployment payments/api``."""
        if self.workload:
            kind = text(self.workload.get("kind")) or "workload"
            return f"{kind} {self._qualified(name_of(self.workload))}"
        ref = self.subject.workload
        if ref is not None:
            return f"{ref.kind} {self._qualified(ref.name, ref.namespace)}"
        if self.subject.pod:
            return f"Pod {self._qualified(self.subject.pod)}"
        if self.subject.node:
            return f"Node {self.subject.node}"
        if self.subject.pvc:
            return f"PersistentVolumeClaim {self._qualified(self.subject.pvc)}"
        return f"alert {self.subject.alertname}"

    @property
    def short(self) -> str:
        """``payments/api`` for summary lines."""
        return self.label.split(" ", 1)[-1]

    def _qualified(self, name: str, namespace: str | None = None) -> str:
        namespace = namespace or self.namespace
        return f"{namespace}/{name}" if namespace else name

    # -- pods and containers --------------------------------------------------------------
    def containers(self) -> Iterator[ContainerState]:
        """Every container status of every pod, the alert's container first within a pod."""
        for pod in self.pods:
            for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
                statuses = items(pod, "status", key)
                statuses.sort(key=lambda s: s.get("name") != self.subject.container)
                for status in statuses:
                    yield ContainerState(pod, status, init)

    def pod_container(self, pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        for key in ("containers", "initContainers"):
            for container in items(pod, "spec", key):
                if container.get("name") == name:
                    return container
        return {}

    def log(self, pod: str, container: str) -> LogExcerpt | None:
        """The log of that container, the previous instance's when there is one; else the
        same container's log from another pod of the workload."""
        candidates = [log for log in self.context.logs if log.container == container]
        candidates.sort(key=lambda log: (log.pod != pod, not log.previous))
        return candidates[0] if candidates else None

    # -- events ---------------------------------------------------------------------------
    def events_about(self, kind: str, name: str | None = None) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for event in self.events:
            involved = event.get("involvedObject") or event.get("regarding") or {}
            if involved.get("kind") == kind and (name is None or involved.get("name") == name):
                found.append(event)
        return found

    def pod_events(self, reason: str | None = None) -> list[Mapping[str, Any]]:
        names = {name_of(pod) for pod in self.pods}
        subject_pod = self.subject.pod
        return [
            event
            for event in self.events_about("Pod")
            if (reason is None or event.get("reason") == reason)
            and (not names or event_object(event) in names or event_object(event) == subject_pod)
        ]


def event_object(event: Mapping[str, Any]) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return text(involved.get("name"))


def event_message(event: Mapping[str, Any]) -> str:
    return text(event.get("message") or event.get("note")).strip()


def event_count(event: Mapping[str, Any]) -> int:
    count = event.get("count") or dig(event, "series", "count") or 1
    return count if isinstance(count, int) else 1


_CONTAINER_FIELD = re.compile(r"spec\.(?:initC|c)ontainers\{([^}]+)\}")


def event_container(event: Mapping[str, Any]) -> str | None:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    match = _CONTAINER_FIELD.match(text(involved.get("fieldPath")))
    return match.group(1) if match else None


def event_line(event: Mapping[str, Any]) -> str:
    """``event BackOff on Pod api-7c9 (x12): Back-off restarting failed container ...``"""
    involved = event.get("involvedObject") or event.get("regarding") or {}
    count = event_count(event)
    times = f" (x{count})" if count > 1 else ""
    return (
        f"event {text(event.get('reason'))} on {text(involved.get('kind'))} "
        f"{text(involved.get('name'))}{times}: {event_message(event)}"
    )
