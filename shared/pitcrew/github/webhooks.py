"""GitHub webhook signatures: ``X-Hub-Signature-256`` is ``sha256=`` and the hex HMAC-SHA256
of the raw body keyed with the webhook secret, checked in constant time before anything of
the body is parsed.

While the secret rotates (Secrets Manager's four steps, issue 7), GitHub may sign with either
the old or the new value: when ``github.webhook_secret`` is a ``secret:`` reference, the
``AWSPENDING`` version is accepted too. Configuration values are cached per cold start, so on
a mismatch both stages are fetched again, at most once per ``refresh_every_s``.
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

# Looks up a secret's current value and, during a rotation, its pending one:
# (secret name or ARN, JSON key or None) -> [AWSCURRENT, AWSPENDING?].
SecretLookup = Callable[[str, str | None], list[str]]


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


def _current_and_pending(name: str, key: str | None) -> list[str]:
    from pitcrew.rotation.versions import current_and_pending

    return current_and_pending(name, key=key)


class WebhookSecrets:
    """The values a webhook signature may be made with, for ``github.webhook_secret``.

    The value cached at cold start is tried first, at no cost. On a mismatch, when the
    value is a ``secret:`` reference, Secrets Manager is asked for AWSCURRENT and
    AWSPENDING (``pitcrew.rotation.versions``); that answer is reused for
    ``refresh_every_s``, so a flood of forged signatures costs one lookup per interval.
    """

    def __init__(
        self,
        value: Value,
        *,
        lookup: SecretLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_every_s: float = 10.0,
    ) -> None:
        self.value = value
        self._lookup = lookup or _current_and_pending
        self._clock = clock
        self._refresh_every_s = refresh_every_s
        self._fresh: list[str] = []
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _secret_name(self) -> tuple[str, str | None] | None:
        reference = self.value.reference
        if reference is None or not reference.startswith("secret:"):
            return None
        name, _, json_key = reference.removeprefix("secret:").partition("#")
        return name, json_key or None

    def current(self) -> str:
        """The newest known current value (the cold start's, until a lookup says more)."""
        return self._fresh[0] if self._fresh else self.value.get()

    def rotation_values(self) -> list[str]:
        """AWSCURRENT and AWSPENDING as Secrets Manager last said, looked up again when
        that answer is older than ``refresh_every_s``."""
        named = self._secret_name()
        if named is None:
            return []
        now = self._clock()
        with self._lock:
            if self._fetched_at is None or now - self._fetched_at >= self._refresh_every_s:
                self._fetched_at = now
                self._fresh = self._lookup(*named)
            return list(self._fresh)

    def verify(self, body: bytes, header: str | None) -> None:
        """Raise ``UnauthorizedError`` unless ``header`` signs ``body`` with the current
        secret or, during a rotation, the pending one."""
        if not header:
            raise UnauthorizedError(f"missing {SIGNATURE_HEADER} header")
        if _SIGNATURE.fullmatch(header.strip()) is None:
            raise UnauthorizedError(f"malformed {SIGNATURE_HEADER} header (expected sha256=<hex>)")
        if signature_matches(body, header, [self.current().encode()]):
            return
        candidates = [value.encode() for value in self.rotation_values()]
        if candidates and signature_matches(body, header, candidates):
            return
        raise UnauthorizedError(f"{SIGNATURE_HEADER} does not match the body")
