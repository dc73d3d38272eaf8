"""The values a credential check must accept while a rotation is under way.

Between setSecret and finishSecret the other side may already use AWSPENDING (GitHub signs
webhook deliveries with it) while readers of the secret still get AWSCURRENT. A check that
compares against ``current_and_pending(secret_id)`` accepts both, so no request is refused
during a rotation. Each call asks Secrets Manager afresh: a cached answer would miss the
pending value that appears mid-rotation.
"""

from __future__ import annotations

from pitcrew.rotation.store import CURRENT, PENDING, SecretStore
from pitcrew.rotation.strategy import json_object


def current_and_pending(
    secret_id: str, *, key: str | None = None, store: SecretStore | None = None
) -> list[str]:
    """AWSCURRENT's value, then AWSPENDING's when a rotation is under way (and it differs).

    ``key`` picks one field of a JSON secret (as ``secret:NAME#key`` does in the
    configuration). Values are registered for log redaction."""
    store = store or SecretStore()
    info = store.describe(secret_id)
    values = [_pick(store.value(info.arn, stage=CURRENT), key, info.name)]
    pending_version = info.version_with(PENDING)
    if pending_version is not None and CURRENT not in info.stages.get(pending_version, ()):
        pending = store.value_or_none(info.arn, version=pending_version, stage=PENDING)
        if pending is not None:
            picked = _pick(pending, key, info.name)
            if picked not in values:
                values.append(picked)
    return values


def _pick(text: str, key: str | None, name: str) -> str:
    if key is None:
        return text
    document = json_object(text)
    value = document.get(key) if document is not None else None
    if not isinstance(value, str):
        from pitcrew.errors import BadRequestError

        raise BadRequestError(f"{name}: the secret has no text field {key!r}")
    return value
