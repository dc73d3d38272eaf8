"""What a rotation strategy is: how to make a new value (createSecret), put it where it is
used (setSecret) and check it works there (testSecret). The protocol (``pitcrew.rotation.
protocol``) does the rest: guards, staging labels, events.

A secret names its strategy with the tag ``pitcrew:rotation`` (``password``, ``postgres``,
``github-webhook``, ``http``); other ``pitcrew:*`` tags tune it (see each strategy).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, Protocol

from pitcrew.config import PasswordPolicy, RotationConfig
from pitcrew.errors import BadRequestError
from pitcrew.records import mutable
from pitcrew.rotation.store import SecretInfo, SecretStore

STRATEGY_TAG = "pitcrew:rotation"
KEY_TAG = "pitcrew:key"


@mutable
class RotationContext:
    """One step of one rotation: the secret, the version being made (``token``), and the
    values as far as they exist. ``pending`` is None in createSecret."""

    secret: SecretInfo
    token: str
    store: SecretStore
    current: str
    pending: str | None = None
    settings: RotationConfig = field(default_factory=RotationConfig)

    @property
    def tags(self) -> Mapping[str, str]:
        return self.secret.tags

    def require_pending(self) -> str:
        if self.pending is None:
            raise BadRequestError(f"{self.secret.name}: version {self.token} has no value yet")
        return self.pending

    def previous_values(self) -> list[str]:
        """Values a service may still hold besides AWSCURRENT: AWSPREVIOUS, then the versions
        abandoned rotations left without a label, newest first."""
        found: list[str] = []
        candidates: list[tuple[str | None, str | None]] = [(None, "AWSPREVIOUS")]
        candidates += [(v, None) for v in self.store.unlabelled_versions(self.secret.arn)]
        for version, stage in candidates:
            if version == self.token:
                continue
            value = self.store.value_or_none(self.secret.arn, version=version, stage=stage)
            if value is not None and value not in found and value != self.current:
                found.append(value)
        return found


class Strategy(Protocol):
    """createSecret's value, setSecret's and testSecret's work, for one kind of secret. Each
    method must be safe to run twice (a step is retried when its invocation failed)."""

    name: str

    def create(self, context: RotationContext) -> str:
        """The new SecretString, made from the current one."""

    def set(self, context: RotationContext) -> None:
        """Make the pending value the one the service accepts (no-op when already so)."""

    def test(self, context: RotationContext) -> None:
        """Raise unless the pending value works."""


# --- shared helpers -------------------------------------------------------------------------


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError("expected true or false")


def _length(text: str) -> int:
    length = int(text)
    if not 4 <= length <= 4096:
        raise ValueError("expected a length from 4 to 4096")
    return length


# Tag -> (GetRandomPassword option, parser of the tag's text).
_POLICY_TAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "pitcrew:length": ("PasswordLength", _length),
    "pitcrew:exclude-characters": ("ExcludeCharacters", str),
    "pitcrew:exclude-punctuation": ("ExcludePunctuation", _flag),
    "pitcrew:exclude-numbers": ("ExcludeNumbers", _flag),
    "pitcrew:exclude-uppercase": ("ExcludeUppercase", _flag),
    "pitcrew:exclude-lowercase": ("ExcludeLowercase", _flag),
    "pitcrew:include-space": ("IncludeSpace", _flag),
    "pitcrew:require-each-included-type": ("RequireEachIncludedType", _flag),
}


def password_request(
    policy: PasswordPolicy, tags: Mapping[str, str], secret_name: str
) -> dict[str, Any]:
    """``GetRandomPassword``'s arguments: the configured policy, each option overridden by
    the secret's tag of the same name (``pitcrew:length``, ``pitcrew:exclude-characters``...)."""
    request: dict[str, Any] = {
        "PasswordLength": policy.length,
        "ExcludeCharacters": policy.exclude_characters,
        "ExcludePunctuation": policy.exclude_punctuation,
        "ExcludeNumbers": policy.exclude_numbers,
        "ExcludeUppercase": policy.exclude_uppercase,
        "ExcludeLowercase": policy.exclude_lowercase,
        "IncludeSpace": policy.include_space,
        "RequireEachIncludedType": policy.require_each_included_type,
    }
    for tag, (option, parse) in _POLICY_TAGS.items():
        if tag in tags:
            try:
                request[option] = parse(tags[tag])
            except ValueError as exc:
                raise BadRequestError(
                    f"{secret_name}: tag {tag}={tags[tag]!r}: {exc}".rstrip(": ")
                ) from exc
    if not request["ExcludeCharacters"]:
        del request["ExcludeCharacters"]
    return request


def new_password(context: RotationContext) -> str:
    """A random password from Secrets Manager, by the policy of config and tags."""
    request = password_request(context.settings.password, context.tags, context.secret.name)
    return context.store.random_password(**request)


def with_new_value(context: RotationContext, value: str, default_key: str) -> str:
    """The SecretString with ``value`` in place: the whole string for a plain secret; for a
    JSON object, the field named by the ``pitcrew:key`` tag (else ``default_key``), every
    other field kept."""
    document = json_object(context.current)
    if document is None:
        return value
    key = context.tags.get(KEY_TAG, default_key)
    if key not in document:
        raise BadRequestError(
            f"{context.secret.name}: the JSON secret has no {key!r} field to rotate "
            f"(name the field with the tag {KEY_TAG})"
        )
    document[key] = value
    return json.dumps(document)


def value_at_key(context: RotationContext, text: str, default_key: str) -> str:
    """The rotated part of a SecretString (see ``with_new_value``)."""
    document = json_object(text)
    if document is None:
        return text
    key = context.tags.get(KEY_TAG, default_key)
    picked = document.get(key)
    if not isinstance(picked, str):
        raise BadRequestError(f"{context.secret.name}: the JSON secret has no text field {key!r}")
    return picked


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed when it is a JSON object, else None (a plain secret)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def strategy_name(secret: SecretInfo) -> str:
    name = secret.tags.get(STRATEGY_TAG)
    if not name:
        raise BadRequestError(
            f"{secret.name}: no tag {STRATEGY_TAG} (one of {', '.join(STRATEGIES)})"
        )
    if name not in STRATEGIES:
        raise BadRequestError(
            f"{secret.name}: tag {STRATEGY_TAG}={name!r} is not one of {', '.join(STRATEGIES)}"
        )
    return name


STRATEGIES: tuple[str, ...] = ("password", "postgres", "github-webhook", "http")
