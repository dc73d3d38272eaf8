"""The LLM answer cache: one answer per (incident signature, context, model), kept in the
incidents table with a TTL, so a storm of alerts about one failure costs one call.

The context hash covers what a diagnosis depends on and ignores what changes between two
reports of the same failure: timestamps, resourceVersion, uids, pod name suffixes, restart
counts, the numbers in log lines (see ``context_hash``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from pitcrew.incidents.model import ClusterContext, Diagnosis, Subject
from pitcrew.llm.prompt import (
    event_summary,
    is_error_line,
    pod_summary,
    stable_text,
    workload_summary,
)
from pitcrew.stores import Table, table_name

PK_PREFIX = "LLMCACHE#"
SK = "answer"
_LOG_TAIL = 5
_DERIVED_CONDITIONS = frozenset({"Ready", "ContainersReady"})


def cache_key(signature: str, context: str, provider: str, model: str) -> str:
    """The cache key of one question to one model: a SHA-256 hex digest."""
    material = json.dumps([signature, context, provider, model], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def context_hash(subject: Subject, context: ClusterContext) -> str:
    """A SHA-256 of the parts of ``context`` that a diagnosis depends on, made stable: the
    same failure reported twice (another pod of the workload, one more restart, a later
    timestamp in the log) hashes the same; a changed spec, reason, exit code or error does not.
    """
    document = {
        "subject": {
            "cluster": subject.cluster,
            "namespace": subject.namespace,
            "workload": [subject.workload.kind, subject.workload.name]
            if subject.workload
            else None,
            "container": subject.container,
            "node": subject.node,
            "pvc": subject.pvc,
            "hint": str(subject.category_hint),
        },
        "reachable": context.reachable,
        "workload": _stable(_without_status_counts(workload_summary(context.workload)))
        if context.workload
        else None,
        "pods": sorted({_dumps(_stable(_pod_state(pod))) for pod in context.pods}),
        "events": sorted(
            {
                _dumps(_stable({k: v for k, v in event_summary(e).items() if k != "count"}))
                for e in context.events
                if e.get("type", "Warning") == "Warning"
            }
        ),
        "logs": sorted({_dumps(_log_signature(excerpt.lines)) for excerpt in context.logs}),
        "nodes": sorted(_dumps(_stable(_node_state(n))) for n in context.nodes),
        "pvcs": sorted(
            _dumps([(p.get("metadata") or {}).get("name"), (p.get("status") or {}).get("phase")])
            for p in context.pvcs
        ),
        "metrics": sorted(
            _dumps([m.container, m.resource, m.limit, _bucket(m.peak, m.limit)])
            for m in context.metrics
        ),
    }
    return hashlib.sha256(_dumps(document).encode()).hexdigest()


def _pod_state(pod: Mapping[str, Any]) -> dict[str, Any]:
    summary = pod_summary(pod)
    for key in ("name", "node", "message"):
        summary.pop(key, None)
    # Readiness follows the containers' states, which a crash loop flips between restarts.
    summary["conditions"] = [
        c for c in summary.get("conditions", []) if c.get("type") not in _DERIVED_CONDITIONS
    ]
    for key in ("initContainerStatuses", "containerStatuses"):
        for status in summary.get(key, []):
            status.pop("restartCount", None)
            state = status.get("state") or {}
            cycling = state.get("state") == "running" or state.get("reason") == "CrashLoopBackOff"
            if cycling and status.get("lastState"):
                status.pop("ready", None)
                status["state"] = "restarting"
    return summary


def _without_status_counts(summary: dict[str, Any]) -> dict[str, Any]:
    # Replica counts move while a rollout is stuck; the conditions say what matters.
    status = summary.get("status") or {}
    if status:
        summary["status"] = {"conditions": status.get("conditions")}
    return summary


def _node_state(node: Mapping[str, Any]) -> list[Any]:
    status = node.get("status") or {}
    conditions = sorted(
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions") or []
    )
    taints = sorted(
        (str(t.get("key")), str(t.get("effect")))
        for t in (node.get("spec") or {}).get("taints") or []
    )
    return [(node.get("metadata") or {}).get("name"), conditions, taints]


def _log_signature(lines: list[str]) -> list[str]:
    """The distinct error lines of a log, made stable; without any, its stable last lines."""
    errors = sorted({stable_text(line) for line in lines if is_error_line(line)})
    return errors or [stable_text(line) for line in lines[-_LOG_TAIL:]]


def _bucket(peak: float, limit: float | None) -> int | None:
    return None if not limit else min(int(peak / limit * 10), 10)  # tenths of the limit


def _stable(value: Any) -> Any:
    if isinstance(value, str):
        return stable_text(value)
    if isinstance(value, Mapping):
        return {k: _stable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class LlmCache:
    """Answers in the incidents table (``INCIDENTS_TABLE``) under ``pk = "LLMCACHE#<key>"``,
    ``sk = "answer"``, expiring after ``ttl_s`` (the table's TTL attribute ``expires_at``; an
    item past it is ignored even before DynamoDB deletes it). A cache that fails is logged by
    the caller and skipped: it never fails a diagnosis."""

    def __init__(
        self,
        table: Table | None = None,
        *,
        ttl_s: int = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.ttl_s = ttl_s
        self.clock = clock

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = Table(table_name("INCIDENTS_TABLE"))
        return self._table

    def get(self, key: str) -> Diagnosis | None:
        """The cached answer for ``key``, or None (absent or expired)."""
        item = self.table.get({"pk": PK_PREFIX + key, "sk": SK}, consistent=False)
        if not item or int(item.get("expires_at", 0)) <= self.clock():
            return None
        try:
            return Diagnosis.from_dict(item["diagnosis"])
        except (KeyError, ValueError, TypeError):
            return None  # written by another version: asked again, and overwritten

    def put(self, key: str, diagnosis: Diagnosis) -> None:
        if self.ttl_s <= 0:
            return
        now = self.clock()
        self.table.put(
            {
                "pk": PK_PREFIX + key,
                "sk": SK,
                "kind": "llm_cache",
                "diagnosis": diagnosis.as_dict(),
                "model": diagnosis.model,
                "created_at": int(now),
                "expires_at": int(now + self.ttl_s),
            }
        )
