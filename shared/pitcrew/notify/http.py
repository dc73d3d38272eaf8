"""HTTP delivery for notifications: the one wrapper around httpx, with retries.

``HttpDelivery.post_json`` posts a payload and asks the channel's ``judge`` what the reply
means (each service reports failure its own way: a status, ``{"ok": false}``, a 200 whose body
says it failed). Throttling and server errors (429, 5xx, timeouts, dropped connections) are
retried with backoff, waiting what ``Retry-After`` says when the service says it (seconds or
an HTTP date), within a ``RetryBudget`` shared by every channel of one event; anything else is
final at once. httpx's exceptions become pitcrew's, ``from`` the original:
``TransientServiceError`` when retries ran out, ``ServiceError`` for a permanent failure.
Messages never carry the URL (a webhook URL is its own credential).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from pitcrew import __version__
from pitcrew.errors import ServiceError, TransientServiceError
from pitcrew.observability import redact
from pitcrew.records import frozen

if TYPE_CHECKING:
    import httpx

# Webhooks answer in well under a second; a dead endpoint must not eat the function's time.
# (httpx is imported on first use: an email-only configuration never needs it.)
TIMEOUT_S, CONNECT_TIMEOUT_S = 8.0, 3.0
USER_AGENT = f"pitcrew/{__version__} (+notify)"
_BODY_EXCERPT = 200


@frozen
class Reply:
    """One HTTP answer: status, headers (case-insensitive) and body text."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def excerpt(self) -> str:
        """The start of the body, on one line, for an error message."""
        body = " ".join(self.text.split())
        return body[:_BODY_EXCERPT] + ("…" if len(body) > _BODY_EXCERPT else "")


@frozen
class Verdict:
    """What a reply means: delivered; worth retrying (after ``retry_after`` seconds when the
    service said so); or failed for good. ``reason`` explains a failure."""

    delivered: bool = False
    retry: bool = False
    reason: str = ""
    retry_after: float | None = None


DELIVERED = Verdict(delivered=True)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date
    (RFC 9110, 10.2.3). None when absent or unreadable; never negative."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def judge_status(reply: Reply, now: datetime) -> Verdict:
    """The plain HTTP reading: 2xx delivered; 429 and 5xx retried (honouring
    ``Retry-After``); any other status a permanent failure."""
    if 200 <= reply.status < 300:
        return DELIVERED
    reason = f"HTTP {reply.status}" + (f": {reply.excerpt()}" if reply.text.strip() else "")
    if reply.status == 429 or reply.status >= 500:
        retry_after = parse_retry_after(reply.headers.get("retry-after"), now)
        return Verdict(retry=True, reason=reason, retry_after=retry_after)
    return Verdict(reason=reason)


Judge = Callable[[Reply, datetime], Verdict]


class RetryBudget:
    """The time one event's deliveries may spend waiting to retry. A retry is made only if
    its wait ends before the deadline; the first attempt is always made."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.deadline = clock() + max(seconds, 0.0)

    def remaining(self) -> float:
        return max(self.deadline - self._clock(), 0.0)

    def allows(self, wait_s: float) -> bool:
        return wait_s <= self.remaining()


class HttpDelivery:
    """Posts JSON with retries. Everything that talks to the outside or to time is
    injectable: the httpx client, ``sleep``, the monotonic ``clock``, the wall clock ``now``
    (for HTTP-date ``Retry-After``) and the backoff jitter."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        max_attempts: int = 4,
        base_delay_s: float = 1.0,
        max_delay_s: float = 8.0,
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.sleep = sleep
        self.clock = clock
        self.now = now
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    @property
    def client(self) -> httpx.Client:
        # Channels post from several threads at once: one of them builds the client.
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    timeout=httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=False,
                )
            return self._client

    def budget(self, seconds: float) -> RetryBudget:
        """A retry budget on this delivery's clock."""
        return RetryBudget(seconds, self.clock)

    def post_json(
        self,
        service: str,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        judge: Judge = judge_status,
        budget: RetryBudget | None = None,
    ) -> int:
        """Post ``payload`` to ``url`` until ``judge`` says it is delivered; returns the number
        of attempts. Raises ``TransientServiceError`` when retries ran out (or the budget did),
        ``ServiceError`` on a permanent failure; ``service`` names the service in both."""
        budget = budget or self.budget(30.0)
        body = json.dumps(payload, ensure_ascii=False).encode()
        request_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        attempt = 0
        while True:
            attempt += 1
            verdict, cause = self._attempt(url, body, request_headers, judge)
            if verdict.delivered:
                return attempt
            reason = redact(verdict.reason)
            if not verdict.retry:
                raise ServiceError(service, _attempts(reason, attempt)) from cause
            if attempt >= self.max_attempts:
                raise TransientServiceError(service, _attempts(reason, attempt)) from cause
            wait = self._wait(attempt, verdict.retry_after)
            if not budget.allows(wait):
                beyond = f"; waiting {wait:g} s more is beyond the retry budget"
                raise TransientServiceError(service, _attempts(reason, attempt) + beyond) from cause
            self.sleep(wait)

    def _attempt(
        self, url: str, body: bytes, headers: Mapping[str, str], judge: Judge
    ) -> tuple[Verdict, BaseException | None]:
        import httpx  # already imported by self.client

        try:
            response = self.client.post(url, content=body, headers=headers)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return Verdict(retry=True, reason=f"{type(exc).__name__}: {exc}"), exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # A bad URL, an unsupported scheme, a redirect: no retry will fix it. The text of
            # InvalidURL can quote the URL, so only the kind is kept.
            return Verdict(reason=f"cannot post: {type(exc).__name__}"), exc
        reply = Reply(response.status_code, response.headers, response.text)
        return judge(reply, self.now()), None

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)
        return round(ceiling / 2 + self.jitter() * ceiling / 2, 3)  # "equal jitter"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _attempts(reason: str, attempts: int) -> str:
    return reason if attempts == 1 else f"{reason} (after {attempts} attempts)"
