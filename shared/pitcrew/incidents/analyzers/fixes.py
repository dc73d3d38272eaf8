"""The fixes the rules propose: bounded, minimal strategic-merge patches of the owning
workload (a memory limit raised, a startup probe added or lengthened). Each returns the patch
and a line saying what it changes, or ``None`` and why no safe patch exists."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pitcrew.incidents.patches import find_container, pod_spec, probe_budget, workload_patch
from pitcrew.incidents.quantity import (
    MI,
    QuantityError,
    format_memory,
    parse_quantity,
    round_memory_up,
)

MEMORY_FACTOR = Decimal("1.5")  # the usual raise after an OOM kill
PEAK_HEADROOM = Decimal("1.25")  # above the highest usage Prometheus saw
MAX_MEMORY_FACTOR = Decimal(2)  # well inside the allowlist's 4x
STARTUP_BUDGET_SECONDS = (120, 300)  # what a startup probe allows: at least, at most
STARTUP_PROBE_LIMIT_SECONDS = 600  # a startup probe that is already this long is not timing

Fix = tuple[dict[str, Any] | None, str]


def _quantity(value: Any) -> Decimal | None:
    try:
        return parse_quantity(value) if value is not None else None
    except QuantityError:
        return None


def raise_memory(workload: Mapping[str, Any], container: str, peak: Decimal | None = None) -> Fix:
    """Raise ``container``'s memory limit by half (or to 1.25x the observed peak when that is
    higher), at most doubling it, rounded to a clean size; the request follows when it equalled
    the limit (Guaranteed QoS stays Guaranteed)."""
    spec = find_container(workload, container)
    if spec is None:
        return None, f"the workload has no container {container}, so no limit can be raised"
    resources = spec.get("resources") or {}
    limit = _quantity((resources.get("limits") or {}).get("memory"))
    if limit is None or limit <= 0:
        return None, (
            f"container {container} sets no memory limit: the node itself ran out of memory, "
            "so no bounded limit change is proposed"
        )
    target = limit * MEMORY_FACTOR
    from_peak = peak is not None and peak * PEAK_HEADROOM > target
    if peak is not None and from_peak:
        target = min(peak * PEAK_HEADROOM, limit * MAX_MEMORY_FACTOR)
    new = Decimal(round_memory_up(target))
    if new > limit * 4:  # tiny limits: a clean step would be too big a jump
        new = Decimal(math.ceil(limit * MEMORY_FACTOR / MI) * MI)
    resources_patch: dict[str, Any] = {"limits": {"memory": format_memory(new)}}
    request = _quantity((resources.get("requests") or {}).get("memory"))
    if request is not None and request == limit:
        resources_patch["requests"] = {"memory": format_memory(new)}
    patch = workload_patch(
        workload,
        {_list_of(workload, container): [{"name": container, "resources": resources_patch}]},
    )
    if patch is None:
        return None, f"{workload.get('kind')} is not a workload pitcrew patches"
    how = f"raise the memory limit of container {container} from {format_memory(limit)} to "
    how += f"{format_memory(new)} ({new / limit:.2f}x"
    if peak is not None and from_peak:
        how += f", above 1.25x the observed peak {format_memory(peak)}"
    how += ")"
    return patch, how


def lengthen_startup(workload: Mapping[str, Any], container: str, killer: str) -> Fix:
    """Give a slow-starting container time: add a startup probe that reuses the liveness
    probe's check (``killer`` is ``liveness``), or lengthen the existing startup probe
    (``killer`` is ``startup``), within ``STARTUP_BUDGET_SECONDS``."""
    spec = find_container(workload, container)
    if spec is None:
        return None, f"the workload has no container {container}"
    liveness, startup = spec.get("livenessProbe"), spec.get("startupProbe")
    if killer == "liveness" and startup is None and isinstance(liveness, Mapping):
        probe, how = _startup_from_liveness(liveness, container)
    elif killer == "startup" and isinstance(startup, Mapping):
        probe, how = _longer_startup(startup, container)
    else:
        probe, how = None, f"no {killer} probe timing to change on container {container}"
    if probe is None:
        return None, how
    patch = workload_patch(
        workload, {_list_of(workload, container): [{"name": container, "startupProbe": probe}]}
    )
    if patch is None:
        return None, f"{workload.get('kind')} is not a workload pitcrew patches"
    return patch, how


def _startup_from_liveness(liveness: Mapping[str, Any], container: str) -> Fix:
    handler = {k: liveness[k] for k in ("httpGet", "tcpSocket", "grpc", "exec") if k in liveness}
    if not handler:
        return None, "the liveness probe has no check a startup probe could reuse"
    period = _int(liveness.get("periodSeconds"), 10)
    allowed = probe_budget(liveness)
    budget = min(max(3 * allowed, STARTUP_BUDGET_SECONDS[0]), STARTUP_BUDGET_SECONDS[1])
    threshold = min(math.ceil(budget / period), 60)
    probe = {
        **handler,
        "periodSeconds": period,
        "timeoutSeconds": _int(liveness.get("timeoutSeconds"), 1),
        "failureThreshold": threshold,
    }
    return probe, (
        f"add a startup probe to container {container} reusing the liveness check, allowing "
        f"{threshold * period}s to start (the liveness probe allows {allowed}s)"
    )


def _longer_startup(startup: Mapping[str, Any], container: str) -> Fix:
    period = _int(startup.get("periodSeconds"), 10)
    allowed = probe_budget(startup)
    if allowed >= STARTUP_PROBE_LIMIT_SECONDS:
        return None, f"the startup probe already allows {allowed}s: not a timing problem"
    delay = _int(startup.get("initialDelaySeconds"), 0)
    wanted = min(2 * allowed, STARTUP_PROBE_LIMIT_SECONDS) - delay
    threshold = min(math.ceil(wanted / period), 60)
    if threshold <= _int(startup.get("failureThreshold"), 3):
        return None, "the startup probe cannot be lengthened within bounds"
    return {"failureThreshold": threshold}, (
        f"let the startup probe of container {container} allow "
        f"{delay + threshold * period}s instead of {allowed}s (failureThreshold {threshold})"
    )


def _int(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


def _list_of(workload: Mapping[str, Any], container: str) -> str:
    """``initContainers`` when ``container`` is an init container, else ``containers``."""
    for init in pod_spec(workload).get("initContainers") or ():
        if isinstance(init, Mapping) and init.get("name") == container:
            return "initContainers"
    return "containers"
