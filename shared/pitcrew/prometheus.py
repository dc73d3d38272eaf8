"""Memory and CPU of a workload's containers against their limits, from Prometheus' HTTP API
(``/api/v1/query``), over the standard cAdvisor and kube-state-metrics series:
``container_memory_working_set_bytes``, ``container_cpu_usage_seconds_total`` and
``kube_pod_container_resource_limits``.

Metrics only add evidence: every failure (no answer, an error status, a bad query) becomes a
note, never an exception. Limits missing from kube-state-metrics are taken from the pods'
specs when those are at hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pitcrew.errors import PitcrewError, ServiceError, TransientServiceError
from pitcrew.incidents.model import MetricSample

if TYPE_CHECKING:
    import httpx

    from pitcrew.config import PrometheusConfig

SERVICE = "prometheus"
TIMEOUT_S = 5.0
WINDOW = "1h"
RATE_WINDOW = "5m"


@contextmanager
def prometheus_errors(what: str) -> Iterator[None]:
    """Run httpx calls to Prometheus, turning httpx's exceptions into pitcrew's."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientServiceError(SERVICE, f"{what}: no answer within {TIMEOUT_S:g}s") from exc
    except httpx.TransportError as exc:
        raise TransientServiceError(SERVICE, f"{what}: cannot connect: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ServiceError(SERVICE, f"{what}: {exc}") from exc


class PrometheusQuery:
    """Instant queries against one Prometheus; ``http`` is injectable (default: a new
    ``httpx.Client`` with a timeout)."""

    def __init__(self, base_url: str, *, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http

    def vector(self, query: str) -> list[dict[str, Any]]:
        """The ``result`` of an instant query whose result type is a vector."""
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=TIMEOUT_S)
        what = f"query at {self.base_url}"
        with prometheus_errors(what):
            response = self._http.get(f"{self.base_url}/api/v1/query", params={"query": query})
        try:
            body = response.json()
        except ValueError as exc:
            raise ServiceError(SERVICE, f"{what}: HTTP {response.status_code}, not JSON") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            problem = f"{kind}: {error}" if kind else str(error or "unknown error")
            cls = TransientServiceError if response.status_code >= 500 else ServiceError
            raise cls(SERVICE, f"{what}: HTTP {response.status_code}: {problem}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise ServiceError(SERVICE, f"{what}: expected a vector, got {data.get('resultType')}")
        return list(data.get("result") or ())

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def container_usage(
    prometheus: PrometheusConfig,
    namespace: str,
    pod_names: Sequence[str],
    *,
    pods: Sequence[Mapping[str, Any]] = (),
    http: httpx.Client | None = None,
    window: str = WINDOW,
) -> tuple[list[MetricSample], list[str]]:
    """The peak memory working set (bytes) and peak CPU use (cores) of each container of the
    named pods over ``window``, with their limits; and notes on what could not be read."""
    if not pod_names:
        return [], []
    notes: list[str] = []
    try:
        base_url = prometheus.url.get()
    except PitcrewError as exc:  # e.g. a reference that cannot be resolved, the key named
        return [], [f"prometheus cannot be used: {exc}"]
    query = PrometheusQuery(base_url, http=http)
    selector = (
        f'namespace="{_quote(namespace)}", pod=~"{_pod_regex(pod_names)}", '
        'container!="", container!="POD"'
    )
    queries = {
        "memory": (
            "max by (pod, container) (max_over_time("
            f"container_memory_working_set_bytes{{{selector}}}[{window}]))"
        ),
        "cpu": (
            "max by (pod, container) (max_over_time(rate("
            f"container_cpu_usage_seconds_total{{{selector}}}[{RATE_WINDOW}])[{window}:1m]))"
        ),
        "limits": (
            "max by (pod, container, resource) (kube_pod_container_resource_limits{"
            f'namespace="{_quote(namespace)}", pod=~"{_pod_regex(pod_names)}", '
            'resource=~"memory|cpu"})'
        ),
    }
    try:
        results = _run(query, queries, notes)
    finally:
        if http is None:
            query.close()
    samples = _samples(results, _spec_limits(pods))
    if not samples and not notes:
        notes.append(f"prometheus has no container metrics for pods of {namespace} in {window}")
    return samples, notes


def _run(
    query: PrometheusQuery, queries: Mapping[str, str], notes: list[str]
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for name, promql in queries.items():
        try:
            results[name] = query.vector(promql)
        except TransientServiceError as exc:
            notes.append(str(exc))
            break  # unreachable or failing: do not wait on the other queries
        except ServiceError as exc:
            notes.append(str(exc))
    return results


def _samples(
    results: Mapping[str, list[dict[str, Any]]], limits: dict[tuple[str, str, str], float]
) -> list[MetricSample]:
    """Peaks with their limits: kube-state-metrics' limits win over the pods' specs."""
    for sample in results.get("limits", ()):
        labels = sample.get("metric") or {}
        value = _value(sample)
        if value is not None:
            key = (labels.get("pod", ""), labels.get("container", ""), labels.get("resource", ""))
            limits[key] = value
    samples: list[MetricSample] = []
    for resource in ("memory", "cpu"):
        for sample in results.get(resource, ()):
            labels = sample.get("metric") or {}
            peak = _value(sample)
            if peak is None:
                continue
            pod, container = labels.get("pod", ""), labels.get("container", "")
            samples.append(
                MetricSample(
                    pod=pod,
                    container=container,
                    resource=resource,
                    peak=peak,
                    limit=limits.get((pod, container, resource)),
                )
            )
    samples.sort(key=lambda s: (s.pod, s.container, s.resource))
    return samples


def _value(sample: Mapping[str, Any]) -> float | None:
    try:
        value = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value  # NaN: no data


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_REGEX_SPECIAL = re.compile(r"[\\.+*?()|\[\]{}^$]")


def _pod_regex(names: Sequence[str]) -> str:
    """A PromQL string literal's content matching exactly these pod names."""
    return _quote("|".join(_REGEX_SPECIAL.sub(r"\\\g<0>", name) for name in dict.fromkeys(names)))


def _spec_limits(pods: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
    """Limits written in the pods' specs, by (pod, container, resource)."""
    limits: dict[tuple[str, str, str], float] = {}
    for pod in pods:
        pod_name = str((pod.get("metadata") or {}).get("name", ""))
        for container in (pod.get("spec") or {}).get("containers") or ():
            for resource, text in ((container.get("resources") or {}).get("limits") or {}).items():
                value = parse_quantity(str(text))
                if value is not None and resource in ("memory", "cpu"):
                    limits[(pod_name, container.get("name", ""), resource)] = value
    return limits


_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)
_SUFFIXES = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(text: str) -> float | None:
    """A Kubernetes resource quantity (``512Mi``, ``500m``, ``1.5``, ``1e3``) as a number of
    bytes or cores; None when it is not one."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    number, suffix = match.groups()
    return float(number) * (_SUFFIXES[suffix] if suffix else 1.0)
