"""The GitHub wrapper's retry policy and error mapping, without a network: operations that
raise PyGithub's exceptions as a GitHub response would make them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from github import Github
from github.GithubException import GithubException, RateLimitExceededException

from pitcrew.errors import ConflictError, NotFoundError, ServiceError, TransientServiceError
from pitcrew.github import GitHub, RetryPolicy

NOW = 1_732_000_000.0


def client(sleeps: list[float]) -> GitHub:
    return GitHub(
        Github(base_url="http://127.0.0.1:9"),
        retry=RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=30.0),
        sleep=sleeps.append,
        clock=lambda: NOW,
    )


def failing(*errors: Exception) -> Callable[[], str]:
    pending = list(errors)

    def operation() -> str:
        if pending:
            raise pending.pop(0)
        return "done"

    return operation


def error(status: int, message: str = "", headers: dict[str, str] | None = None) -> GithubException:
    data: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com"}
    cls = RateLimitExceededException if status in (403, 429) else GithubException
    return cls(status, data, headers or {})


def test_5xx_is_retried_with_exponential_backoff() -> None:
    sleeps: list[float] = []
    assert client(sleeps).call("x", failing(error(502), error(503))) == "done"
    assert sleeps == [1.0, 2.0]


def test_a_secondary_rate_limit_waits_what_retry_after_says() -> None:
    sleeps: list[float] = []
    limited = error(403, "You have exceeded a secondary rate limit", {"Retry-After": "7"})
    assert client(sleeps).call("x", failing(limited)) == "done"
    assert sleeps == [7.0]


def test_a_primary_rate_limit_waits_until_x_ratelimit_reset() -> None:
    sleeps: list[float] = []
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 5)}
    assert (
        client(sleeps).call("x", failing(error(429, "API rate limit exceeded", headers))) == "done"
    )
    assert sleeps == [6.0]


def test_a_wait_longer_than_the_policy_allows_is_left_to_the_queue() -> None:
    sleeps: list[float] = []
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3600)}
    with pytest.raises(TransientServiceError, match="too long"):
        client(sleeps).call("open a pull request", failing(error(403, "API rate limit", headers)))
    assert sleeps == []


def test_persistent_5xx_becomes_a_transient_error_after_the_attempts() -> None:
    sleeps: list[float] = []
    with pytest.raises(TransientServiceError, match="read branch main: 502"):
        client(sleeps).call("read branch main", failing(*[error(502, "Bad Gateway")] * 9))
    assert sleeps == [1.0, 2.0, 4.0]


def test_connection_errors_are_retried() -> None:
    sleeps: list[float] = []
    down = requests.exceptions.ConnectionError("refused")
    assert client(sleeps).call("x", failing(down, down)) == "done"
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, NotFoundError),
        (409, ConflictError),
        (422, ConflictError),
        (401, ServiceError),
        (403, ServiceError),  # forbidden, not a rate limit: retrying cannot help
    ],
)
def test_other_errors_are_mapped_without_retrying(status: int, expected: type) -> None:
    sleeps: list[float] = []
    with pytest.raises(expected) as caught:
        client(sleeps).call(
            "comment on #4", failing(GithubException(status, {"message": "no"}, {}))
        )
    assert not isinstance(caught.value, TransientServiceError)
    assert "comment on #4" in str(caught.value)
    assert sleeps == []
