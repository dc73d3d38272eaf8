"""Rule-based analyzers: a deterministic, offline root cause for what an alert is about.

``analyze`` runs every rule on the cluster context and keeps the most specific answer: each
finding carries a rank, highest first: OOMKilled, missing config, image pull, unbound PVC,
unschedulable, a probe killing the container, a failed Job, an app crash, node trouble, a
readiness probe failing, a claim waiting for its pod, a stuck rollout. So an OOMKilled
container inside a stuck rollout is ``oom_killed``, with the rollout's state as supporting
evidence. Without a reachable cluster the answer comes from the alert alone, with low
confidence, no patch, and evidence saying why the cluster could not be read.
"""

from __future__ import annotations

from collections.abc import Callable

from pitcrew.incidents.analyzers.containers import app_crash, image_pull, missing_config, oom_killed
from pitcrew.incidents.analyzers.nodes import node_not_ready
from pitcrew.incidents.analyzers.probes import probe_failure
from pitcrew.incidents.analyzers.scene import Finding, Scene, clip, dig, name_of, text
from pitcrew.incidents.analyzers.scheduling import pvc_pending, unschedulable
from pitcrew.incidents.analyzers.workloads import job_failed, rollout_stuck
from pitcrew.incidents.model import Category, ClusterContext, Diagnosis, Subject

Rule = Callable[[Scene], list[Finding]]

RULES: tuple[Rule, ...] = (
    oom_killed,
    missing_config,
    image_pull,
    pvc_pending,
    unschedulable,
    probe_failure,
    job_failed,
    app_crash,
    node_not_ready,
    rollout_stuck,
)

# Findings that describe the workload's state rather than a cause: shown as supporting
# evidence when a more specific cause wins.
_SUPPORTING = (Category.ROLLOUT_STUCK, Category.JOB_FAILED)

# What an alert's category hint means, for answers from the alert alone.
_HINTS = {
    Category.OOM_KILLED: "a container was OOMKilled (it exceeded its memory limit)",
    Category.APP_CRASH: "a container is crash-looping",
    Category.MISSING_CONFIG: "a container cannot be created (often a missing Secret or ConfigMap)",
    Category.IMAGE_PULL: "an image cannot be pulled",
    Category.PROBE_FAILURE: "a probe is failing",
    Category.UNSCHEDULABLE: "pods are not ready or cannot be scheduled",
    Category.PVC_PENDING: "a PersistentVolumeClaim or volume has a problem",
    Category.ROLLOUT_STUCK: "the workload does not have the replicas it wants",
    Category.NODE_NOT_READY: "a node is not ready or under pressure",
    Category.JOB_FAILED: "a Job failed",
}


def analyze(subject: Subject, context: ClusterContext) -> Diagnosis:
    """The most specific root cause the rules find for ``subject`` in ``context``.

    Deterministic and offline; never raises (a rule that trips over a malformed object is
    skipped and named in the evidence).
    """
    try:
        if not context.reachable:
            return _from_alert(subject, context)
        return _from_cluster(subject, context)
    except Exception as exc:  # the last guard of "never raises": every rule is guarded too
        return Diagnosis(
            category=Category.UNKNOWN,
            root_cause=f"The rules could not analyze {subject.alertname}: {type(exc).__name__}",
            confidence=0.0,
            evidence=(clip(f"analyzer error: {type(exc).__name__}: {exc}"),),
            summary_line=f"{subject.alertname}: no diagnosis (analyzer error)",
        )


def _from_cluster(subject: Subject, context: ClusterContext) -> Diagnosis:
    scene = Scene(subject, context)
    findings: list[Finding] = []
    failures: list[str] = []
    for rule in RULES:
        try:
            findings.extend(rule(scene))
        except Exception as exc:
            failures.append(clip(f"rule {rule.__name__} skipped: {type(exc).__name__}: {exc}"))
    if not findings:
        return _nothing_found(scene, failures)
    # Stable sort: at equal rank and confidence, the order of RULES decides.
    best = sorted(findings, key=lambda f: (-f.rank, -f.confidence))[0]
    supporting = [
        f.evidence[0]
        for f in findings
        if f is not best and f.category in _SUPPORTING and f.evidence
    ]
    return best.diagnosis(supporting[:2] + failures)


def _nothing_found(scene: Scene, failures: list[str]) -> Diagnosis:
    evidence = []
    for pod in scene.pods[:5]:
        phase = text(dig(pod, "status", "phase")) or "unknown phase"
        statuses = dig(pod, "status", "containerStatuses") or []
        ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready") is True)
        evidence.append(f"pod {name_of(pod)}: {phase}, {ready}/{len(statuses)} containers ready")
    if not scene.pods:
        evidence.append("no pods were found for it")
    evidence.append(f"{len(scene.events)} warning events, {len(scene.context.logs)} logs read")
    hint = scene.subject.category_hint
    suggests = f"; the alert suggests {_HINTS[hint]}" if hint in _HINTS else ""
    return Diagnosis(
        category=Category.UNKNOWN,
        root_cause=f"No rule matched what the cluster shows for {scene.label}{suggests}",
        confidence=0.2,
        evidence=tuple(clip(line) for line in evidence + failures),
        summary_line=clip(
            f"{scene.short}: {scene.subject.alertname}, no cause found by the rules", 160
        ),
    )


def _from_alert(subject: Subject, context: ClusterContext) -> Diagnosis:
    scene = Scene(subject, context)
    why = "; ".join(context.notes) or "no reason recorded"
    evidence = [f"cluster {context.cluster or subject.cluster} was not reachable: {why}"]
    evidence.append(f"alert {subject.alertname} about {scene.label}")
    for label, value in (
        ("pod", subject.pod),
        ("container", subject.container),
        ("node", subject.node),
        ("persistentvolumeclaim", subject.pvc),
    ):
        if value:
            evidence.append(f"alert label {label}: {value}")
    evidence.append("diagnosed from the alert alone; no patch without the workload")
    hint = subject.category_hint
    if hint in _HINTS:
        cause = f"{subject.alertname} says {_HINTS[hint]} in {scene.label} (from the alert alone)"
        confidence = 0.3
    else:
        cause = (
            f"{subject.alertname} fired for {scene.label}; without the cluster the cause is unknown"
        )
        confidence = 0.1
    return Diagnosis(
        category=hint,
        root_cause=cause,
        confidence=confidence,
        evidence=tuple(clip(line) for line in evidence),
        summary_line=clip(f"{scene.short}: {subject.alertname} (cluster unreachable)", 160),
    )


__all__ = ["RULES", "analyze"]
