"""Rule on failing liveness, readiness and startup probes (kubelet ``Unhealthy`` and
``Killing`` events). A patch only for a clear timing problem: the probe kills the container
while it is still starting (connection refused or timeouts, no error in its log, killed within
the time the probe allows)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pitcrew.incidents.analyzers.fixes import lengthen_startup
from pitcrew.incidents.analyzers.logs import error_lines, last_line
from pitcrew.incidents.analyzers.scene import (
    Finding,
    Scene,
    event_container,
    event_count,
    event_line,
    event_message,
    text,
)
from pitcrew.incidents.model import Category
from pitcrew.incidents.patches import find_container, probe_budget

_FAILED = re.compile(r"^(Liveness|Readiness|Startup) probe failed: ?(.*)", re.DOTALL)
_KILLED = re.compile(r"Container (\S+) failed (liveness|startup) probe, will be restarted")
_NOT_LISTENING = re.compile(
    r"connection refused|context deadline exceeded|Client\.Timeout|i/o timeout|timeout"
    r"|no route to host|EOF$",
    re.IGNORECASE,
)
_STATUS = re.compile(r"statuscode: (\d+)")
STARTUP_SLACK_SECONDS = 30  # kill timing is approximate: the kubelet probes on a period


def probe_failure(scene: Scene) -> list[Finding]:
    failures: dict[str, list[Mapping[str, Any]]] = {}
    for event in scene.pod_events("Unhealthy"):
        match = _FAILED.match(event_message(event))
        if match:
            failures.setdefault(match.group(1).lower(), []).append(event)
    kills: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for event in scene.pod_events("Killing"):
        match = _KILLED.search(event_message(event))
        if match:
            kills.setdefault(match.group(2), (match.group(1), event))
    if not failures and not kills:
        return []
    killer: str | None = next((p for p in ("startup", "liveness") if p in kills), None)
    if killer is None:
        killer = next(
            (
                p
                for p in ("startup", "liveness")
                if p in failures and _restarted(scene, failures[p])
            ),
            None,
        )
    probe: str = killer or ("readiness" if "readiness" in failures else next(iter(failures)))
    events = failures.get(probe, [])
    container = (
        kills[probe][0]
        if probe in kills
        else next((c for e in events if (c := event_container(e))), None)
        or scene.subject.container
        or _only_container(scene)
    )
    messages = [_FAILED.sub(r"\2", event_message(e)).strip() for e in events]
    evidence = [event_line(e) for e in events[:3]]
    if probe in kills:
        evidence.append(event_line(kills[probe][1]))
    failed_times = sum(event_count(e) for e in events)
    reason = _reason(messages)
    target = f"container {container} of {scene.label}" if container else scene.label
    if killer is None:
        cause = (
            f"The {probe} probe of {target} fails ({reason}): the pods are not ready and get no "
            "traffic"
        )
        summary = f"{scene.short}: {probe} probe failing ({reason})"
        return [Finding(Category.PROBE_FAILURE, 50, 0.7, cause, summary, evidence)]

    patch: dict[str, Any] | None = None
    timing, why = _timing(scene, container, killer, messages)
    evidence.append(why)
    if timing and container and scene.workload:
        patch, how = lengthen_startup(scene.workload, container, killer)
        evidence.append(how)
    if timing:
        cause = (
            f"The {killer} probe of {target} kills it while it is still starting "
            f"({reason}): the app needs longer to start than the probe allows"
        )
        summary = f"{scene.short}: {killer} probe kills {container} during startup"
    else:
        cause = (
            f"The {killer} probe of {target} fails ({reason}) {failed_times} times and the "
            "kubelet restarts the container"
        )
        summary = f"{scene.short}: {killer} probe failing ({reason}), container restarted"
    confidence = 0.8 if timing else 0.75
    return [Finding(Category.PROBE_FAILURE, 70, confidence, cause, summary, evidence, patch)]


def _restarted(scene: Scene, events: list[Mapping[str, Any]]) -> bool:
    pods = {text((e.get("involvedObject") or {}).get("name")) for e in events}
    return any(c.restarts > 0 for c in scene.containers() if c.pod_name in pods)


def _only_container(scene: Scene) -> str | None:
    names = {c.name for c in scene.containers() if not c.init}
    return names.pop() if len(names) == 1 else None


def _reason(messages: list[str]) -> str:
    for message in messages:
        status = _STATUS.search(message)
        if status:
            return f"HTTP {status.group(1)}"
    for message in messages:
        found = _NOT_LISTENING.search(message)
        if found:
            return found.group(0).lower()
    return messages[0][:80] if messages and messages[0] else "no detail"


def _timing(
    scene: Scene, container: str | None, killer: str, messages: list[str]
) -> tuple[bool, str]:
    """Whether the probe kills a container that is merely slow to start, and the line that
    says why (or why not)."""
    if not container:
        return False, "the failing container could not be identified"
    if not messages or not all(_NOT_LISTENING.search(m) for m in messages):
        return False, "the app answers the probe with a failure: not a timing problem"
    spec = find_container(scene.workload, container) or {}
    probe = spec.get(f"{killer}Probe")
    if not isinstance(probe, Mapping):
        return False, f"the {killer} probe of container {container} was not found in the workload"
    allowed = probe_budget(probe)
    if killer == "liveness" and isinstance(spec.get("startupProbe"), Mapping):
        allowed += probe_budget(spec["startupProbe"])
    states = [c for c in scene.containers() if c.name == container and c.ran_seconds is not None]
    longest = max((c.ran_seconds or 0 for c in states), default=None)
    log = scene.log(states[0].pod_name, container) if states else None
    why_not = None
    if longest is None:
        why_not = f"no finished run of container {container} to time"
    elif longest > allowed + STARTUP_SLACK_SECONDS:
        why_not = (
            f"container {container} ran up to {longest}s before it was killed, longer than "
            f"its {killer} probe allows at startup ({allowed}s): it became unhealthy later"
        )
    elif any(c.status.get("ready") is True for c in states):
        why_not = f"container {container} has been ready: it is not stuck starting"
    elif log and error_lines(log.lines):
        why_not = f"the log of container {container} shows errors: not a timing problem"
    if why_not:
        return False, why_not
    final = last_line(log.lines) if log else None
    said = f"; its last log line: {final}" if final else ""
    return True, (
        f"container {container} is killed after {longest}s, about when its {killer} probe "
        f"gives up at startup ({allowed}s), and never became ready{said}"
    )
