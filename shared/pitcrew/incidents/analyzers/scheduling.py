"""Rules on pods that cannot start anywhere: unschedulable pods (resources, taints, affinity)
and PersistentVolumeClaims that do not bind."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

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
from pitcrew.incidents.quantity import QuantityError, format_quantity, parse_quantity

_INSUFFICIENT = re.compile(r"(\d+) Insufficient ([\w./-]*\w)")
_TAINT = re.compile(r"(\d+) node\(s\) had (?:untolerated )?taints? \{([^}]*)\}")
_PVC_UNBOUND = re.compile(
    r"unbound immediate PersistentVolumeClaims|persistentvolumeclaim \"[^\"]+\" not found",
    re.IGNORECASE,
)
_TOTAL = re.compile(r"0/(\d+) nodes are available")
_AFFINITY = {
    "didn't match Node's node affinity/selector": "its nodeSelector or node affinity",
    "didn't match node selector": "its nodeSelector",
    "didn't match pod affinity rules": "its pod affinity rules",
    "didn't match pod anti-affinity rules": "its pod anti-affinity rules",
    "didn't satisfy existing pods anti-affinity rules": "other pods' anti-affinity rules",
    "didn't match pod topology spread constraints": "its topology spread constraints",
    "had volume node affinity conflict": "the zone of its volumes",
    "were unschedulable": "cordoned nodes",
    "Too many pods": "the nodes' pod capacity",
}


def _scheduling_message(
    scene: Scene,
) -> tuple[Mapping[str, Any] | None, str, Mapping[str, Any] | None]:
    """The first pending pod's scheduler message, and the FailedScheduling event if any."""
    events = scene.pod_events("FailedScheduling")
    for pod in scene.pods:
        for condition in items(pod, "status", "conditions"):
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                event = next(
                    (e for e in events if text(dig(e, "involvedObject", "name")) == name_of(pod)),
                    None,
                )
                return pod, text(condition.get("message")), event
    if events:
        name = text(dig(events[0], "involvedObject", "name"))
        named = next((p for p in scene.pods if name_of(p) == name), None)
        return named, event_message(events[0]), events[0]
    return None, "", None


def unschedulable(scene: Scene) -> list[Finding]:
    pod, message, event = _scheduling_message(scene)
    if not message or _PVC_UNBOUND.search(message):
        return []
    head = message.split(" preemption:", 1)[0]
    total = _TOTAL.search(head)
    nodes = f"of {total.group(1)} nodes " if total else ""
    reasons: list[str] = []
    for count, resource in _INSUFFICIENT.findall(head):
        requested = _requested(pod, resource) if pod else None
        asked = f" for its request of {requested}" if requested else ""
        reasons.append(f"{count} {nodes}lack {resource}{asked}")
    for count, taint in _TAINT.findall(head):
        reasons.append(f"{count} {nodes}have a taint it does not tolerate ({{{taint.strip()}}})")
    for phrase, what in _AFFINITY.items():
        found = re.search(rf"(\d+) node\(s\) {re.escape(phrase)}|(\d+) {re.escape(phrase)}", head)
        if found:
            count = found.group(1) or found.group(2)
            reasons.append(f"{count} {nodes}are excluded by {what}")
    pod_name = name_of(pod) if pod else text(dig(event, "involvedObject", "name"))
    evidence = [f"pod {pod_name} is Pending: {message}"]
    if event is not None:
        evidence.append(event_line(event))
    if pod is not None:
        evidence.extend(_constraints(pod))
    detail = "; ".join(reasons) or head
    cause = f"Pod {pod_name} of {scene.label} cannot be scheduled: {detail}"
    kind = (
        "resources"
        if _INSUFFICIENT.search(head)
        else "taints"
        if _TAINT.search(head)
        else "constraints"
    )
    summary = f"{scene.short}: unschedulable ({kind}: {reasons[0] if reasons else head[:60]})"
    return [Finding(Category.UNSCHEDULABLE, 80, 0.85 if reasons else 0.7, cause, summary, evidence)]


def _requested(pod: Mapping[str, Any], resource: str) -> str | None:
    total = Decimal(0)
    for container in items(pod, "spec", "containers"):
        value = dig(container, "resources", "requests", resource)
        try:
            total += parse_quantity(value) if value is not None else 0
        except QuantityError:
            continue
    return format_quantity(total, resource) if total else None


def _constraints(pod: Mapping[str, Any]) -> list[str]:
    lines = []
    selector = dig(pod, "spec", "nodeSelector")
    if isinstance(selector, Mapping) and selector:
        lines.append("nodeSelector: " + ", ".join(f"{k}={v}" for k, v in sorted(selector.items())))
    required = dig(
        pod, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required:
        lines.append("required node affinity is set")
    tolerations = items(pod, "spec", "tolerations")
    custom = [t for t in tolerations if not text(t.get("key")).startswith("node.kubernetes.io/")]
    if custom:
        lines.append(
            "tolerations: "
            + ", ".join(f"{text(t.get('key'))}:{text(t.get('effect')) or '*'}" for t in custom)
        )
    return lines


def pvc_pending(scene: Scene) -> list[Finding]:
    pending = [
        pvc
        for pvc in scene.context.pvcs
        if isinstance(pvc, Mapping) and dig(pvc, "status", "phase") == "Pending"
    ]
    pod, message, event = _scheduling_message(scene)
    if not pending and not (message and _PVC_UNBOUND.search(message)):
        return []
    if not pending:
        claims = (
            [
                text(dig(v, "persistentVolumeClaim", "claimName"))
                for v in items(pod, "spec", "volumes")
                if dig(v, "persistentVolumeClaim", "claimName")
            ]
            if pod
            else []
        )
        names = ", ".join(claims) or "its claims"
        cause = (
            f"Pod {name_of(pod) if pod else ''} of {scene.label} waits for "
            f"PersistentVolumeClaims that are not bound ({names})"
        )
        evidence = [f"scheduler: {message}"] + ([event_line(event)] if event else [])
        return [
            Finding(
                Category.PVC_PENDING,
                85,
                0.7,
                cause,
                f"{scene.short}: PVC not bound ({names})",
                evidence,
            )
        ]
    pvc = pending[0]
    name = name_of(pvc)
    namespace = text(dig(pvc, "metadata", "namespace")) or scene.namespace
    storage_class = dig(pvc, "spec", "storageClassName")
    size = text(dig(pvc, "spec", "resources", "requests", "storage"))
    modes = ", ".join(text(m) for m in dig(pvc, "spec", "accessModes") or [])
    described = f"PersistentVolumeClaim {namespace}/{name} is Pending"
    details = [f"storageClassName {storage_class}" if storage_class else "no storageClassName"]
    details += [d for d in (size, modes) if d]
    evidence = [f"{described} ({', '.join(details)})"]
    events = scene.events_about("PersistentVolumeClaim", name)
    evidence.extend(event_line(e) for e in events[:3])
    if message:
        evidence.append(f"scheduler: {message}")
    by_reason = {text(e.get("reason")): event_message(e) for e in events}
    rank, confidence = 85, 0.85
    if "ProvisioningFailed" in by_reason:
        why = f"provisioning its volume failed: {by_reason['ProvisioningFailed']}"
    elif "FailedBinding" in by_reason:
        why = f"no volume can be bound: {by_reason['FailedBinding']}"
    elif not storage_class:
        why = (
            "it names no storage class and no PersistentVolume matches it "
            "(is there a default StorageClass?)"
        )
        confidence = 0.75
    elif "ExternalProvisioning" in by_reason:
        provisioner = re.search(
            r'external provisioner "([^"]+)"', by_reason["ExternalProvisioning"]
        )
        who = f" {provisioner.group(1)}" if provisioner else ""
        why = f"the provisioner{who} has not created a volume (is its CSI driver running?)"
        confidence = 0.7
    elif "WaitForFirstConsumer" in by_reason or not message:
        # Normal until a pod using it is scheduled: a scheduling problem explains it better.
        why = f"storage class {storage_class} binds only when a pod using it is scheduled"
        rank, confidence = 40, 0.5
    else:
        why = "no volume is bound to it yet"
        confidence = 0.6
    cause = f"{described}: {why}; {scene.label} cannot start its pods until it binds"
    summary = f"{scene.short}: PVC {name} Pending"
    return [Finding(Category.PVC_PENDING, rank, confidence, cause, summary, evidence)]
