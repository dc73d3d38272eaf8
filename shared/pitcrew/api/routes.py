"""How every API route is declared: ``@route(bp, "/path", operator=True)``.

The wrapper authenticates the caller (the operator bearer token from ``api.token``,
compared in constant time), and turns pitcrew's exceptions into ``{"error": ...}``
responses with the status ``pitcrew.errors.http_status`` assigns. Unexpected exceptions
become a logged 500 whose body reveals nothing.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from chalice import Blueprint, Response

from pitcrew.config import Config
from pitcrew.errors import (
    BadRequestError,
    ConfigError,
    InputError,
    PitcrewError,
    UnauthorizedError,
    http_status,
)
from pitcrew.observability import Instruments, redact
from pitcrew.records import frozen

View = Callable[..., Any]


@frozen
class ApiContext:
    """What every blueprint needs: the configuration and the function's instruments."""

    config: Config
    instruments: Instruments


def error_response(exc: PitcrewError) -> Response:
    status = http_status(exc)
    headers: dict[str, str | list[str]] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="pitcrew"'
    # An outside service's error may quote what it was sent: registered secrets never leave.
    return Response(body={"error": redact(str(exc))}, status_code=status, headers=headers)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header (header names are case-blind)."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing says nothing about the token."""
    return hmac.compare_digest(given.encode(), expected.encode())


def require_operator(config: Config, headers: Mapping[str, str]) -> None:
    """Raise ``UnauthorizedError`` unless the request carries the operator token."""
    api = config.api
    if api is None or api.token is None:
        raise UnauthorizedError("the operator API is disabled: set api.token in the config")
    given = bearer_token(headers)
    if given is None:
        raise UnauthorizedError("missing 'Authorization: Bearer <token>' header")
    if not tokens_match(given, api.token.get()):
        raise UnauthorizedError("invalid operator token")


def query_limit(raw: str, most: int) -> int:
    """``?limit=N``: a whole number from 1 to ``most``, else a 400 naming it. ASCII digits,
    few of them: int() refuses "①" and more than 4300 digits (a 500, not a 400)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= most:
        raise BadRequestError(f"limit: expected an integer from 1 to {most}, got {raw!r}")
    return int(raw)


def route(
    blueprint: Blueprint,
    context: ApiContext,
    path: str,
    *,
    methods: tuple[str, ...] = ("GET",),
    operator: bool = True,
    **route_options: Any,
) -> Callable[[View], View]:
    """Declare a route; with ``operator=True`` (the default) it needs the operator token."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                if operator:
                    require_operator(context.config, blueprint.current_request.headers)
                _refuse_repeated_parameters(blueprint.current_request.query_params)
                return view(*args, **kwargs)
            except InputError as exc:
                return error_response(exc)
            except PitcrewError as exc:
                context.instruments.logger.exception("request failed: %s", exc)
                if operator:
                    return error_response(exc)
                # A webhook's caller is anyone on the internet: the status says what happened
                # (5xx: retry later), the detail (secret names, AWS errors) stays in the log.
                return Response(
                    body={"error": _public_message(exc, blueprint.current_request)},
                    status_code=http_status(exc),
                )

        blueprint.route(path, methods=list(methods), **route_options)(wrapped)
        return wrapped

    return decorate


def _public_message(exc: PitcrewError, request: Any) -> str:
    request_id = ((getattr(request, "context", None) or {}).get("requestId")) or "unknown"
    what = "misconfigured" if isinstance(exc, ConfigError) else "unavailable"
    return (
        f"pitcrew is {what} for this request; it is logged with request id {request_id}. "
        "Send it again later."
    )


def _refuse_repeated_parameters(params: Any) -> None:
    """``?status=open&status=all`` is ambiguous: a 400, not the last value silently."""
    for name in params or ():
        if len(params.getlist(name)) > 1:
            raise BadRequestError(f"query parameter {name!r} is given more than once")
