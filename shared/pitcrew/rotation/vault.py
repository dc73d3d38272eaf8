"""Vault KV v2 rotation (the ``rotate_vault`` schedule): each ``vault.rotate`` entry whose
current version is at least ``every_days`` old gets a new random value, written with
check-and-set on the version just read, so a concurrent writer is never overwritten.

- Age: the ``created_time`` of the current version in the key's metadata.
- Write: ``options.cas`` = the version read. Vault answers 400 "check-and-set parameter did
  not match the current version" when someone wrote in between: that entry is reported
  (result ``conflict`` and a ``SecretRotationFailed`` event) and left alone until the next
  run, never retried blindly on top of the other writer's value.
- ``max_versions``: the previous value must stay readable for consumers that lag, so a key
  limited to fewer than 2 versions is raised to 2 before the write (and the result says so).
- ``custom_metadata`` records when and by what (``pitcrew-rotated-at``,
  ``pitcrew-rotated-by``, ``pitcrew-rotated-version``); other custom metadata is kept. The
  write is what rotates: when Vault then refuses the metadata (its 64-key limit, a policy
  without ``metadata`` update), the result is still ``rotated``, its reason says so.
- A current version Vault has deleted (``delete_version_after``, or ``vault kv delete``)
  is not rotated over: the entry fails, naming the version and when it was deleted.
- Auth: ``aws_iam`` (hvac's ``iam_login``, signed with the function's own credentials from
  boto3's session) or a ``token`` (a ``secret:`` reference). hvac is imported on first use.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pitcrew.config import VaultConfig
from pitcrew.config import VaultRotation as RotationEntry
from pitcrew.errors import (
    ConflictError,
    NotFoundError,
    PitcrewError,
    ServiceError,
    TransientServiceError,
    UnauthorizedError,
)
from pitcrew.events import DomainEvent, EventName, event
from pitcrew.observability import register_secret
from pitcrew.records import frozen
from pitcrew.rotation.store import credential_values

log = logging.getLogger("pitcrew.rotation")

ALPHABET = string.ascii_letters + string.digits
MIN_VERSIONS = 2
ROTATED_BY = "pitcrew rotate_vault"


@frozen
class VaultResult:
    """What happened to one entry: ``rotated``, ``skipped`` (not due), ``conflict`` (a
    concurrent write) or ``failed``. Never holds a value."""

    path: str
    status: str
    version: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@frozen
class KeyMetadata:
    current_version: int
    created: datetime | None
    max_versions: int
    cas_required: bool
    custom: Mapping[str, str]
    delete_after: str = "0s"
    current_deleted: datetime | None = None  # the current version's deletion_time


class VaultKV:
    """KV v2 on one mount through hvac, with hvac's errors turned into pitcrew's."""

    def __init__(self, client: Any, mount: str) -> None:
        self.client = client
        self.mount = mount
        self._mount_max_versions: int | None = None

    def mount_max_versions(self) -> int | None:
        """The mount's ``max_versions`` (``GET <mount>/config``, read once); None when the
        token may not read it."""
        if self._mount_max_versions is None:
            from hvac import exceptions

            try:
                config = self._kv.read_configuration(mount_point=self.mount)["data"]
            except (exceptions.Forbidden, exceptions.InvalidPath):
                log.info("%s/config cannot be read: its max_versions is not checked", self.mount)
                return None
            self._mount_max_versions = int(config.get("max_versions") or 0)
        return self._mount_max_versions

    @property
    def _kv(self) -> Any:
        return self.client.secrets.kv.v2

    def metadata(self, path: str) -> KeyMetadata:
        with vault_errors(path):
            data = self._kv.read_secret_metadata(path=path, mount_point=self.mount)["data"]
        current = int(data.get("current_version") or 0)
        version = (data.get("versions") or {}).get(str(current)) or {}
        created = _parse_time(version.get("created_time") or data.get("updated_time"))
        return KeyMetadata(
            current_version=current,
            created=created,
            max_versions=int(data.get("max_versions") or 0),
            cas_required=bool(data.get("cas_required")),
            custom=dict(data.get("custom_metadata") or {}),
            delete_after=str(data.get("delete_version_after") or "0s"),
            current_deleted=_parse_time(version.get("deletion_time")),
        )

    def read(self, path: str) -> tuple[dict[str, Any], int]:
        """The latest data and its version."""
        with vault_errors(path):
            answer = self._kv.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True
            )["data"]
        data = dict(answer.get("data") or {})
        for value in credential_values(data):
            register_secret(value)
        return data, int(answer["metadata"]["version"])

    def write(self, path: str, data: Mapping[str, Any], cas: int) -> int:
        """Write with check-and-set; ``ConflictError`` when ``cas`` is not the current version."""
        with vault_errors(path):
            answer = self._kv.create_or_update_secret(
                path=path, secret=dict(data), cas=cas, mount_point=self.mount
            )
        return int(answer["data"]["version"])

    def update_metadata(
        self,
        path: str,
        was: KeyMetadata,
        *,
        custom: Mapping[str, str],
        max_versions: int | None = None,
    ) -> None:
        """Set custom metadata (and max_versions). A metadata POST changes only what it
        names, but hvac always names ``delete_version_after`` ("0s" unless given): the key's
        own is sent back, so it is kept."""
        with vault_errors(path):
            self._kv.update_metadata(
                path=path,
                max_versions=max_versions,
                delete_version_after=was.delete_after,
                custom_metadata=dict(custom),
                mount_point=self.mount,
            )


@contextmanager
def vault_errors(path: str) -> Iterator[None]:
    """hvac's exceptions as pitcrew's (cause kept); messages name the path, never data."""
    from hvac import exceptions
    from requests.exceptions import RequestException

    try:
        yield
    except exceptions.InvalidRequest as exc:
        text = " ".join(str(e) for e in (exc.errors or [])) or str(exc)
        if "check-and-set" in text:
            raise ConflictError(f"vault: {path}: {text}") from exc
        raise ServiceError("vault", f"{path}: {text}") from exc
    except exceptions.InvalidPath as exc:
        raise NotFoundError(f"vault: {path}: no such secret") from exc
    except (exceptions.Unauthorized, exceptions.Forbidden) as exc:
        raise UnauthorizedError(f"vault: {path}: permission denied") from exc
    except (
        exceptions.VaultDown,
        exceptions.InternalServerError,
        exceptions.RateLimitExceeded,
    ) as exc:
        raise TransientServiceError("vault", f"{path}: {type(exc).__name__}") from exc
    except exceptions.VaultError as exc:
        raise ServiceError("vault", f"{path}: {type(exc).__name__}: {exc}") from exc
    except RequestException as exc:
        raise TransientServiceError("vault", f"cannot reach Vault: {type(exc).__name__}") from exc


def vault_client(config: VaultConfig, credentials: Callable[[], Any] | None = None) -> Any:
    """An authenticated hvac client. ``credentials`` returns botocore-style credentials
    (``access_key``, ``secret_key``, ``token``) for ``aws_iam``; default: boto3's session."""
    import hvac

    client = hvac.Client(url=config.url.get(), timeout=10)
    auth = config.auth
    with vault_errors("auth"):
        if auth.method == "token":
            assert auth.token is not None  # the configuration requires it
            client.token = auth.token.get()
        else:
            found = (credentials or _session_credentials)()
            register_secret(found.secret_key)
            if found.token:
                register_secret(found.token)
            client.auth.aws.iam_login(
                found.access_key, found.secret_key, found.token, role=auth.role
            )
        if not client.token:
            raise UnauthorizedError("vault: login gave no token")
        register_secret(client.token)
    return client


def _session_credentials() -> Any:
    import boto3

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise UnauthorizedError("vault: aws_iam auth needs AWS credentials; none found")
    return credentials.get_frozen_credentials()


class VaultRotation:
    """Rotates the configured KV v2 keys. The client, clock, value generator and event
    publisher are injected; the defaults are the real ones."""

    def __init__(
        self,
        config: VaultConfig,
        *,
        client: Any | None = None,
        clock: Callable[[], datetime] | None = None,
        new_value: Callable[[int], str] | None = None,
        publish: Callable[..., None] | None = None,
        rotated_by: str = ROTATED_BY,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._new_value = new_value or random_value
        self._publish = publish
        self.rotated_by = rotated_by

    @property
    def kv(self) -> VaultKV:
        if self._client is None:
            self._client = vault_client(self.config)
        return VaultKV(self._client, self.config.kv_mount)

    def run(self) -> list[VaultResult]:
        """Every entry once; one entry's failure does not stop the others."""
        results: list[VaultResult] = []
        events: list[DomainEvent] = []
        kv = self.kv
        for entry in self.config.rotate:
            try:
                result = self.rotate(kv, entry)
            except PitcrewError as exc:
                status = "conflict" if isinstance(exc, ConflictError) else "failed"
                result = VaultResult(entry.path, status, reason=f"{type(exc).__name__}: {exc}")
            log.info("vault %s: %s %s", entry.path, result.status, result.reason)
            results.append(result)
            if result.status in ("conflict", "failed"):
                events.append(self._failed(entry, result))
            elif result.status == "rotated":
                events.append(self._rotated(entry, result))
        if events:
            self._emit(*events)
        return results

    def rotate(self, kv: VaultKV, entry: RotationEntry) -> VaultResult:
        """One entry: skipped when not due, else a check-and-set write of a new value."""
        now = self._clock()
        metadata = kv.metadata(entry.path)
        if metadata.current_deleted is not None and metadata.current_deleted <= now:
            raise NotFoundError(
                f"vault: {entry.path}: version {metadata.current_version} was deleted at "
                f"{metadata.current_deleted.strftime('%Y-%m-%dT%H:%M:%SZ')} (delete_version_after "
                f"{metadata.delete_after}, or a delete): not rotated over; keep every_days "
                "below delete_version_after, and write a new version by hand"
            )
        if metadata.created is not None and now - metadata.created < timedelta(
            days=entry.every_days
        ):
            due = (metadata.created + timedelta(days=entry.every_days)).date().isoformat()
            return VaultResult(entry.path, "skipped", metadata.current_version, f"due {due}")
        data, version = kv.read(entry.path)
        if isinstance(data.get(entry.key), str):
            register_secret(data[entry.key])
        notes = []
        max_versions = None
        # 0 means the mount's default (10 unless changed); 1 would drop the old value at once.
        if metadata.max_versions == 1:
            max_versions = MIN_VERSIONS
            notes.append(f"max_versions raised from 1 to {MIN_VERSIONS}")
        elif metadata.max_versions == 0 and kv.mount_max_versions() == 1:
            max_versions = MIN_VERSIONS
            notes.append(f"max_versions set to {MIN_VERSIONS} (the mount keeps 1)")
        if max_versions is not None:
            kv.update_metadata(
                entry.path, metadata, custom=metadata.custom, max_versions=max_versions
            )
        value = self._new_value(entry.length)
        register_secret(value)
        written = kv.write(entry.path, {**data, entry.key: value}, cas=version)
        custom = {
            **metadata.custom,
            "pitcrew-rotated-at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pitcrew-rotated-by": self.rotated_by,
            "pitcrew-rotated-version": str(written),
        }
        try:
            kv.update_metadata(entry.path, metadata, custom=custom)
        except PitcrewError as exc:
            # The new value is written and current: a rotation, whatever the metadata says.
            notes.append(f"custom_metadata not recorded: {type(exc).__name__}: {exc}")
        return VaultResult(entry.path, "rotated", written, "; ".join(notes))

    def _rotated(self, entry: RotationEntry, result: VaultResult) -> DomainEvent:
        return event(
            EventName.SECRET_ROTATED,
            {
                "secret": entry.path,
                "store": "vault",
                "mount": self.config.kv_mount,
                "version": result.version,
                "rotated_at": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "next_rotation": (self._clock() + timedelta(days=entry.every_days))
                .date()
                .isoformat(),
            },
        )

    def _failed(self, entry: RotationEntry, result: VaultResult) -> DomainEvent:
        return event(
            EventName.SECRET_ROTATION_FAILED,
            {
                "secret": entry.path,
                "store": "vault",
                "mount": self.config.kv_mount,
                "step": "write" if result.status == "conflict" else "rotate",
                "error": result.reason,
            },
        )

    def _emit(self, *events: DomainEvent) -> None:
        if self._publish is not None:
            self._publish(*events)
            return
        from pitcrew.events import publish

        publish(*events)


def random_value(length: int) -> str:
    """A random value of letters and digits (safe in any file, header or URL)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    # Vault writes RFC 3339 with nanoseconds ("2024-11-19T03:00:00.123456789Z").
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())[:6]
        zone = rest[len("".join(c for c in rest if c.isdigit())) :]
        text = f"{head}.{digits}{zone}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
