"""Secrets Manager as the rotation protocol sees it: one secret's metadata, its versions and
their staging labels, and the few calls rotation makes. Every value read here is registered
for log redaction before it is returned; botocore's errors become pitcrew's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from pitcrew.aws import aws_errors
from pitcrew.errors import NotFoundError
from pitcrew.observability import keep_values_out_of_wire_logs, register_secret
from pitcrew.records import frozen

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
# Versions without a label are kept by Secrets Manager for a while; rotation looks at the
# newest few when it must find the credential a service still holds after an abandoned run.
MAX_UNLABELLED = 10


@frozen
class SecretInfo:
    """``DescribeSecret`` of one secret: what the protocol's guards and strategies read."""

    arn: str
    name: str
    rotation_enabled: bool
    stages: Mapping[str, tuple[str, ...]]  # version id -> its staging labels
    tags: Mapping[str, str] = field(default_factory=dict)
    next_rotation: str | None = None

    def version_with(self, stage: str) -> str | None:
        """The version carrying ``stage``, or None."""
        return next((v for v, labels in self.stages.items() if stage in labels), None)


class SecretStore:
    """The Secrets Manager calls of rotation, on one client (``pitcrew.aws.client`` unless
    one is given)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        keep_values_out_of_wire_logs()

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("secretsmanager")
        return self._client

    def describe(self, secret_id: str) -> SecretInfo:
        with aws_errors("secretsmanager"):
            answer = self.client.describe_secret(SecretId=secret_id)
        next_rotation = answer.get("NextRotationDate")
        return SecretInfo(
            arn=answer["ARN"],
            name=answer["Name"],
            # A secret that never had rotation configured has no such key: AWS's templates
            # read a missing key as "enabled" (RotateSecret on it is what is happening).
            rotation_enabled=bool(answer.get("RotationEnabled", True)),
            stages={v: tuple(s) for v, s in (answer.get("VersionIdsToStages") or {}).items()},
            tags={t["Key"]: t["Value"] for t in answer.get("Tags") or []},
            next_rotation=next_rotation.isoformat() if next_rotation is not None else None,
        )

    def value(self, secret_id: str, *, stage: str | None = None, version: str | None = None) -> str:
        """The SecretString of one version (by label, id or both); ``NotFoundError`` when that
        version does not exist or has no value yet."""
        request: dict[str, Any] = {"SecretId": secret_id}
        if stage:
            request["VersionStage"] = stage
        if version:
            request["VersionId"] = version
        with aws_errors("secretsmanager"):
            answer = self.client.get_secret_value(**request)
        text = answer.get("SecretString")
        if text is None:
            what = version or stage or "AWSCURRENT"
            raise NotFoundError(f"secretsmanager: version {what} of {secret_id} has no text value")
        register_secret(text)
        for part in secret_fields(text):
            register_secret(part)
        return str(text)

    def value_or_none(
        self, secret_id: str, *, stage: str | None = None, version: str | None = None
    ) -> str | None:
        try:
            return self.value(secret_id, stage=stage, version=version)
        except NotFoundError:
            return None

    def put_pending(self, secret_id: str, token: str, text: str) -> None:
        """Store ``text`` as the version ``token``, labelled AWSPENDING."""
        register_secret(text)
        with aws_errors("secretsmanager"):
            self.client.put_secret_value(
                SecretId=secret_id,
                ClientRequestToken=token,
                SecretString=text,
                VersionStages=[PENDING],
            )

    def move_stage(
        self, secret_id: str, stage: str, *, to: str | None, away_from: str | None
    ) -> None:
        """Move (or add, or remove) one staging label."""
        request: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
        if to:
            request["MoveToVersionId"] = to
        if away_from:
            request["RemoveFromVersionId"] = away_from
        with aws_errors("secretsmanager"):
            self.client.update_secret_version_stage(**request)

    def unlabelled_versions(self, secret_id: str) -> list[str]:
        """Versions without a staging label (abandoned rotations among them), newest first,
        at most ``MAX_UNLABELLED``."""
        versions: list[dict[str, Any]] = []
        request: dict[str, Any] = {"SecretId": secret_id, "IncludeDeprecated": True}
        with aws_errors("secretsmanager"):
            while True:
                answer = self.client.list_secret_version_ids(**request)
                versions += answer.get("Versions") or []
                if not answer.get("NextToken"):
                    break
                request["NextToken"] = answer["NextToken"]
        unlabelled = [v for v in reversed(versions) if not v.get("VersionStages")]
        unlabelled.sort(key=lambda v: v.get("CreatedDate") or 0, reverse=True)
        return [v["VersionId"] for v in unlabelled[:MAX_UNLABELLED]]

    def random_password(self, **policy: Any) -> str:
        """``GetRandomPassword`` with the policy's options (GetRandomPassword's names)."""
        with aws_errors("secretsmanager"):
            answer = self.client.get_random_password(**policy)
        password = str(answer["RandomPassword"])
        register_secret(password)
        return password


_SECRET_FIELD_WORDS = ("password", "secret", "token", "key")


def secret_fields(text: str) -> list[str]:
    """The values of a JSON object secret's credential fields (see ``credential_values``)."""
    if not text.startswith("{"):
        return []
    try:
        document = json.loads(text)
    except ValueError:
        return []
    return credential_values(document) if isinstance(document, dict) else []


def credential_values(document: Mapping[str, Any]) -> list[str]:
    """The values of a document's credential fields (``password``, ``*token*``,
    ``*secret*``, ``*key*``): each is redacted on its own too. Host, user and database names
    are not secrets, and redacting them ("postgres") would blank ordinary words."""
    return [
        value
        for name, value in document.items()
        if isinstance(value, str) and any(w in str(name).lower() for w in _SECRET_FIELD_WORDS)
    ]
