"""pitcrew's one exception tree: every error pitcrew raises on purpose is one of these.

    PitcrewError
    ├── ConfigError                  the configuration is invalid (``problems`` lists each one)
    │   └── ReferenceError_          an env: / secret: / ssm: reference cannot be resolved
    ├── InputError                   bad input from outside: the caller gets a 4xx, never a 5xx
    │   ├── BadRequestError          400: malformed JSON, wrong schema, bad parameter
    │   ├── UnauthorizedError        401: missing or wrong credentials or signature
    │   ├── NotFoundError            404: no such object
    │   ├── ConflictError            409: the object is not in a state that allows this
    │   └── PayloadTooLargeError     413: the body is larger than allowed
    └── ServiceError                 an outside service (AWS, GitHub, Kubernetes, Vault, ...) failed
        ├── TransientServiceError    worth retrying later (throttling, 5xx, timeouts)
        └── PublishError             domain events that could not be put on the bus after retries

Wrappers around outside libraries raise these ``from`` the library's own exception, so the
cause is kept and callers only ever catch pitcrew's types. HTTP status codes are mapped from
these classes in one place (``http_status``), never by matching message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PitcrewError(Exception):
    """Base class of every error pitcrew raises on purpose."""


class ConfigError(PitcrewError):
    """The configuration is invalid; ``problems`` holds one line per problem, naming the key."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems: list[str] = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid pitcrew configuration{where}:\n{lines}")


class ReferenceError_(ConfigError):  # the trailing _ keeps it apart from the builtin
    """A configuration reference (``env:``, ``secret:``, ``ssm:``) could not be resolved."""

    def __init__(self, key: str, reference: str, reason: str) -> None:
        self.key = key
        self.reference = reference
        super().__init__([f"{key}: cannot resolve {reference!r}: {reason}"])


class InputError(PitcrewError):
    """Bad input from a caller. The message is safe to show to that caller."""


class BadRequestError(InputError):
    """Malformed or invalid request: bad JSON, wrong schema, bad parameter."""


class UnauthorizedError(InputError):
    """Missing or wrong credentials, token or signature."""


class NotFoundError(InputError):
    """The requested object does not exist."""


class ConflictError(InputError):
    """The object exists but is not in a state that allows the request."""


class PayloadTooLargeError(InputError):
    """The request body is larger than the configured limit."""


class ServiceError(PitcrewError):
    """An outside service failed. ``service`` names it (``dynamodb``, ``github``, ...)."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(f"{service}: {message}")


class TransientServiceError(ServiceError):
    """An outside service failed in a way worth retrying: throttling, 5xx, timeouts."""


class PublishError(ServiceError):
    """Domain events could not be put on the event bus, even after retries."""

    def __init__(self, failed: Sequence[tuple[str, str]]) -> None:
        self.failed = list(failed)
        detail = "; ".join(f"{name}: {reason}" for name, reason in self.failed)
        super().__init__("events", f"{len(self.failed)} event(s) not published: {detail}")


_HTTP_STATUS: tuple[tuple[type[PitcrewError], int], ...] = (
    (BadRequestError, 400),
    (UnauthorizedError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InputError, 400),
    (TransientServiceError, 503),
    (ServiceError, 502),
)


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception: the one place that maps errors to status codes."""
    for cls, status in _HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500
