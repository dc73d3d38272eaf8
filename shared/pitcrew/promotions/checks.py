"""What "healthy" and "verified" mean for a promoted version, over HTTP: the environment's
health URL answers 2xx; each configured check passes (an HTTP smoke check's status and body,
a Prometheus query's value against its thresholds). Every outcome is a ``CheckResult`` with
a reason a person can act on; nothing here raises for an unhealthy answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pitcrew.errors import PitcrewError
from pitcrew.records import frozen

if TYPE_CHECKING:
    import httpx

    from pitcrew.config import EnvironmentCheck

TIMEOUT_S = 5.0


@frozen
class CheckResult:
    name: str
    ok: bool
    detail: str
    status: int | None = None
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "status": self.status,
            "latency_ms": self.latency_ms,
        }


def fill(text: str, values: Mapping[str, str | None]) -> str:
    """``${app}``, ``${version}``, ``${environment}``, ``${namespace}`` filled in (Prometheus
    queries are full of braces, so no ``str.format``)."""
    for key, value in values.items():
        text = text.replace(f"${{{key}}}", value or "")
    return text


class Checker:
    """Runs checks with one ``httpx.Client`` (injectable) and a clock for latencies."""

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        prometheus_url: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._http = http
        self.prometheus_url = prometheus_url
        self.clock = clock

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        return self._http

    def get(self, name: str, url: str) -> tuple[CheckResult, str]:
        """GET ``url``: a result (ok when 2xx) and the body's text."""
        import httpx

        started = self.clock()
        try:
            response = self.http.get(url)
        except httpx.TimeoutException:
            return CheckResult(name, False, f"{url} did not answer within {TIMEOUT_S:g} s"), ""
        except httpx.HTTPError as exc:
            return CheckResult(name, False, f"{url}: cannot connect ({type(exc).__name__})"), ""
        latency = round((self.clock() - started) * 1000, 1)
        ok = 200 <= response.status_code < 300
        detail = f"{url} answered {response.status_code}"
        return CheckResult(name, ok, detail, response.status_code, latency), response.text

    def health(self, url: str) -> CheckResult:
        result, _ = self.get("health", url)
        return result

    def run(self, check: EnvironmentCheck, values: Mapping[str, str | None]) -> CheckResult:
        if check.type == "http":
            return self._http_check(check, values)
        return self._prometheus_check(check, values)

    def _http_check(self, check: EnvironmentCheck, values: Mapping[str, str | None]) -> CheckResult:
        url = fill(check.url or "", values)
        name = check.name or f"GET {url}"
        result, body = self.get(name, url)
        if result.status is None:
            return result
        if result.status != check.expect_status:
            return CheckResult(
                name,
                False,
                f"{url} answered {result.status}, expected {check.expect_status}",
                result.status,
                result.latency_ms,
            )
        if check.contains is not None and check.contains not in body:
            return CheckResult(
                name,
                False,
                f"{url} answered {result.status} without {check.contains!r} in its body",
                result.status,
                result.latency_ms,
            )
        return CheckResult(
            name, True, f"{url} answered {result.status}", result.status, result.latency_ms
        )

    def _prometheus_check(
        self, check: EnvironmentCheck, values: Mapping[str, str | None]
    ) -> CheckResult:
        from pitcrew.prometheus import PrometheusQuery

        query = fill(check.query or "", values)
        name = check.name or query
        if not self.prometheus_url:
            return CheckResult(name, False, "no prometheus.url in the configuration")
        try:
            result = PrometheusQuery(self.prometheus_url, http=self.http).vector(query)
        except PitcrewError as exc:
            return CheckResult(name, False, str(exc))
        problem, value = _threshold_problem(query, result, check)
        if problem:
            return CheckResult(name, False, problem)
        return CheckResult(name, True, f"{query} = {value:g}")


def _threshold_problem(
    query: str, result: list[dict[str, Any]], check: EnvironmentCheck
) -> tuple[str | None, float]:
    """What is wrong with a query's first sample against the check's thresholds, if anything."""
    if not result:
        return f"{query} returned no series", 0.0
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return f"{query} returned an unreadable sample", 0.0
    if check.max is not None and value > check.max:
        return f"{query} = {value:g}, above the maximum {check.max:g}", value
    if check.min is not None and value < check.min:
        return f"{query} = {value:g}, below the minimum {check.min:g}", value
    return None, value
