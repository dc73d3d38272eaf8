"""pitcrew.notify.http: what a reply means, retries honouring Retry-After within a budget, and
httpx's errors turned into pitcrew's. httpx's MockTransport stands in for the network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from pitcrew.errors import ServiceError, TransientServiceError
from pitcrew.notify import discord, slack, teams
from pitcrew.notify.http import HttpDelivery, Reply, RetryBudget, parse_retry_after

NOW = datetime(2024, 11, 19, 7, 58, 30, tzinfo=UTC)
URL = "https://hooks.example.com/services/T0/B0/webhook-credential"


class Clock:
    """A monotonic clock that moves only when the delivery sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def delivery(
    replies: list[httpx.Response | Exception], clock: Clock
) -> tuple[HttpDelivery, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    answers: Iterator[httpx.Response | Exception] = iter(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handler))
    http = HttpDelivery(client, sleep=clock.sleep, clock=clock, now=lambda: NOW, jitter=lambda: 0.0)
    return http, seen


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_2xx_is_delivered_at_once(clock: Clock) -> None:
    http, seen = delivery([httpx.Response(200, text="ok")], clock)
    assert http.post_json("slack", URL, {"text": "hi"}) == 1
    assert seen[0].headers["content-type"] == "application/json; charset=utf-8"
    assert seen[0].content == b'{"text": "hi"}'
    assert clock.sleeps == []


def test_429_waits_what_retry_after_says(clock: Clock) -> None:
    http, seen = delivery(
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(204)], clock
    )
    assert http.post_json("discord", URL, {}) == 2
    assert clock.sleeps == [7.0]
    assert len(seen) == 2


def test_retry_after_may_be_an_http_date(clock: Clock) -> None:
    in_12_s = "Tue, 19 Nov 2024 07:58:42 GMT"
    http, _ = delivery(
        [httpx.Response(503, headers={"Retry-After": in_12_s}), httpx.Response(200)], clock
    )
    http.post_json("teams", URL, {})
    assert clock.sleeps == [12.0]


def test_5xx_without_retry_after_backs_off_then_gives_up_as_transient(clock: Clock) -> None:
    http, seen = delivery([httpx.Response(500, text="rollup_error")] * 4, clock)
    with pytest.raises(TransientServiceError) as info:
        http.post_json("slack", URL, {})
    assert len(seen) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]  # half of 1, 2, 4 s with no jitter
    assert str(info.value) == "slack: HTTP 500: rollup_error (after 4 attempts)"


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_other_4xx_are_permanent_at_once(clock: Clock, status: int) -> None:
    http, seen = delivery([httpx.Response(status, text="channel_not_found")], clock)
    with pytest.raises(ServiceError) as info:
        http.post_json("slack", URL, {})
    assert not isinstance(info.value, TransientServiceError)
    assert str(info.value) == f"slack: HTTP {status}: channel_not_found"
    assert len(seen) == 1


def test_a_retry_after_beyond_the_budget_is_not_waited_for(clock: Clock) -> None:
    http, seen = delivery([httpx.Response(429, headers={"Retry-After": "120"})], clock)
    with pytest.raises(TransientServiceError, match="beyond the retry budget"):
        http.post_json("slack", URL, {}, budget=RetryBudget(30, clock))
    assert clock.sleeps == []
    assert len(seen) == 1


def test_channels_share_one_budget(clock: Clock) -> None:
    budget = RetryBudget(10, clock)
    first, _ = delivery(
        [httpx.Response(429, headers={"Retry-After": "8"}), httpx.Response(200)], clock
    )
    first.post_json("slack", URL, {}, budget=budget)
    second, _ = delivery([httpx.Response(429, headers={"Retry-After": "8"})], clock)
    with pytest.raises(TransientServiceError):
        second.post_json("discord", URL, {}, budget=budget)
    assert clock.sleeps == [8.0]


def test_a_dropped_connection_is_retried_and_kept_as_the_cause(clock: Clock) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    http, _ = delivery([refused] * 4, clock)
    with pytest.raises(TransientServiceError) as info:
        http.post_json("teams", URL, {})
    assert info.value.__cause__ is refused
    assert "ConnectError" in str(info.value)


def test_an_unusable_url_fails_at_once_without_showing_it(clock: Clock) -> None:
    http = HttpDelivery(httpx.Client(), sleep=clock.sleep, clock=clock)
    with pytest.raises(ServiceError) as info:
        http.post_json("slack", "ftp://hooks.example.com/webhook-credential", {})
    assert isinstance(info.value.__cause__, httpx.UnsupportedProtocol)
    assert "webhook-credential" not in str(info.value)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("1.5", 1.5),
        ("Tue, 19 Nov 2024 07:59:30 GMT", 60.0),
        ("Tue, 19 Nov 2024 07:00:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


# --- each service's way of saying it failed ---------------------------------------------------


def reply(status: int, text: str = "", **headers: str) -> Reply:
    return Reply(status, httpx.Headers(headers), text)


def test_slack_api_ok_false_is_a_failure_even_with_200() -> None:
    verdict = slack.judge_api(reply(200, '{"ok": false, "error": "channel_not_found"}'), NOW)
    assert (verdict.delivered, verdict.retry) == (False, False)
    assert verdict.reason == "Slack API error channel_not_found"
    assert slack.judge_api(reply(200, '{"ok": true, "ts": "1.2"}'), NOW).delivered


def test_slack_api_ratelimited_is_retried_after_its_retry_after() -> None:
    verdict = slack.judge_api(
        reply(429, '{"ok": false, "error": "ratelimited"}', **{"Retry-After": "3"}), NOW
    )
    assert (verdict.retry, verdict.retry_after) == (True, 3.0)
    in_body = slack.judge_api(reply(200, '{"ok": false, "error": "ratelimited"}'), NOW)
    assert in_body.retry


def test_discord_takes_retry_after_from_the_body_when_the_header_is_missing() -> None:
    body = '{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}'
    verdict = discord.judge(reply(429, body), NOW)
    assert (verdict.retry, verdict.retry_after) == (True, 0.25)
    gone = discord.judge(reply(404, '{"message": "Unknown Webhook", "code": 10015}'), NOW)
    assert (gone.retry, gone.reason) == (False, "HTTP 404: Unknown Webhook (code 10015)")


@pytest.mark.parametrize(
    ("text", "retry"),
    [
        (
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
            "HTTP error 429 with ContextId tcid=0,server=msgapi-production",
            True,
        ),
        (
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
            "HTTP error 400 with ContextId tcid=385194272617051900",
            False,
        ),
        (
            "Webhook message delivery failed with error: Error contacting Microsoft Teams endpoint",
            True,
        ),
    ],
)
def test_teams_reads_the_status_buried_in_a_200(text: str, retry: bool) -> None:
    verdict = teams.judge(reply(200, text), NOW)
    assert (verdict.delivered, verdict.retry) == (False, retry)
    assert teams.judge(reply(200, "1"), NOW).delivered
    assert teams.judge(reply(202, ""), NOW).delivered  # Power Automate workflow webhooks
