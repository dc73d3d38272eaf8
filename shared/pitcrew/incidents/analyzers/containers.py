"""Rules on container states: OOMKilled, crashes with a non-zero exit, missing Secrets and
ConfigMaps, and images that cannot be pulled."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pitcrew.incidents.analyzers.fixes import raise_memory
from pitcrew.incidents.analyzers.logs import error_lines, last_line, telling_line
from pitcrew.incidents.analyzers.scene import (
    ContainerState,
    Finding,
    Scene,
    clip,
    dig,
    event_line,
    event_message,
    items,
    text,
)
from pitcrew.incidents.model import Category
from pitcrew.incidents.patches import find_container, pod_spec
from pitcrew.incidents.quantity import QuantityError, format_memory, parse_quantity

EXIT_CODES = {
    1: "a generic application error",
    2: "a usage error (bad arguments or configuration)",
    126: "the command is not executable",
    127: "the command was not found in the image",
    134: "the process aborted (SIGABRT)",
    137: "the process was killed (SIGKILL)",
    139: "a segmentation fault (SIGSEGV)",
    143: "the process was terminated (SIGTERM)",
}


def oom_killed(scene: Scene) -> list[Finding]:
    killed = [c for c in scene.containers() if c.terminated.get("reason") == "OOMKilled"]
    if not killed:
        return []
    first = killed[0]
    names = list(dict.fromkeys(c.name for c in killed))
    evidence = [c.termination_line() for c in killed[:3]]
    if len(killed) > 3:
        evidence.append(f"{len(killed)} container instances were OOMKilled in all")
    patch: dict[str, Any] | None = None
    how = ""
    for name in names:
        limit = _limit(scene, first.pod, name)
        peak = _peak(scene, name)
        if limit is not None:
            evidence.append(f"container {name}: memory limit {format_memory(limit)}")
        if peak is not None:
            share = f" ({peak / limit:.0%} of the limit)" if limit else ""
            evidence.append(
                f"container {name}: peak memory {format_memory(peak)}{share} (Prometheus)"
            )
        if scene.workload and patch is None:
            patch, how = raise_memory(scene.workload, name, peak)
        elif not scene.workload:
            how = "the owning workload was not read, so no patch is proposed"
        if how:
            evidence.append(how)
    limit = _limit(scene, first.pod, first.name)
    at = f" {format_memory(limit)}" if limit is not None else ""
    cause = (
        f"Container {first.name} of {scene.label} runs out of memory: the kernel kills it "
        f"when it reaches its{at} memory limit (OOMKilled, exit code 137)"
    )
    if limit is None:
        cause = (
            f"Container {first.name} of {scene.label} was OOMKilled: it has no memory limit, "
            "so the node ran out of memory"
        )
    summary = f"{scene.short}: {first.name} OOMKilled at{at or ' no'} limit"
    if patch is not None:
        summary += f"; raise to {_new_limit(patch)}"
    return [Finding(Category.OOM_KILLED, 100, 0.95, cause, summary, evidence, patch)]


def _limit(scene: Scene, pod: Mapping[str, Any], container: str) -> Decimal | None:
    spec = find_container(scene.workload, container) or scene.pod_container(pod, container)
    try:
        value = dig(spec, "resources", "limits", "memory")
        return parse_quantity(value) if value is not None else None
    except QuantityError:
        return None


def _peak(scene: Scene, container: str) -> Decimal | None:
    peaks = [
        Decimal(str(m.peak))
        for m in scene.context.metrics
        if m.container == container and m.resource == "memory" and m.peak > 0
    ]
    return max(peaks) if peaks else None


def _new_limit(patch: Mapping[str, Any]) -> str:
    for container in (
        dig(patch, "spec", "template", "spec", "containers")
        or dig(patch, "spec", "jobTemplate", "spec", "template", "spec", "containers")
        or []
    ):
        memory = dig(container, "resources", "limits", "memory")
        if memory:
            return text(memory)
    return "more"


def app_crash(scene: Scene) -> list[Finding]:
    crashed = [c for c in scene.containers() if _crashed(c)]
    if not crashed:
        return []
    first = crashed[0]
    code = first.exit_code
    evidence = [c.termination_line() for c in crashed[:3]]
    log = scene.log(first.pod_name, first.name)
    errors = error_lines(log.lines) if log else []
    if log is None:
        evidence.append(f"no log of container {first.name} was available")
    elif errors:
        which = "previous instance" if log.previous else "current instance"
        evidence.append(f"log of pod {log.pod} container {log.container} ({which}):")
        evidence.extend(errors)
    else:
        final = last_line(log.lines)
        evidence.append(
            f"no error line in the log of container {first.name}"
            + (f"; its last line: {final}" if final else " (it is empty)")
        )
    backoff = scene.pod_events("BackOff")
    if backoff:
        evidence.append(event_line(backoff[0]))
    if code == 0:
        cause = (
            f"Container {first.name} of {scene.label} exits with code 0 and is restarted: "
            "its process finishes instead of running as a server"
        )
        summary = f"{scene.short}: {first.name} exits immediately (code 0), restart loop"
        return [Finding(Category.APP_CRASH, 58, 0.6, cause, summary, evidence)]
    meaning = EXIT_CODES.get(code or 0, "an application error")
    cause = (
        f"Container {first.name} of {scene.label} crashes: it exits with code {code} ({meaning})"
    )
    telling = telling_line(errors)
    if telling:
        cause += f"; its log says: {clip(telling, 200)}"
    summary = f"{scene.short}: {first.name} crashes with exit code {code}"
    if telling:
        summary += f": {clip(telling, 90)}"
    confidence = 0.85 if errors else 0.65
    return [Finding(Category.APP_CRASH, 60, confidence, cause, summary, evidence)]


def _crashed(container: ContainerState) -> bool:
    term = container.terminated
    if not term or term.get("reason") == "OOMKilled":
        return False
    if container.exit_code:
        return True
    # Exit 0 is a crash only when the kubelet keeps restarting it.
    return container.waiting.get("reason") == "CrashLoopBackOff" and container.exit_code == 0


_MISSING_OBJECT = re.compile(r"\b(secret|configmap)s? \"([^\"]+)\" not found", re.IGNORECASE)
_MISSING_KEY = re.compile(r"couldn't find key (\S+) in (Secret|ConfigMap) ([^/\s]+)/(\S+)")


def missing_config(scene: Scene) -> list[Finding]:
    sources: list[tuple[str, ContainerState | None, Mapping[str, Any] | None]] = []
    for container in scene.containers():
        reason = container.waiting.get("reason")
        if reason in ("CreateContainerConfigError", "CreateContainerError"):
            sources.append((text(container.waiting.get("message")), container, None))
    for event in scene.pod_events():
        if event.get("reason") in ("Failed", "FailedMount"):
            sources.append((event_message(event), None, event))
    for message, state, source_event in sources:
        key = _MISSING_KEY.search(message)
        missing = _MISSING_OBJECT.search(message)
        if key:
            item, kind, namespace, name = key.group(1), key.group(2), key.group(3), key.group(4)
            what = f'{kind} {namespace}/{name} has no key "{item}"'
        elif missing:
            kind = "Secret" if missing.group(1).lower() == "secret" else "ConfigMap"
            name, namespace = missing.group(2), scene.namespace
            what = f'{kind} "{name}" does not exist' + (
                f" in namespace {namespace}" if namespace else ""
            )
        else:
            continue
        evidence: list[str] = []
        if state is not None:
            evidence.append(f"{state.where}: {state.waiting.get('reason')}: {message}")
        if source_event is not None:
            evidence.append(event_line(source_event))
        evidence.extend(
            event_line(e)
            for e in scene.pod_events()
            if e is not source_event and name in event_message(e)
        )
        evidence.extend(_references(scene, kind, name))
        who = f"container {state.name} of " if state else ""
        cause = f"{what}; {who}{scene.label} cannot start without it"
        summary = f"{scene.short}: missing {kind} {name}" + (f" key {key.group(1)}" if key else "")
        return [Finding(Category.MISSING_CONFIG, 95, 0.95, cause, summary, evidence[:6])]
    return []


def _references(scene: Scene, kind: str, name: str) -> list[str]:
    """Where the workload refers to that Secret or ConfigMap."""
    found: list[str] = []
    ref_key = "secretKeyRef" if kind == "Secret" else "configMapKeyRef"
    from_key = "secretRef" if kind == "Secret" else "configMapRef"
    spec = pod_spec(scene.workload)
    for list_key in ("containers", "initContainers"):
        for container in items(spec, list_key):
            where = f"container {text(container.get('name'))}"
            for env in items(container, "env"):
                if dig(env, "valueFrom", ref_key, "name") == name:
                    found.append(f"{where} reads env {text(env.get('name'))} from {kind} {name}")
            for source in items(container, "envFrom"):
                if dig(source, from_key, "name") == name:
                    found.append(f"{where} loads its environment from {kind} {name}")
    volume_key, volume_name = (
        ("secret", "secretName") if kind == "Secret" else ("configMap", "name")
    )
    for volume in items(spec, "volumes"):
        if dig(volume, volume_key, volume_name) == name:
            found.append(f"volume {text(volume.get('name'))} mounts {kind} {name}")
    return found


_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
_UNAUTHORIZED = re.compile(
    r"unauthorized|authentication required|\bdenied\b|\b40[13]\b|forbidden|insufficient_scope"
    r"|no basic auth credentials",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"manifest unknown|not found|\b404\b|name unknown", re.IGNORECASE)
_UNREACHABLE = re.compile(
    r"i/o timeout|no such host|connection refused|TLS handshake|deadline exceeded", re.IGNORECASE
)
_IMAGE = re.compile(r"(?:pulling|pull) image \\?\"([^\"\\]+)\\?\"")


def image_pull(scene: Scene) -> list[Finding]:
    failing = [c for c in scene.containers() if c.waiting.get("reason") in _PULL_REASONS]
    pull_events = [
        e
        for e in scene.pod_events()
        if e.get("reason") in ("Failed", "ErrImagePull", "BackOff", "InspectFailed")
        and "image" in event_message(e).lower()
    ]
    if not failing and not pull_events:
        return []
    container = failing[0] if failing else None
    image = text(container.status.get("image")) if container else ""
    if container and not image:
        image = text(scene.pod_container(container.pod, container.name).get("image"))
    messages = [text(c.waiting.get("message")) for c in failing[:1]]
    messages += [event_message(e) for e in pull_events]
    if not image:
        image = next((m.group(1) for msg in messages if (m := _IMAGE.search(msg))), "")
    combined = "\n".join(messages)
    shown = f'image "{image}"' if image else "its image"
    reason = text(container.waiting.get("reason")) if container else "Failed"
    who = f"container {container.name} of {scene.label}" if container else scene.label
    if reason == "InvalidImageName":
        why, summary = f"{shown} is not a valid image reference", "invalid image name"
    elif _UNAUTHORIZED.search(combined):
        why = (
            f"the registry refuses to serve {shown} to the node: pull credentials are missing or "
            "wrong (imagePullSecrets, or the node's registry permissions), or the repository "
            "is private"
        )
        summary = "image pull unauthorized"
    elif _NOT_FOUND.search(combined):
        why = (
            f"{shown} does not exist in the registry: the tag or repository is wrong or was "
            "never pushed"
        )
        summary = "image not found"
    elif _UNREACHABLE.search(combined):
        why = f"the node cannot reach the registry to pull {shown}"
        summary = "registry unreachable"
    else:
        why = f"{shown} cannot be pulled"
        summary = "image pull failing"
    evidence = []
    if container:
        line = f"{container.where}: {reason}"
        if container.waiting.get("message"):
            line += f": {container.waiting['message']}"
        evidence.append(line)
    evidence.extend(event_line(e) for e in pull_events[:3])
    evidence.append(
        "no patch: pitcrew never changes an image; fix the tag, the registry or the credentials"
    )
    confidence = 0.9 if summary in ("image pull unauthorized", "image not found") else 0.75
    cause = f"{who[0].upper()}{who[1:]} cannot start: {why} ({reason})"
    return [
        Finding(
            Category.IMAGE_PULL,
            90,
            confidence,
            cause,
            f"{scene.short}: {summary}" + (f" ({image})" if image else ""),
            evidence,
        )
    ]
