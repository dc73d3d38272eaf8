"""Rules on the workload objects themselves: rollouts that do not progress (Deployments,
StatefulSets, DaemonSets) and failed Jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pitcrew.incidents.analyzers.logs import error_lines, telling_line
from pitcrew.incidents.analyzers.scene import (
    Finding,
    Scene,
    dig,
    event_line,
    event_message,
    items,
    name_of,
    text,
)
from pitcrew.incidents.model import Category


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in items(obj, "status", "conditions") if c.get("type") == kind), {})


def _number(obj: Mapping[str, Any], *keys: str, default: int = 0) -> int:
    value = dig(obj, *keys)
    return value if isinstance(value, int) else default


def _deployment(workload: Mapping[str, Any]) -> tuple[str, list[str]]:
    lines, headline = [], ""
    for kind, bad in (("Progressing", "False"), ("ReplicaFailure", "True")):
        condition = _condition(workload, kind)
        if condition.get("status") == bad:
            reason = text(condition.get("reason"))
            headline = headline or reason
            lines.append(f"condition {kind} {bad} {reason}: {text(condition.get('message'))}")
    desired = _number(workload, "spec", "replicas", default=1)
    available = _number(workload, "status", "availableReplicas")
    updated = _number(workload, "status", "updatedReplicas")
    unavailable = _number(workload, "status", "unavailableReplicas")
    if unavailable or available < desired:
        lines.append(
            f"{available}/{desired} replicas available, {updated} updated, "
            f"{unavailable} unavailable"
        )
    return headline, lines


def _statefulset(workload: Mapping[str, Any]) -> tuple[str, list[str]]:
    lines = []
    desired = _number(workload, "spec", "replicas", default=1)
    ready = _number(workload, "status", "readyReplicas")
    current = dig(workload, "status", "currentRevision")
    update = dig(workload, "status", "updateRevision")
    if ready < desired:
        lines.append(f"{ready}/{desired} replicas ready")
    if current and update and current != update:
        updated = _number(workload, "status", "updatedReplicas")
        lines.append(f"update to revision {update} not rolled out ({updated}/{desired} updated)")
    return "", lines


def _daemonset(workload: Mapping[str, Any]) -> tuple[str, list[str]]:
    lines = []
    desired = _number(workload, "status", "desiredNumberScheduled")
    ready = _number(workload, "status", "numberReady")
    updated = _number(workload, "status", "updatedNumberScheduled")
    misscheduled = _number(workload, "status", "numberMisscheduled")
    if ready < desired or updated < desired:
        lines.append(f"{ready}/{desired} pods ready, {updated}/{desired} updated")
    if misscheduled:
        lines.append(f"{misscheduled} pods run on nodes they should not")
    return "", lines


_ROLLOUTS = {"Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset}


def rollout_stuck(scene: Scene) -> list[Finding]:
    workload = scene.workload
    reader = _ROLLOUTS.get(text(workload.get("kind")))
    headline, lines = reader(workload) if reader else ("", [])
    if not lines:
        return []
    name = name_of(workload)
    # ReplicaSet and pod-creation events explain a rollout that makes no pods (quota, admission).
    related = [
        e
        for e in scene.events
        if e.get("reason") in ("FailedCreate", "FailedCreatePodSandBox")
        and text(dig(e, "involvedObject", "name")).startswith(name)
    ]
    evidence = [f"{scene.label}: {line}" for line in lines] + [event_line(e) for e in related[:3]]
    if related:
        cause = (
            f"The rollout of {scene.label} is stuck: its pods cannot be created: "
            f"{event_message(related[0])}"
        )
        confidence = 0.8
    else:
        cause = (
            f"The rollout of {scene.label} is stuck ({lines[0]}); no more specific cause was found "
            "in its pods"
        )
        confidence = 0.6
    summary = f"{scene.short}: rollout stuck ({headline or lines[-1]})"
    return [Finding(Category.ROLLOUT_STUCK, 20, confidence, cause, summary, evidence)]


_JOB_FAILURES = {
    "BackoffLimitExceeded": "its pods failed more times than its backoffLimit allows",
    "DeadlineExceeded": "it ran longer than its activeDeadlineSeconds",
    "PodFailurePolicy": "a pod failure matched its podFailurePolicy",
    "MaxFailedIndexesExceeded": "too many of its indexes failed",
}


def job_failed(scene: Scene) -> list[Finding]:
    workload = scene.workload
    if text(workload.get("kind")) != "Job":
        return []
    failed = _condition(workload, "Failed")
    if failed.get("status") != "True":
        return []
    reason = text(failed.get("reason"))
    evidence = [f"{scene.label}: condition Failed {reason}: {text(failed.get('message'))}"]
    limit = dig(workload, "spec", "backoffLimit")
    evidence.append(
        f"{_number(workload, 'status', 'failed')} failed pods"
        + (f", backoffLimit {limit}" if isinstance(limit, int) else "")
        + (
            f", activeDeadlineSeconds {dig(workload, 'spec', 'activeDeadlineSeconds')}"
            if reason == "DeadlineExceeded"
            else ""
        )
    )
    crashed = [c for c in scene.containers() if c.exit_code]
    errors: list[str] = []
    if crashed:
        evidence.append(crashed[0].termination_line())
        log = scene.log(crashed[0].pod_name, crashed[0].name)
        errors = error_lines(log.lines) if log else []
        if log and errors:
            evidence.append(f"log of pod {log.pod} container {log.container}:")
            evidence.extend(errors)
    why = _JOB_FAILURES.get(reason, f"it failed ({reason or 'no reason given'})")
    cause = f"{scene.label} failed: {why}"
    if crashed:
        cause += f"; its container {crashed[0].name} exits with code {crashed[0].exit_code}"
    telling = telling_line(errors)
    if telling:
        cause += f": {telling[:200]}"
    summary = f"{scene.short}: Job failed ({reason})"
    return [
        Finding(
            Category.JOB_FAILED,
            65,
            0.85 if errors or reason == "DeadlineExceeded" else 0.75,
            cause,
            summary,
            evidence,
        )
    ]
