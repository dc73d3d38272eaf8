"""AWS access: one cached client factory, and botocore errors turned into pitcrew's own.

Every AWS call in pitcrew goes through ``client()``, so retries, timeouts and the endpoint
(``AWS_ENDPOINT_URL``: the embedded emulator locally, LocalStack on a laptop) are set in
one place. Service-specific ``AWS_ENDPOINT_URL_<SERVICE>`` variables are left to botocore.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from pitcrew import __version__
from pitcrew.errors import (
    ConflictError,
    NotFoundError,
    ServiceError,
    TransientServiceError,
)

# Lambda functions are short-lived and most sit behind a queue that retries: fail fast on a
# dead endpoint (3 s to connect), allow slow control-plane reads (10 s), and let botocore's
# "standard" mode retry throttling and 5xx with jittered backoff a few times.
BOTO_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 4},
    user_agent_extra=f"pitcrew/{__version__}",
)

_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
        "TransactionConflictException",
    }
)
_NOT_FOUND_CODES = frozenset(
    {"ResourceNotFoundException", "ParameterNotFound", "NotFoundException", "NoSuchEntity"}
)
_CONFLICT_CODES = frozenset({"ConditionalCheckFailedException", "ResourceExistsException"})

_clients: dict[tuple[str, str | None, str | None], Any] = {}
_sessions: list[boto3.session.Session] = []
_lock = threading.Lock()


def _session() -> boto3.session.Session:
    # Called under _lock. The session caches the credentials it first finds; in Lambda they
    # are fixed for the sandbox's life, and reset_clients() forgets the session too.
    if not _sessions:
        _sessions.append(boto3.session.Session())
    return _sessions[0]


def default_endpoint() -> str | None:
    """The endpoint every client uses: ``AWS_ENDPOINT_URL`` when set, else AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def client(service: str, region: str | None = None, *, endpoint_url: str | None = None) -> Any:
    """A boto3 client for ``service``, created once per process and reused. Clients are
    thread-safe; the session is not, so clients are only ever built under the lock. One
    session serves them all: it loads the endpoint and service models once."""
    endpoint = endpoint_url or default_endpoint()
    key = (service, region, endpoint)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _clients:
            _clients[key] = _session().client(
                service,
                region_name=region,
                endpoint_url=endpoint,
                config=BOTO_CONFIG,
            )
        return _clients[key]


def reset_clients() -> None:
    """Forget every cached client (tests and the local runtime change endpoints)."""
    with _lock:
        _clients.clear()
        _sessions.clear()


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore ``ClientError``."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, service: str) -> ServiceError | NotFoundError | ConflictError:
    """The pitcrew error for a botocore exception (the caller raises it ``from exc``)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND_CODES:
            return NotFoundError(f"{service}: {message}")
        if code in _CONFLICT_CODES:
            return ConflictError(f"{service}: {message}")
        if code in _THROTTLING_CODES or status >= 500:
            return TransientServiceError(service, f"{code}: {message}")
        return ServiceError(service, f"{code}: {message}")
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return TransientServiceError(service, f"cannot reach the endpoint: {exc}")
    return ServiceError(service, str(exc))


@contextmanager
def aws_errors(service: str) -> Iterator[None]:
    """Run AWS calls, turning botocore's exceptions into pitcrew's (cause kept)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, service) from exc
