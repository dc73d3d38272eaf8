"""Webhook signatures: GitHub's documented test vector, any altered byte refused, malformed
headers refused, and both secrets accepted during a rotation (with the refresh of a stale
cached secret rate-limited)."""

from __future__ import annotations

import pytest

from pitcrew.config import Resolver, Value
from pitcrew.errors import UnauthorizedError
from pitcrew.github.webhooks import WebhookSecrets, signature, signature_matches

# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
SECRET = b"It's a Secret to Everybody"
PAYLOAD = b"Hello, World!"
EXPECTED = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_documented_vector() -> None:
    assert signature(SECRET, PAYLOAD) == EXPECTED
    assert signature_matches(PAYLOAD, EXPECTED, [SECRET])


def test_any_altered_byte_of_the_body_is_refused() -> None:
    for index in range(len(PAYLOAD)):
        altered = bytearray(PAYLOAD)
        altered[index] ^= 0x01
        assert not signature_matches(bytes(altered), EXPECTED, [SECRET]), index
    assert not signature_matches(PAYLOAD + b"\n", EXPECTED, [SECRET])


def test_any_altered_digit_of_the_signature_is_refused() -> None:
    digest = EXPECTED.removeprefix("sha256=")
    for index in range(len(digest)):
        digit = "0" if digest[index] != "0" else "1"
        altered = "sha256=" + digest[:index] + digit + digest[index + 1 :]
        assert not signature_matches(PAYLOAD, altered, [SECRET]), index


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        "757107ea",
        "sha256=xyz",
        EXPECTED[:-1],
        EXPECTED + "0",
    ],
)
def test_malformed_or_missing_signatures_are_refused(header: str | None) -> None:
    secrets = WebhookSecrets(Value(SECRET.decode(), "github.webhook_secret", secret=True))
    with pytest.raises(UnauthorizedError):
        secrets.verify(PAYLOAD, header)


def test_the_upper_case_hex_of_a_right_signature_is_accepted() -> None:
    assert signature_matches(PAYLOAD, EXPECTED.upper().replace("SHA256=", "sha256="), [SECRET])


class Rotation:
    """What Secrets Manager says of the secret's stages, counting lookups."""

    def __init__(self, current: str, pending: str | None = None) -> None:
        self.current, self.pending = current, pending
        self.lookups = 0
        self.now = 1000.0

    def lookup(self, name: str, key: str | None) -> list[str]:
        assert (name, key) == ("pitcrew/github-webhook", None)
        self.lookups += 1
        return [self.current] + ([self.pending] if self.pending else [])

    def clock(self) -> float:
        return self.now


def secrets_for(rotation: Rotation, cached: str) -> WebhookSecrets:
    # The configuration resolved the reference once, at cold start, to ``cached``.
    resolver = Resolver(secret=lambda name: cached, register=lambda value: None)
    value = Value(
        "secret:pitcrew/github-webhook", "github.webhook_secret", secret=True, resolver=resolver
    )
    return WebhookSecrets(value, lookup=rotation.lookup, clock=rotation.clock)


def test_during_a_rotation_the_pending_secret_is_accepted_too() -> None:
    rotation = Rotation(current="old-secret-value", pending="new-secret-value")
    secrets = secrets_for(rotation, cached="old-secret-value")

    secrets.verify(PAYLOAD, signature(b"old-secret-value", PAYLOAD))
    assert rotation.lookups == 0  # the common case costs no call
    secrets.verify(PAYLOAD, signature(b"new-secret-value", PAYLOAD))
    secrets.verify(PAYLOAD, signature(b"new-secret-value", PAYLOAD))
    assert rotation.lookups == 1
    with pytest.raises(UnauthorizedError):
        secrets.verify(PAYLOAD, signature(b"someone-elses", PAYLOAD))


def test_a_stale_cached_secret_is_looked_up_again_at_most_every_ten_seconds() -> None:
    # The rotation finished after this cold start: AWSCURRENT is now the new value.
    rotation = Rotation(current="new-secret-value")
    secrets = secrets_for(rotation, cached="old-secret-value")

    secrets.verify(PAYLOAD, signature(b"new-secret-value", PAYLOAD))
    assert rotation.lookups == 1
    assert secrets.current() == "new-secret-value"

    for _ in range(5):  # a flood of forged signatures does not hammer Secrets Manager
        with pytest.raises(UnauthorizedError):
            secrets.verify(PAYLOAD, signature(b"forged", PAYLOAD))
    assert rotation.lookups == 1
    rotation.now += 11
    with pytest.raises(UnauthorizedError):
        secrets.verify(PAYLOAD, signature(b"forged", PAYLOAD))
    assert rotation.lookups == 2


def test_a_literal_secret_is_never_looked_up() -> None:
    rotation = Rotation(current="x")
    value = Value("literal-secret", "github.webhook_secret", secret=True)
    secrets = WebhookSecrets(value, lookup=rotation.lookup)
    with pytest.raises(UnauthorizedError):
        secrets.verify(PAYLOAD, signature(b"other", PAYLOAD))
    assert rotation.lookups == 0
