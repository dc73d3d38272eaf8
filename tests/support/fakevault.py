"""A fake HashiCorp Vault on 127.0.0.1: the KV v2 secrets engine and the AWS IAM login, as
Vault's HTTP API documentation describes them, for the real ``hvac`` client.

- ``GET/POST /v1/{mount}/data/{path}``: read (latest or ``?version=N``) and write, with
  ``options.cas``: 0 creates only, N writes only if N is the current version, else 400
  "check-and-set parameter did not match the current version"; a key (or the mount) with
  ``cas_required`` refuses writes without it. A write prunes the versions beyond
  ``max_versions`` (the larger of the key's and the mount's, 10 when both are 0), oldest
  first, and moves ``oldest_version``. A version gets a ``deletion_time`` from
  ``delete_version_after`` (the key's, else the mount's; "0s" never); once past, reading it
  answers 404 with its metadata and ``"data": null``, as Vault does.
- ``GET/POST /v1/{mount}/metadata/{path}``: ``current_version``, ``oldest_version``,
  ``versions`` with ``created_time`` / ``deletion_time``, ``max_versions``,
  ``cas_required``, ``delete_version_after``, ``custom_metadata``. A POST changes only the
  fields it names and prunes nothing; ``custom_metadata`` is validated as Vault does (at
  most 64 keys, keys up to 128 and values up to 512 characters, none empty; values read as
  strings) and replaces the whole map.
- ``POST /v1/auth/aws/login``: the signed ``sts:GetCallerIdentity`` request of the IAM auth
  method (``iam_http_request_method``, base64 ``iam_request_url`` / ``iam_request_body`` /
  ``iam_request_headers``), checked for shape and a SigV4 ``Authorization`` header, and the
  ``role`` against the roles the test configured.
- ``GET /v1/auth/token/lookup-self``; every other call needs a valid ``X-Vault-Token``.

Errors have Vault's shape: ``{"errors": [...]}``, ``Content-Type: application/json``.
``after_read`` runs a test's hook right after a data read is answered: a concurrent writer,
racing the code under test.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.fakehttp import FakeService, Reply, Request


def vault_reply(status: int, body: Any = None) -> Reply:
    """A reply with Vault's ``Content-Type: application/json`` (exactly: hvac reads an
    error's ``errors`` only then)."""
    return Reply(status, body, {"Content-Type": "application/json"} if body is not None else {})


def vault_time(moment: datetime) -> str:
    """Vault's RFC 3339 timestamps, with nanoseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


# Vault's limits on custom_metadata (vault-plugin-secrets-kv, path_metadata.go).
MAX_CUSTOM_METADATA_KEYS = 64
MAX_CUSTOM_METADATA_KEY_LENGTH = 128
MAX_CUSTOM_METADATA_VALUE_LENGTH = 512
DEFAULT_MAX_VERSIONS = 10
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|d)")


def parse_duration(text: str | int) -> timedelta:
    """A duration as Vault takes it: seconds, or Go's ``1h30m``/``768h0m0s`` (and ``d``)."""
    if isinstance(text, int) or str(text).isdigit():
        return timedelta(seconds=int(text))
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = _DURATION_PART.findall(str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"invalid duration {text!r}")
    return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def go_duration(duration: timedelta) -> str:
    """Go's ``Duration.String`` for whole seconds, as Vault shows ``delete_version_after``."""
    seconds = int(duration.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


@dataclass
class Version:
    data: dict[str, Any]
    created: datetime
    deletion: datetime | None = None


@dataclass
class Key:
    versions: dict[int, Version] = field(default_factory=dict)
    current: int = 0
    oldest: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: str = "0s"
    custom_metadata: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    updated: datetime | None = None


class FakeVault:
    """The fake's state and its HTTP front (``url``). ``roles`` are the AWS auth roles that
    may log in; ``tokens`` the valid tokens (a root token is made at start)."""

    def __init__(self, *, mount: str = "secret", clock: Callable[[], datetime] | None = None):
        self.mount = mount
        self.clock = clock or (lambda: datetime.now(UTC))
        self.keys: dict[str, Key] = {}
        self.mount_max_versions = 0  # Vault's config default: 0, which keeps 10
        self.config_readable = True
        self.mount_cas_required = False
        self.mount_delete_version_after = "0s"
        self.roles: set[str] = set()
        self.root_token = "hvs." + secrets.token_urlsafe(24)
        self.tokens: dict[str, dict[str, Any]] = {self.root_token: {"policies": ["root"]}}
        self.logins: list[dict[str, Any]] = []
        self._after_read: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.RLock()
        self.service = FakeService("vault")
        self._routes()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeVault:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    @property
    def url(self) -> str:
        return self.service.url

    # --- direct access for tests ---------------------------------------------------------

    def put(self, path: str, data: dict[str, Any], *, created: datetime | None = None) -> int:
        """Write a version as a client would (no CAS), at ``created`` (default: now)."""
        with self._lock:
            return self._write(path, data, created or self.clock())

    def latest(self, path: str) -> dict[str, Any]:
        with self._lock:
            key = self.keys[path]
            return dict(key.versions[key.current].data)

    def version(self, path: str, number: int) -> dict[str, Any] | None:
        with self._lock:
            found = self.keys[path].versions.get(number)
            return dict(found.data) if found else None

    def after_read(self, path: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, right after the next data read of ``path`` is answered."""
        with self._lock:
            self._after_read.setdefault(path, []).append(hook)

    # --- the KV v2 engine ----------------------------------------------------------------

    def _write(self, path: str, data: dict[str, Any], when: datetime) -> int:
        key = self.keys.setdefault(path, Key(created=when))
        key.current += 1
        # The key's delete_version_after, else the mount's; "0s" means never.
        after = parse_duration(key.delete_version_after)
        if not after:
            after = parse_duration(self.mount_delete_version_after)
        key.versions[key.current] = Version(dict(data), when, when + after if after else None)
        key.updated = when
        # Vault's AddVersion: the larger of the key's and the mount's max_versions.
        limit = max(key.max_versions, self.mount_max_versions) or DEFAULT_MAX_VERSIONS
        if key.current - key.oldest >= limit:
            to_delete = key.current - limit
            for number in [n for n in key.versions if n <= to_delete]:
                del key.versions[number]
            key.oldest = to_delete + 1
        return key.current

    def _deleted(self, version: Version) -> bool:
        return version.deletion is not None and version.deletion <= self.clock()

    @staticmethod
    def _deletion_time(version: Version) -> str:
        return vault_time(version.deletion) if version.deletion else ""

    def _metadata(self, path: str, key: Key) -> dict[str, Any]:
        return {
            "cas_required": key.cas_required,
            "created_time": vault_time(key.created or self.clock()),
            "current_version": key.current,
            "custom_metadata": dict(key.custom_metadata) or None,
            "delete_version_after": key.delete_version_after,
            "max_versions": key.max_versions,
            "oldest_version": key.oldest,
            "updated_time": vault_time(key.updated or self.clock()),
            "versions": {
                str(n): {
                    "created_time": vault_time(v.created),
                    "deletion_time": self._deletion_time(v),
                    "destroyed": False,
                }
                for n, v in sorted(key.versions.items())
            },
        }

    def _version_metadata(self, key: Key, number: int) -> dict[str, Any]:
        return {
            "created_time": vault_time(key.versions[number].created),
            "custom_metadata": dict(key.custom_metadata) or None,
            "deletion_time": self._deletion_time(key.versions[number]),
            "destroyed": False,
            "version": number,
        }

    # --- HTTP ----------------------------------------------------------------------------

    def _routes(self) -> None:
        service = self.service
        service.route("POST", "/v1/auth/aws/login")(self._login)
        service.route("GET", "/v1/auth/token/lookup-self")(self._lookup_self)
        service.route("GET", r"^/v1/(?P<mount>[^/]+)/data/(?P<path>.+)$")(self._read)
        service.route("POST", r"^/v1/(?P<mount>[^/]+)/data/(?P<path>.+)$")(self._post_data)
        service.route("GET", r"^/v1/(?P<mount>[^/]+)/metadata/(?P<path>.+)$")(self._get_meta)
        service.route("POST", r"^/v1/(?P<mount>[^/]+)/metadata/(?P<path>.+)$")(self._post_meta)
        service.route("GET", r"^/v1/(?P<mount>[^/]+)/config$")(self._get_config)

    @staticmethod
    def _error(status: int, *messages: str) -> Reply:
        return vault_reply(status, {"errors": list(messages)})

    def _authorized(self, request: Request) -> bool:
        token = request.header("X-Vault-Token")
        return token is not None and token in self.tokens

    def _key_request(self, request: Request) -> tuple[str | None, Reply | None]:
        if not self._authorized(request):
            return None, self._error(403, "permission denied")
        if request.params["mount"] != self.mount:
            return None, self._error(
                403, f"preflight capability check returned 403, no route for {request.path}"
            )
        return request.params["path"], None

    def _read(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        with self._lock:
            key = self.keys.get(path)
            wanted = request.query.get("version")
            number = int(wanted[0]) if wanted and wanted[0] != "0" else (key.current if key else 0)
            if key is None or number not in key.versions:
                return self._error(404)
            if self._deleted(key.versions[number]):
                # Vault answers a deleted version with its metadata and no data.
                return vault_reply(
                    404, {"data": {"data": None, "metadata": self._version_metadata(key, number)}}
                )
            reply = vault_reply(
                200,
                {
                    "request_id": secrets.token_hex(8),
                    "lease_id": "",
                    "renewable": False,
                    "lease_duration": 0,
                    "data": {
                        "data": dict(key.versions[number].data),
                        "metadata": self._version_metadata(key, number),
                    },
                },
            )
            hooks = self._after_read.pop(path, [])
        if hooks:
            # The reply is built; the hook's write lands before the client's next call.
            for hook in hooks:
                hook()
        return reply

    def _post_data(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        body = request.json() or {}
        data = body.get("data")
        if not isinstance(data, dict):
            return self._error(400, "no data provided")
        cas = (body.get("options") or {}).get("cas")
        with self._lock:
            key = self.keys.get(path)
            required = self.mount_cas_required or (key is not None and key.cas_required)
            if cas is None and required:
                return self._error(400, "check-and-set parameter required for this call")
            if cas is not None:
                current = key.current if key else 0
                if int(cas) != current:
                    return self._error(
                        400, "check-and-set parameter did not match the current version"
                    )
            number = self._write(path, data, self.clock())
            key = self.keys[path]
            return vault_reply(200, {"data": self._version_metadata(key, number)})

    def _get_config(self, request: Request) -> Reply:
        """``GET <mount>/config``: the mount's KV v2 settings (``config_readable`` False: the
        token's policy does not allow it, as a least-privilege one may not)."""
        if not self._authorized(request) or not self.config_readable:
            return self._error(403, "permission denied")
        if request.params["mount"] != self.mount:
            return self._error(404, f"no handler for route '{request.path}'")
        return vault_reply(
            200,
            {
                "data": {
                    "max_versions": self.mount_max_versions,
                    "cas_required": False,
                    "delete_version_after": "0s",
                }
            },
        )

    def _get_meta(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        with self._lock:
            key = self.keys.get(path)
            if key is None:
                return self._error(404)
            return vault_reply(200, {"data": self._metadata(path, key)})

    def _post_meta(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        body = request.json() or {}
        custom: dict[str, str] | None = None
        if body.get("custom_metadata") is not None:
            custom = {k: _as_text(v) for k, v in dict(body["custom_metadata"]).items()}
            problems = _custom_metadata_problems(custom)
            if problems:
                return self._error(400, "; ".join(problems))
        delete_after = None
        if "delete_version_after" in body:
            try:
                delete_after = go_duration(parse_duration(body["delete_version_after"]))
            except ValueError as exc:
                return self._error(400, str(exc))
        with self._lock:
            key = self.keys.setdefault(path, Key(created=self.clock()))
            # Only what the request names changes; nothing is pruned until the next write.
            if "max_versions" in body:
                key.max_versions = int(body["max_versions"])
            if "cas_required" in body:
                key.cas_required = bool(body["cas_required"])
            if delete_after is not None:
                key.delete_version_after = delete_after
            if custom is not None:
                key.custom_metadata = custom
        return vault_reply(204)

    def _login(self, request: Request) -> Reply:
        body = request.json() or {}
        problem = _iam_request_problem(body)
        if problem:
            return self._error(400, problem)
        role = body.get("role")
        if role not in self.roles:
            return self._error(400, f"entry for role {role} not found")
        token = "hvs." + secrets.token_urlsafe(24)
        headers = json.loads(base64.b64decode(body["iam_request_headers"]))
        authorization = headers.get("Authorization", [""])[0]
        access_key = authorization.split("Credential=", 1)[1].split("/", 1)[0]
        with self._lock:
            self.tokens[token] = {"policies": ["default", role], "role": role}
            self.logins.append({"role": role, "access_key": access_key})
        return vault_reply(
            200,
            {
                "auth": {
                    "client_token": token,
                    "accessor": secrets.token_hex(12),
                    "policies": ["default", role],
                    "token_policies": ["default", role],
                    "metadata": {"role": role, "account_id": "123456789012"},
                    "lease_duration": 3600,
                    "renewable": True,
                }
            },
        )

    def _lookup_self(self, request: Request) -> Reply:
        if not self._authorized(request):
            return self._error(403, "permission denied")
        token = request.header("X-Vault-Token") or ""
        info = self.tokens[token]
        return vault_reply(200, {"data": {"policies": info["policies"], "ttl": 3600, "id": token}})


def _as_text(value: Any) -> str:
    # Vault decodes custom_metadata values weakly: numbers and booleans become text.
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def _custom_metadata_problems(custom: dict[str, str]) -> list[str]:
    """Vault's ``validateCustomMetadata``: its messages, all problems at once."""
    prefix = "custom_metadata validation failed"
    if len(custom) > MAX_CUSTOM_METADATA_KEYS:
        return [
            f"{prefix}: payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys, "
            f"provided {len(custom)}"
        ]
    problems = []
    for key, value in custom.items():
        if not 0 < len(key) <= MAX_CUSTOM_METADATA_KEY_LENGTH:
            problems.append(
                f"{prefix}: length of key {key!r} is {len(key)} but must be "
                f"0 < len(key) <= {MAX_CUSTOM_METADATA_KEY_LENGTH}"
            )
        if not 0 < len(value) <= MAX_CUSTOM_METADATA_VALUE_LENGTH:
            problems.append(
                f"{prefix}: length of value for key {key!r} is {len(value)} but must be "
                f"0 < len(value) <= {MAX_CUSTOM_METADATA_VALUE_LENGTH}"
            )
    return problems


def _iam_request_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with an IAM login's signed GetCallerIdentity request, or None."""
    needed = (
        "iam_http_request_method",
        "iam_request_url",
        "iam_request_body",
        "iam_request_headers",
    )
    missing = [name for name in needed if not body.get(name)]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        url = base64.b64decode(body["iam_request_url"]).decode()
        request_body = base64.b64decode(body["iam_request_body"]).decode()
        headers = json.loads(base64.b64decode(body["iam_request_headers"]))
    except ValueError:
        return "iam_request_* must be base64"
    authorization = (headers.get("Authorization") or [""])[0]
    checks = (
        (body["iam_http_request_method"] == "POST", "iam_http_request_method must be POST"),
        ("sts" in (urlsplit(url).hostname or ""), f"iam_request_url is not STS: {url}"),
        (
            parse_qs(request_body).get("Action") == ["GetCallerIdentity"],
            "the signed request is not sts:GetCallerIdentity",
        ),
        (
            authorization.startswith("AWS4-HMAC-SHA256 Credential=")
            and "Signature=" in authorization,
            "the request is not signed with SigV4",
        ),
        (bool(headers.get("X-Amz-Date")), "the signed request has no X-Amz-Date"),
    )
    return next((problem for ok, problem in checks if not ok), None)
