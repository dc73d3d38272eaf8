"""HTTP calls rotation makes (the GitHub REST API, configured rotation endpoints): the one
wrapper around httpx here. Bodies may carry secret values, so neither they nor the answers
are ever put in a message; errors name the service, method, URL path and status only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pitcrew import __version__
from pitcrew.errors import ConfigError, ServiceError, TransientServiceError

USER_AGENT = f"pitcrew/{__version__} (+rotation)"


def call(
    service: str,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    client: Any | None = None,
) -> Any:
    """One request; the JSON answer (None for an empty body). 429 / 5xx / timeouts raise
    ``TransientServiceError``, any other non-2xx ``ServiceError``."""
    import httpx

    where = f"{method} {urlsplit(url).path}"
    request_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    try:
        if client is not None:
            response = client.request(
                method, url, json=json, headers=request_headers, timeout=timeout_s
            )
        else:
            with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=3.0)) as fresh:
                response = fresh.request(method, url, json=json, headers=request_headers)
    except httpx.TimeoutException as exc:
        raise TransientServiceError(service, f"{where}: timed out") from exc
    except httpx.TransportError as exc:
        raise TransientServiceError(service, f"{where}: {type(exc).__name__}") from exc
    except httpx.RequestError as exc:  # a body that does not decode, too many redirects
        raise ServiceError(service, f"{where}: {type(exc).__name__}") from exc
    except httpx.InvalidURL as exc:
        # httpx names the bad part (port, host); the URL's credentials stay out of it.
        raise ConfigError([f"{service}: the URL is not valid ({exc})"]) from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientServiceError(service, f"{where} answered {response.status_code}")
    if response.status_code >= 300:
        raise ServiceError(service, f"{where} answered {response.status_code}")
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
