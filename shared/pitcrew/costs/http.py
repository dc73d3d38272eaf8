"""The one httpx wrapper of cost watch (Azure and GCP providers): JSON requests with
retries on throttling and server errors, honouring ``Retry-After``, and httpx's and the
services' errors turned into pitcrew's. Imported only when a provider needs it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from pitcrew import __version__
from pitcrew.errors import ServiceError, TransientServiceError

TIMEOUT = httpx.Timeout(60.0, connect=5.0)  # cost queries are slow; the function has 5 min
MAX_RETRY_AFTER_S = 60.0


class JsonHttp:
    """Requests to one service (``service`` names it in errors), counted in ``requests``."""

    def __init__(
        self,
        service: str,
        client: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        base_delay_s: float = 1.0,
    ) -> None:
        self.service = service
        self._client = client
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.requests = 0

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=TIMEOUT, headers={"User-Agent": f"pitcrew/{__version__} (+costs)"}
            )
        return self._client

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Any:
        """The JSON answer of a 2xx (None when it has no body); retried on 429, 5xx and
        transport errors."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            self.requests += 1
            try:
                response = self.client.request(
                    method, url, json=json, data=data, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                reason = f"cannot reach the service: {type(exc).__name__}"
                wait = self.base_delay_s * 2 ** (attempt - 1)
            else:
                if response.is_success:
                    if response.status_code == 204 or not response.content:
                        return None  # Cost Management answers 204 when it has nothing
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise ServiceError(self.service, "the answer is not JSON") from exc
                excerpt = response.text[:300]
                if response.status_code != 429 and response.status_code < 500:
                    raise ServiceError(self.service, f"HTTP {response.status_code}: {excerpt}")
                reason = f"HTTP {response.status_code}: {excerpt}"
                wait = _retry_after(response.headers) or self.base_delay_s * 2 ** (attempt - 1)
            if attempt < self.max_attempts:
                self.sleep(min(wait, MAX_RETRY_AFTER_S))
        raise TransientServiceError(self.service, f"{reason} (after {self.max_attempts} attempts)")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _retry_after(headers: httpx.Headers) -> float | None:
    # Cost Management says when to come back in its own headers as well as Retry-After.
    for name in (
        "Retry-After",
        "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
        "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
        "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
    ):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


class HttpCostProvider:
    """What the Azure and GCP providers share: their ``JsonHttp`` (counted requests, closed
    with the provider) and a cached access token ``(token, expires at on clock)``."""

    service: str

    def __init__(self, http: JsonHttp | None, clock: Callable[[], float]) -> None:
        self.http = http or JsonHttp(self.service)
        self.clock = clock
        self._token: tuple[str, float] | None = None

    @property
    def requests(self) -> int:
        return self.http.requests

    def close(self) -> None:
        self.http.close()
