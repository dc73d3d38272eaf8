"""Errors map to HTTP status in one place, by type."""

from __future__ import annotations

import pytest

from pitcrew.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PublishError,
    ServiceError,
    TransientServiceError,
    UnauthorizedError,
    http_status,
)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (BadRequestError("bad json"), 400),
        (UnauthorizedError("no token"), 401),
        (NotFoundError("no such incident"), 404),
        (ConflictError("nothing awaits approval"), 409),
        (PayloadTooLargeError("too big"), 413),
        (TransientServiceError("github", "502"), 503),
        (ServiceError("github", "422"), 502),
        (PublishError([("IncidentOpened", "InternalFailure")]), 502),
        (ConfigError(["api.token: expected a string"]), 500),
        (RuntimeError("bug"), 500),
    ],
)
def test_http_status(exc: BaseException, status: int) -> None:
    assert http_status(exc) == status


def test_config_error_lists_every_problem_with_its_source() -> None:
    exc = ConfigError(["a: expected an integer", "b: unknown key"], source="cfg.yaml")
    assert "cfg.yaml" in str(exc)
    assert "a: expected an integer" in str(exc)
    assert "b: unknown key" in str(exc)
