"""The patch allowlist: which strategic-merge patches of a workload manifest pitcrew may
propose, whoever proposed them (the analyzers or the LLM).

A patch names its workload (``apiVersion``, ``kind``, ``metadata.name``/``namespace``) and may
change only container resources (cpu and memory requests and limits), env, probes and
replicas. Resources move at most 4x (up or down) from the value in the workload, so a
container or value the workload does not have cannot be bounded and is refused. Everything
else (images, security contexts, volumes, host namespaces, service accounts, commands,
scheduling) is refused with a message naming the path and why.

``check_patch`` is pure and fast: ``fix_pr`` calls it again right before writing to git.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from pitcrew.incidents.model import Diagnosis
from pitcrew.incidents.quantity import QuantityError, format_quantity, parse_quantity

ALLOWLIST = "container resources (cpu/memory), env, probes and replicas"
MAX_RESOURCE_FACTOR = 4
MAX_REPLICA_FACTOR = 4
MAX_REPLICAS = 50

# Where each kind keeps its pod spec, and whether it has spec.replicas.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_CONTAINER_LISTS = ("containers", "initContainers")
_CONTAINER_KEYS = frozenset({"name", "resources", "env", *PROBES})
_RESOURCES = ("cpu", "memory")
_PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")
# Probe timings: (minimum, maximum) seconds or counts.
_PROBE_NUMBERS = {
    "initialDelaySeconds": (0, 600),
    "periodSeconds": (1, 300),
    "timeoutSeconds": (1, 60),
    "successThreshold": (1, 10),
    "failureThreshold": (1, 60),
    "terminationGracePeriodSeconds": (1, 300),
}
MAX_PROBE_BUDGET_SECONDS = 900  # initialDelaySeconds + failureThreshold x periodSeconds
_LOADER_VARIABLES = frozenset({"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"})

# Why a field outside the allowlist is refused (anything not named here: "not in the allowlist").
_REFUSED = {
    "image": "image changes are never proposed",
    "imagePullPolicy": "image changes are never proposed",
    "securityContext": "security contexts are never changed",
    "privileged": "privileged mode is never proposed",
    "hostNetwork": "host namespaces are never changed",
    "hostPID": "host namespaces are never changed",
    "hostIPC": "host namespaces are never changed",
    "hostUsers": "host namespaces are never changed",
    "volumes": "volumes are never changed",
    "volumeMounts": "volumes are never changed",
    "volumeDevices": "volumes are never changed",
    "serviceAccountName": "service accounts are never changed",
    "serviceAccount": "service accounts are never changed",
    "automountServiceAccountToken": "service accounts are never changed",
    "command": "the command is never changed",
    "args": "the command is never changed",
    "nodeSelector": "scheduling constraints are not in the allowlist",
    "nodeName": "scheduling constraints are not in the allowlist",
    "affinity": "scheduling constraints are not in the allowlist",
    "tolerations": "scheduling constraints are not in the allowlist",
    "envFrom": "whole Secrets or ConfigMaps are never mapped into the environment",
}


def check_patch(patch: Mapping[str, Any], workload: Mapping[str, Any] | None) -> list[str]:
    """Every reason ``patch`` may not be applied to ``workload``; ``[]`` means it is allowed.

    ``workload`` is the manifest (or the live object) the patch applies to; without it no
    change can be bounded, so every change is refused.
    """
    if not isinstance(patch, Mapping):
        return [f"patch: must be an object, not {type(patch).__name__}"]
    checker = _Checker(workload if isinstance(workload, Mapping) else None)
    checker.check(patch)
    if not checker.problems and not checker.changes:
        checker.problems.append(f"patch: changes nothing in the allowlist ({ALLOWLIST})")
    return checker.problems


def enforce(diagnosis: Diagnosis, workload: Mapping[str, Any] | None) -> Diagnosis:
    """``diagnosis`` unchanged when its patch is allowed (or it has none); otherwise without
    the patch, and ``patch_dropped`` saying why."""
    if diagnosis.patch is None:
        return diagnosis
    problems = check_patch(diagnosis.patch, workload)
    if not problems:
        return diagnosis
    return dataclasses.replace(diagnosis, patch=None, patch_dropped="; ".join(problems))


def pod_spec(workload: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The pod spec inside a workload manifest (``{}`` when there is none)."""
    if not isinstance(workload, Mapping):
        return {}
    node: Any = workload
    for key in POD_SPEC_PATHS.get(str(workload.get("kind")), ("spec", "template", "spec")):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def find_container(workload: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The workload's container (or init container) called ``name``."""
    spec = pod_spec(workload)
    for key in _CONTAINER_LISTS:
        for container in spec.get(key) or ():
            if isinstance(container, Mapping) and container.get("name") == name:
                return container
    return None


def workload_patch(
    workload: Mapping[str, Any], pod_spec_patch: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A patch of ``workload`` carrying ``pod_spec_patch`` at its kind's pod spec path
    (``None`` for kinds pitcrew does not patch)."""
    kind = str(workload.get("kind", ""))
    path = POD_SPEC_PATHS.get(kind)
    metadata = workload.get("metadata") or {}
    if path is None or not metadata.get("name"):
        return None
    body: dict[str, Any] = dict(pod_spec_patch)
    for key in reversed(path[1:]):
        body = {key: body}
    identity: dict[str, Any] = {"name": metadata["name"]}
    if metadata.get("namespace"):
        identity["namespace"] = metadata["namespace"]
    return {
        "apiVersion": workload.get("apiVersion", "apps/v1"),
        "kind": kind,
        "metadata": identity,
        "spec": body,
    }


class _Checker:
    """Walks a patch once, collecting problems (with their paths) and counting changes."""

    def __init__(self, workload: Mapping[str, Any] | None) -> None:
        self.workload = workload
        self.problems: list[str] = []
        self.changes = 0

    def refuse(self, path: str, why: str) -> None:
        self.problems.append(f"{path}: {why}")

    def check(self, patch: Mapping[str, Any]) -> None:
        workload = self.workload
        if workload is None:
            self.refuse(
                "patch", "no workload manifest to check it against, so it cannot be bounded"
            )
            return
        kind = str(workload.get("kind", ""))
        for key, value in patch.items():
            if key in ("apiVersion", "kind"):
                if value != workload.get(key):
                    self.refuse(key, f"{value!r} is not the workload's {workload.get(key)!r}")
            elif key == "metadata":
                self._metadata(value, workload.get("metadata") or {})
            elif key == "spec":
                self._spec(value, kind)
            else:
                self._other(key, key)

    def _other(self, path: str, key: str) -> None:
        if key.startswith("$"):
            self.refuse(path, "strategic-merge directives are not allowed")
        else:
            self.refuse(path, _REFUSED.get(key, f"not in the allowlist ({ALLOWLIST})"))

    def _metadata(self, metadata: Any, current: Mapping[str, Any]) -> None:
        if not isinstance(metadata, Mapping):
            self.refuse("metadata", "must be an object")
            return
        for key, value in metadata.items():
            if key in ("name", "namespace"):
                if value != current.get(key):
                    self.refuse(
                        f"metadata.{key}",
                        f"{value!r} is not the workload's {current.get(key)!r}",
                    )
            else:
                self.refuse(f"metadata.{key}", "only name and namespace identify the workload")

    def _spec(self, spec: Any, kind: str) -> None:
        path = POD_SPEC_PATHS.get(kind)
        if path is None:
            self.refuse(
                "kind", f"{kind or 'an object without a kind'} is not a workload pitcrew patches"
            )
            return
        node = spec
        for depth, key in enumerate(path[1:], start=1):
            where = ".".join(path[:depth])
            if not isinstance(node, Mapping):
                self.refuse(where, "must be an object")
                return
            for other, value in node.items():
                if other == key:
                    continue
                if depth == 1 and other == "replicas" and kind in SCALABLE_KINDS:
                    self._replicas(value)
                else:
                    self._other(f"{where}.{other}", other)
            if key not in node:
                return
            node = node[key]
        self._pod_spec(node, ".".join(path))

    def _replicas(self, value: Any) -> None:
        spec = (self.workload or {}).get("spec") or {}
        current = spec.get("replicas", 1)
        if not isinstance(value, int) or isinstance(value, bool):
            self.refuse("spec.replicas", f"{value!r} is not a whole number")
        elif value < 1:
            self.refuse("spec.replicas", "scaling to zero is an outage, never a fix")
        elif value > MAX_REPLICAS:
            self.refuse("spec.replicas", f"{value} is above the maximum of {MAX_REPLICAS}")
        elif isinstance(current, int) and current >= 1 and value > current * MAX_REPLICA_FACTOR:
            self.refuse(
                "spec.replicas",
                f"{value} is more than {MAX_REPLICA_FACTOR}x the current {current}",
            )
        else:
            self.changes += 1

    def _pod_spec(self, spec: Any, where: str) -> None:
        if not isinstance(spec, Mapping):
            self.refuse(where, "must be an object")
            return
        for key, value in spec.items():
            if key in _CONTAINER_LISTS:
                self._containers(value, f"{where}.{key}")
            else:
                self._other(f"{where}.{key}", key)

    def _containers(self, containers: Any, where: str) -> None:
        if not isinstance(containers, Sequence) or isinstance(containers, str):
            self.refuse(where, "must be a list of containers")
            return
        for index, container in enumerate(containers):
            if not isinstance(container, Mapping) or not isinstance(container.get("name"), str):
                self.refuse(f"{where}[{index}]", "every container is named (the merge key)")
                continue
            name = container["name"]
            path = f"{where}[{name}]"
            current = find_container(self.workload, name)
            if current is None:
                self.refuse(path, "no container of that name in the workload")
                continue
            for key, value in container.items():
                if key == "name":
                    continue
                if key == "resources":
                    self._resources(value, current.get("resources") or {}, f"{path}.resources")
                elif key == "env":
                    self._env(value, f"{path}.env")
                elif key in PROBES:
                    self._probe(value, current, key, f"{path}.{key}")
                else:
                    self._other(f"{path}.{key}", key)

    def _resources(self, resources: Any, current: Mapping[str, Any], where: str) -> None:
        if not isinstance(resources, Mapping):
            self.refuse(where, "must be an object")
            return
        proposed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
        for section, values in resources.items():
            if section not in proposed:
                self._other(f"{where}.{section}", section)
                continue
            if not isinstance(values, Mapping):
                self.refuse(f"{where}.{section}", "must be an object")
                continue
            for resource, value in values.items():
                path = f"{where}.{section}.{resource}"
                if resource not in _RESOURCES:
                    self.refuse(path, f"only cpu and memory are in the allowlist ({ALLOWLIST})")
                    continue
                if value is None:
                    self.refuse(path, "removing a request or limit is never proposed")
                    continue
                try:
                    amount = parse_quantity(value)
                except QuantityError as exc:
                    self.refuse(path, str(exc))
                    continue
                if self._bounded(path, section, resource, amount, current):
                    proposed[section][resource] = amount
                    self.changes += 1
        for resource in _RESOURCES:
            request = proposed["requests"].get(resource) or _current(current, "requests", resource)
            limit = proposed["limits"].get(resource) or _current(current, "limits", resource)
            touched = resource in proposed["requests"] or resource in proposed["limits"]
            if touched and request is not None and limit is not None and request > limit:
                self.refuse(
                    f"{where}.requests.{resource}",
                    f"the request {format_quantity(request, resource)} would exceed the limit "
                    f"{format_quantity(limit, resource)}",
                )

    def _bounded(
        self,
        path: str,
        section: str,
        resource: str,
        amount: Decimal,
        current: Mapping[str, Any],
    ) -> bool:
        if amount <= 0:
            self.refuse(path, "must be more than zero")
            return False
        base = _current(current, section, resource)
        if base is None and section == "requests":
            base = _current(current, "limits", resource)  # the API server defaults it so
        if base is None or base <= 0:
            self.refuse(
                path,
                f"the workload sets no {resource} {section.rstrip('s')} for this container, "
                "so the change cannot be bounded",
            )
            return False
        shown = format_quantity(base, resource)
        if amount > base * MAX_RESOURCE_FACTOR:
            self.refuse(
                path,
                f"{format_quantity(amount, resource)} is more than {MAX_RESOURCE_FACTOR}x "
                f"the current {shown}",
            )
            return False
        if amount * MAX_RESOURCE_FACTOR < base:
            self.refuse(
                path,
                f"{format_quantity(amount, resource)} is less than a {MAX_RESOURCE_FACTOR}th "
                f"of the current {shown}",
            )
            return False
        return True

    def _env(self, env: Any, where: str) -> None:
        if not isinstance(env, Sequence) or isinstance(env, str):
            self.refuse(where, "must be a list")
            return
        for index, variable in enumerate(env):
            if not isinstance(variable, Mapping) or not isinstance(variable.get("name"), str):
                self.refuse(f"{where}[{index}]", "every variable is named (the merge key)")
                continue
            path = f"{where}[{variable['name']}]"
            if variable["name"] in _LOADER_VARIABLES:
                self.refuse(path, "dynamic loader variables run code and are never proposed")
                continue
            ok = True
            for key, value in variable.items():
                if key == "value" and (value is None or isinstance(value, str)):
                    continue
                if key == "valueFrom" and isinstance(value, Mapping):
                    for source in value:
                        if source == "secretKeyRef":
                            self.refuse(
                                f"{path}.valueFrom.secretKeyRef",
                                "new references to Secrets are never proposed",
                            )
                            ok = False
                        elif source not in ("configMapKeyRef", "fieldRef", "resourceFieldRef"):
                            self._other(f"{path}.valueFrom.{source}", source)
                            ok = False
                    continue
                if key != "name":
                    self.refuse(f"{path}.{key}", "not part of an environment variable")
                    ok = False
            if ok:
                self.changes += 1

    def _probe(self, probe: Any, container: Mapping[str, Any], name: str, where: str) -> None:
        if probe is None:
            self.refuse(where, "removing a probe is never proposed")
            return
        if not isinstance(probe, Mapping):
            self.refuse(where, "must be an object")
            return
        problems = [
            (f"{where}.{key}", why)
            for key, value in probe.items()
            if (why := _probe_field_problem(key, value, container))
        ]
        # The patch merges into the current probe: the result must still be one valid probe.
        merged = {**(container.get(name) or {}), **probe}
        handlers = [key for key in _PROBE_HANDLERS if merged.get(key) is not None]
        if len(handlers) > 1:
            problems.append((where, f"a probe has one handler, this would have {handlers}"))
        budget = probe_budget(merged)
        if budget > MAX_PROBE_BUDGET_SECONDS:
            problems.append(
                (
                    where,
                    f"it would allow {budget}s before the probe gives up, above "
                    f"{MAX_PROBE_BUDGET_SECONDS}s",
                )
            )
        for path, why in problems:
            self.refuse(path, why)
        if not problems:
            self.changes += 1


def _probe_field_problem(key: str, value: Any, container: Mapping[str, Any]) -> str | None:
    """Why one field of a proposed probe is refused (``None`` when it is fine)."""
    problem: str | None = f"not in the allowlist ({ALLOWLIST})"
    if key in _PROBE_NUMBERS:
        low, high = _PROBE_NUMBERS[key]
        if not isinstance(value, int) or isinstance(value, bool):
            problem = f"{value!r} is not a whole number"
        else:
            problem = None if low <= value <= high else f"{value} is outside {low}..{high}"
    elif key == "exec":
        known = [
            container[probe].get("exec")
            for probe in PROBES
            if isinstance(container.get(probe), Mapping)
        ]
        problem = (
            None
            if value in known
            else "exec probes only reuse a command the container's probes already run"
        )
    elif key in ("httpGet", "tcpSocket", "grpc"):
        ok = isinstance(value, Mapping) and "host" not in value
        problem = None if ok else "a probe targets the pod itself (an object without host)"
    elif key.startswith("$"):
        problem = "strategic-merge directives are not allowed"
    return problem


def _current(resources: Mapping[str, Any], section: str, resource: str) -> Decimal | None:
    value = (resources.get(section) or {}).get(resource)
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def probe_budget(probe: Mapping[str, Any]) -> int:
    """Seconds a probe allows before it gives up (defaults as the API server sets them)."""

    def number(key: str, default: int) -> int:
        value = probe.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return number("initialDelaySeconds", 0) + number("failureThreshold", 3) * number(
        "periodSeconds", 10
    )
