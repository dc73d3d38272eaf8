"""Rule on nodes: NotReady (or unknown), memory, disk or PID pressure, network unavailable,
and pods evicted because their node ran short."""

from __future__ import annotations

from pitcrew.incidents.analyzers.scene import Finding, Scene, dig, items, name_of, text
from pitcrew.incidents.model import Category

_PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def node_not_ready(scene: Scene) -> list[Finding]:
    problems: list[tuple[str, str]] = []  # (node, what)
    evidence: list[str] = []
    for node in scene.context.nodes:
        name = name_of(node)
        for condition in items(node, "status", "conditions"):
            kind, status = text(condition.get("type")), text(condition.get("status"))
            bad = (kind == "Ready" and status != "True") or (kind in _PRESSURE and status == "True")
            if not bad:
                continue
            what = (
                "NotReady"
                if kind == "Ready" and status == "False"
                else ("Ready Unknown" if kind == "Ready" else kind)
            )
            problems.append((name, what))
            evidence.append(
                f"node {name}: {kind} {status} {text(condition.get('reason'))}: "
                f"{text(condition.get('message'))} "
                f"(since {text(condition.get('lastTransitionTime'))})"
            )
        if dig(node, "spec", "unschedulable") is True:
            evidence.append(f"node {name} is cordoned (spec.unschedulable)")
    evicted = [pod for pod in scene.pods if dig(pod, "status", "reason") == "Evicted"]
    for pod in evicted[:3]:
        evidence.append(f"pod {name_of(pod)} Evicted: {text(dig(pod, 'status', 'message'))}")
    if not problems and not evicted:
        return []
    if problems:
        node_name, what = problems[0]
        ours = [name_of(p) for p in scene.pods if dig(p, "spec", "nodeName") == node_name]
        on = (
            f"; pods of {scene.label} on it: {', '.join(ours[:3])}"
            if ours and scene.workload
            else ""
        )
        reason = "the kubelet stopped reporting" if what == "Ready Unknown" else what
        cause = f"Node {node_name} is unhealthy ({reason}){on}"
        summary = f"node {node_name}: {what}"
        confidence = 0.9
    else:
        message = text(dig(evicted[0], "status", "message"))
        cause = f"Pods of {scene.label} were evicted because their node ran short: {message}"
        summary = f"{scene.short}: pods evicted by node pressure"
        confidence = 0.7
    return [Finding(Category.NODE_NOT_READY, 55, confidence, cause, summary, evidence)]
