"""The values incident triage passes between its parts: what an alert is about
(``Subject``), what the cluster says about it (``ClusterContext``), and the answer
(``Diagnosis``).

Intake (``pitcrew.incidents.alerts``) turns an Alertmanager alert into a ``Subject``;
``pitcrew.kube`` fills a ``ClusterContext`` for it; the rule-based analyzers
(``pitcrew.incidents.analyzers``) and the LLM (``pitcrew.llm``) each turn that context into a
``Diagnosis``. Kubernetes objects are kept as the JSON the API server returns (camelCase keys,
``metadata``/``spec``/``status``), so analyzers are tested on payloads shaped like real ones
and nothing depends on the kubernetes client's model classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, field
from enum import StrEnum
from typing import Any

from pitcrew.records import frozen, mutable


class Category(StrEnum):
    """The diagnosis categories of DESIGN.md."""

    OOM_KILLED = "oom_killed"
    APP_CRASH = "app_crash"
    MISSING_CONFIG = "missing_config"
    IMAGE_PULL = "image_pull"
    PROBE_FAILURE = "probe_failure"
    UNSCHEDULABLE = "unschedulable"
    PVC_PENDING = "pvc_pending"
    ROLLOUT_STUCK = "rollout_stuck"
    NODE_NOT_READY = "node_not_ready"
    JOB_FAILED = "job_failed"
    UNKNOWN = "unknown"


# The kinds an incident can be about. A Pod is its own workload only when nothing owns it.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")


@frozen
class WorkloadRef:
    """The object an incident is about: a workload, a bare pod, a node, a PVC, or (for an
    alert pitcrew cannot map) ``kind="Alert"`` named after the alert's identifying labels."""

    kind: str
    name: str
    namespace: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}


@frozen
class Subject:
    """What one alert is about, from its labels alone (no cluster access needed).

    ``workload`` is the best guess at intake (a pod ``api-7c9d8f6b5-x2x7q`` is taken to belong
    to Deployment ``api``); ``pitcrew.kube`` confirms it from ``ownerReferences``.
    ``category_hint`` is what the alert's name suggests (``KubePodCrashLooping`` →
    ``app_crash``) before any evidence is seen.
    """

    cluster: str
    alertname: str
    namespace: str | None = None
    workload: WorkloadRef | None = None
    pod: str | None = None
    container: str | None = None
    node: str | None = None
    pvc: str | None = None
    category_hint: Category = Category.UNKNOWN


@mutable
class LogExcerpt:
    """The lines of one container's log that matter, already trimmed and bounded."""

    pod: str
    container: str
    previous: bool  # the log of the previous (crashed) container instance
    lines: list[str]
    total_lines: int  # how many lines the log had before trimming


@mutable
class MetricSample:
    """A container's usage against its limit, from Prometheus (``None`` when unknown)."""

    pod: str
    container: str
    resource: str  # "memory" (bytes) or "cpu" (cores)
    peak: float
    limit: float | None


@mutable
class ClusterContext:
    """Everything gathered about a subject, as Kubernetes API JSON.

    ``reachable`` is false when no cluster is configured for the subject or it could not be
    reached; ``notes`` then says why, and analyzers work from the alert alone.
    """

    cluster: str
    reachable: bool = False
    workload: dict[str, Any] | None = None  # the owning Deployment/StatefulSet/... object
    pods: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # Warning events (core/v1)
    logs: list[LogExcerpt] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pvcs: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[MetricSample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@frozen
class Diagnosis:
    """A root cause and, where a safe fix exists, a strategic-merge patch of the workload.

    ``source`` is ``rules`` (the analyzers) or ``llm``. ``patch_dropped`` says why a proposed
    patch was refused by the allowlist (the patch is then ``None``).
    """

    category: Category
    root_cause: str
    confidence: float
    source: str = "rules"
    evidence: tuple[str, ...] = ()
    patch: Mapping[str, Any] | None = None
    summary_line: str = ""
    patch_dropped: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The shape of DESIGN.md's ``diagnosis`` (plus what was dropped and token counts)."""
        answer: dict[str, Any] = {
            "category": str(self.category),
            "root_cause": self.root_cause,
            "confidence": self.confidence,
            "source": self.source,
            "evidence": list(self.evidence),
            "patch": dict(self.patch) if self.patch is not None else None,
            "summary_line": self.summary_line,
        }
        if self.patch_dropped:
            answer["patch_dropped"] = self.patch_dropped
        if self.model:
            answer["model"] = self.model
            answer["tokens"] = {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
            }
        return answer

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        tokens = data.get("tokens") or {}
        return cls(
            category=Category(data.get("category", "unknown")),
            root_cause=str(data.get("root_cause", "")),
            confidence=float(data.get("confidence", 0.0)),
            source=str(data.get("source", "rules")),
            evidence=tuple(str(e) for e in data.get("evidence") or ()),
            patch=data.get("patch"),
            summary_line=str(data.get("summary_line", "")),
            patch_dropped=data.get("patch_dropped"),
            model=data.get("model"),
            prompt_tokens=int(tokens.get("prompt", 0)),
            completion_tokens=int(tokens.get("completion", 0)),
        )
