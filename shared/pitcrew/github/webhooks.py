"""GitHub webhook signatures: ``X-Hub-Signature-256`` is ``sha256=`` and the hex HMAC-SHA256
of the raw body keyed with the webhook secret, checked in constant time before anything of
the body is parsed.

While the secret rotates (Secrets Manager's four steps, issue 7), GitHub may sign with either
the old or the new value: when ``github.webhook_secret`` is a ``secret:`` reference, the
``AWSPENDING`` version is accepted too. Configuration values are cached per cold start, so on
a mismatch the current value is also fetched again, at most once per ``refresh_every_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable

from pitcrew.config import Value
from pitcrew.errors import UnauthorizedError

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")

# Fetches one version stage of a secret (name, "AWSCURRENT" | "AWSPENDING"); None when that
# stage does not exist.
SecretFetcher = Callable[[str, str], str | None]


def signature(secret: bytes, body: bytes) -> str:
    """The header value GitHub sends for ``body`` signed with ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, header: str | None, secrets: list[bytes]) -> bool:
    """True when ``header`` is a well-formed signature of ``body`` by one of ``secrets``.

    Every secret is compared (no early exit) and each comparison is constant-time."""
    if not header:
        return False
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return False
    given = match.group(1).lower().encode()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(given, expected)
    return matched


def _fetch_from_secrets_manager(name: str, stage: str) -> str | None:
    from pitcrew.aws import aws_errors, client
    from pitcrew.errors import NotFoundError

    try:
        with aws_errors("secretsmanager"):
            response = client("secretsmanager").get_secret_value(SecretId=name, VersionStage=stage)
    except NotFoundError:  # no version has that stage: no rotation under way
        return None
    text = response.get("SecretString")
    return text if isinstance(text, str) else None


class WebhookSecrets:
    """The values a webhook signature may be made with, for ``github.webhook_secret``."""

    def __init__(
        self,
        value: Value,
        *,
        fetch: SecretFetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_every_s: float = 60.0,
    ) -> None:
        self.value = value
        self._fetch = fetch or _fetch_from_secrets_manager
        self._clock = clock
        self._refresh_every_s = refresh_every_s
        self._current: str | None = None
        self._pending: str | None = None
        self._pending_at: float | None = None
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()

    def _secret_name(self) -> tuple[str, str] | None:
        reference = self.value.reference
        if reference is None or not reference.startswith("secret:"):
            return None
        name, _, json_key = reference.removeprefix("secret:").partition("#")
        return name, json_key

    def _stage(self, stage: str) -> str | None:
        named = self._secret_name()
        if named is None:
            return None
        name, json_key = named
        text = self._fetch(name, stage)
        if text is None:
            return None
        if json_key:
            from pitcrew.config import _pick_json_key  # the same #key rule as every reference

            text = _pick_json_key(text, json_key)
        from pitcrew.observability import register_secret

        register_secret(text)
        return text

    def current(self) -> str:
        return self._current if self._current is not None else self.value.get()

    def pending(self) -> str | None:
        """The AWSPENDING value (looked up at most once per ``refresh_every_s``)."""
        now = self._clock()
        with self._lock:
            if self._pending_at is None or now - self._pending_at >= self._refresh_every_s:
                self._pending = self._stage("AWSPENDING")
                self._pending_at = now
            return self._pending

    def refresh(self) -> bool:
        """Fetch the current value again, unless that was done less than
        ``refresh_every_s`` ago; True when a new fetch happened."""
        if self._secret_name() is None:
            return False
        now = self._clock()
        with self._lock:
            if self._refreshed_at is not None and now - self._refreshed_at < self._refresh_every_s:
                return False
            self._refreshed_at = now
            fresh = self._stage("AWSCURRENT")
            if fresh is not None:
                self._current = fresh
            self._pending_at = None  # look at the pending stage again too
            return True

    def verify(self, body: bytes, header: str | None) -> None:
        """Raise ``UnauthorizedError`` unless ``header`` signs ``body`` with the current
        secret or, during a rotation, the pending one."""
        if not header:
            raise UnauthorizedError(f"missing {SIGNATURE_HEADER} header")
        if _SIGNATURE.fullmatch(header.strip()) is None:
            raise UnauthorizedError(f"malformed {SIGNATURE_HEADER} header (expected sha256=<hex>)")
        if signature_matches(body, header, [self.current().encode()]):
            return
        if self._secret_name() is not None:
            for attempt in range(2):
                if attempt and not self.refresh():
                    break
                candidates = [self.current().encode()]
                pending = self.pending()
                if pending is not None:
                    candidates.append(pending.encode())
                if signature_matches(body, header, candidates):
                    return
        raise UnauthorizedError(f"{SIGNATURE_HEADER} does not match the body")
