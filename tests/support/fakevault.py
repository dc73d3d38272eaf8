"""A fake HashiCorp Vault on 127.0.0.1: the KV v2 secrets engine and the AWS IAM login, as
Vault's HTTP API documentation describes them, for the real ``hvac`` client.

- ``GET/POST /v1/{mount}/data/{path}``: read (latest or ``?version=N``) and write, with
  ``options.cas``: 0 creates only, N writes only if N is the current version, else 400
  "check-and-set parameter did not match the current version"; a key (or the mount) with
  ``cas_required`` refuses writes without it. Versions beyond ``max_versions`` (the key's,
  else the mount's, default 10) are pruned, oldest first.
- ``GET/POST /v1/{mount}/metadata/{path}``: ``current_version``, ``oldest_version``,
  ``versions`` with ``created_time``, ``max_versions``, ``cas_required``,
  ``delete_version_after``, ``custom_metadata`` (a POST replaces only the fields it names).
- ``POST /v1/auth/aws/login``: the signed ``sts:GetCallerIdentity`` request of the IAM auth
  method (``iam_http_request_method``, base64 ``iam_request_url`` / ``iam_request_body`` /
  ``iam_request_headers``), checked for shape and a SigV4 ``Authorization`` header, and the
  ``role`` against the roles the test configured.
- ``GET /v1/auth/token/lookup-self``; every other call needs a valid ``X-Vault-Token``.

Errors have Vault's shape: ``{"errors": [...]}``. ``after_read`` runs a test's hook right
after a data read is answered: a concurrent writer, racing the code under test.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.fakehttp import FakeService, Reply, Request


def vault_time(moment: datetime) -> str:
    """Vault's RFC 3339 timestamps, with nanoseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@dataclass
class Version:
    data: dict[str, Any]
    created: datetime


@dataclass
class Key:
    versions: dict[int, Version] = field(default_factory=dict)
    current: int = 0
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
        self.mount_max_versions = 10
        self.mount_cas_required = False
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
        key.versions[key.current] = Version(dict(data), when)
        key.updated = when
        limit = key.max_versions or self.mount_max_versions
        while len(key.versions) > limit:
            del key.versions[min(key.versions)]
        return key.current

    def _metadata(self, path: str, key: Key) -> dict[str, Any]:
        return {
            "cas_required": key.cas_required,
            "created_time": vault_time(key.created or self.clock()),
            "current_version": key.current,
            "custom_metadata": dict(key.custom_metadata) or None,
            "delete_version_after": key.delete_version_after,
            "max_versions": key.max_versions,
            "oldest_version": min(key.versions) if key.versions else 0,
            "updated_time": vault_time(key.updated or self.clock()),
            "versions": {
                str(n): {
                    "created_time": vault_time(v.created),
                    "deletion_time": "",
                    "destroyed": False,
                }
                for n, v in sorted(key.versions.items())
            },
        }

    def _version_metadata(self, key: Key, number: int) -> dict[str, Any]:
        return {
            "created_time": vault_time(key.versions[number].created),
            "custom_metadata": dict(key.custom_metadata) or None,
            "deletion_time": "",
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

    @staticmethod
    def _error(status: int, *messages: str) -> Reply:
        return Reply(status, {"errors": list(messages)})

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
            reply = Reply(
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
            return Reply(200, {"data": self._version_metadata(key, number)})

    def _get_meta(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        with self._lock:
            key = self.keys.get(path)
            if key is None:
                return self._error(404)
            return Reply(200, {"data": self._metadata(path, key)})

    def _post_meta(self, request: Request) -> Reply:
        path, refused = self._key_request(request)
        if refused is not None or path is None:
            return refused or self._error(400)
        body = request.json() or {}
        with self._lock:
            key = self.keys.setdefault(path, Key(created=self.clock()))
            if "max_versions" in body:
                key.max_versions = int(body["max_versions"])
            if "cas_required" in body:
                key.cas_required = bool(body["cas_required"])
            if "delete_version_after" in body:
                key.delete_version_after = str(body["delete_version_after"])
            if "custom_metadata" in body:
                custom = body["custom_metadata"] or {}
                if not all(isinstance(v, str) for v in custom.values()):
                    return self._error(400, "custom_metadata values must be strings")
                key.custom_metadata = dict(custom)
            limit = key.max_versions or self.mount_max_versions
            while len(key.versions) > limit:
                del key.versions[min(key.versions)]
        return Reply(204)

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
        return Reply(
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
        return Reply(200, {"data": {"policies": info["policies"], "ttl": 3600, "id": token}})


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
