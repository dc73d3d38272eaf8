"""Reads from a Kubernetes API server through the official client, as raw JSON.

``KubeReader`` is pitcrew's one wrapper around the kubernetes library: every call asks for the
undeserialized body (``_preload_content=False``), so objects stay the API server's own JSON
(camelCase, ``metadata``/``spec``/``status``) and the client's model classes are never built;
every call has a timeout inside an overall time budget; and every library error leaves as a
pitcrew error (``kube_errors``), the cause kept.

    ClusterUnreachableError   no answer at all: DNS, refused, TLS, timeout, 401 (stop trying)
    BudgetSpentError          the overall time budget is spent (stop trying)
    ForbiddenError            403: pitcrew's identity may not read this
    NotFoundError             404: no such object
    TransientServiceError     429 and 5xx
    ServiceError              anything else the API server refused
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pitcrew.errors import NotFoundError, ServiceError, TransientServiceError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE = "kubernetes"
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
BUDGET_S = 25.0


class ClusterUnreachableError(TransientServiceError):
    """The API server could not be reached or refused pitcrew's credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, message)


class BudgetSpentError(TransientServiceError):
    """The time allowed for reading the cluster is spent; nothing more is asked."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, message)


class ForbiddenError(ServiceError):
    """The API server answered 403: pitcrew's identity may not read the object."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, message)


def _status_message(body: str | bytes | None) -> str | None:
    """The ``message`` of a ``Status`` object the API server sent with an error."""
    if not body:
        return None
    try:
        status = json.loads(body)
    except ValueError:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return text.strip()[:300] or None
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else None


def _connection_problem(exc: BaseException) -> str:
    """Plain words for why a connection failed (urllib3's reason, unwrapped)."""
    from urllib3 import exceptions as u3

    reason: BaseException = exc
    while isinstance(reason, u3.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    # Most specific first: NameResolutionError is a NewConnectionError, which urllib3 still
    # derives from ConnectTimeoutError.
    if isinstance(reason, u3.NameResolutionError):
        return f"cannot resolve the API server's host name {reason.conn.host}"
    if isinstance(reason, u3.NewConnectionError):
        cause = reason.__cause__ or reason.__context__
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by the API server at {reason.conn.host}:{reason.conn.port}"
        return f"cannot connect to the API server: {cause or reason}"
    described: tuple[tuple[type[BaseException], str], ...] = (
        (u3.ConnectTimeoutError, "timed out connecting to the API server"),
        (u3.ReadTimeoutError, "the API server did not answer in time (read timeout)"),
        (u3.SSLError, "TLS handshake with the API server failed"),
        (u3.ProtocolError, "the connection to the API server broke"),
    )
    for cls, text in described:
        if isinstance(reason, cls):
            return f"{text}: {reason}" if cls in (u3.SSLError, u3.ProtocolError) else text
    return f"cannot reach the API server: {reason}"


def _from_status(status: int, detail: str, what: str) -> ServiceError | NotFoundError:
    if status == 0:  # the client's wrapper around an SSL error
        return ClusterUnreachableError(f"{what}: {detail}")
    if status == 401:
        return ClusterUnreachableError(
            f"{what}: the API server rejected pitcrew's credentials (401 Unauthorized)"
        )
    if status == 403:
        return ForbiddenError(f"{what}: forbidden (403): {detail}")
    if status == 404:
        return NotFoundError(f"{SERVICE}: {what}: not found: {detail}")
    if status == 429 or status >= 500:
        return TransientServiceError(SERVICE, f"{what}: HTTP {status}: {detail}")
    return ServiceError(SERVICE, f"{what}: HTTP {status}: {detail}")


def translate(exc: Exception, what: str) -> ServiceError | NotFoundError:
    """The pitcrew error for an exception the kubernetes library (or urllib3 under it) raised
    while doing ``what`` (e.g. ``get Pod payments/api-1``)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        detail = _status_message(exc.body) or exc.reason or f"HTTP {status}"
        return _from_status(status, str(detail), what)
    if isinstance(exc, HTTPError | OSError):
        return ClusterUnreachableError(f"{what}: {_connection_problem(exc)}")
    return ServiceError(SERVICE, f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Run kubernetes client calls, turning the library's exceptions into pitcrew's."""
    from kubernetes.client.exceptions import OpenApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except (OpenApiException, HTTPError, OSError, ValueError) as exc:
        raise translate(exc, what) from exc


# Kind -> (API group attribute, method suffix, namespaced). ``read_<suffix>`` and
# ``list_<suffix>`` are the client's method names.
_KINDS: Mapping[str, tuple[str, str, bool]] = {
    "Pod": ("core", "pod", True),
    "Event": ("core", "event", True),
    "PersistentVolumeClaim": ("core", "persistent_volume_claim", True),
    "Node": ("core", "node", False),
    "Deployment": ("apps", "deployment", True),
    "ReplicaSet": ("apps", "replica_set", True),
    "StatefulSet": ("apps", "stateful_set", True),
    "DaemonSet": ("apps", "daemon_set", True),
    "Job": ("batch", "job", True),
    "CronJob": ("batch", "cron_job", True),
}


def readable(kind: str) -> bool:
    """True for the kinds ``KubeReader`` can get and list."""
    return kind in _KINDS


class KubeReader:
    """Gets and lists objects and reads pod logs, as JSON, on one ``ApiClient``.

    ``asked`` counts the requests sent; ``answered`` turns true once the API server has
    answered any of them with a 2xx: the cluster is then reachable, whatever else fails.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        budget_s: float = BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._apis: dict[str, Any] = {
            "core": client.CoreV1Api(api_client),
            "apps": client.AppsV1Api(api_client),
            "batch": client.BatchV1Api(api_client),
        }
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clock = clock
        self._deadline = clock() + budget_s
        self.asked = 0
        self.answered = False

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        group, suffix, namespaced = _KINDS[kind]
        what = f"get {kind} {namespace}/{name}" if namespaced else f"get {kind} {name}"
        if namespaced:
            method = getattr(self._apis[group], f"read_namespaced_{suffix}")
            body = self._call(what, method, name, namespace)
        else:
            body = self._call(what, getattr(self._apis[group], f"read_{suffix}"), name)
        return json_object(body, what)

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A ``<Kind>List`` (``items``, ``metadata.continue`` when there is more); in one
        namespace, or in all of them (or cluster-scoped) when ``namespace`` is None."""
        group, suffix, namespaced = _KINDS[kind]
        where = f" in {namespace}" if namespace else ""
        what = f"list {kind}{where}"
        options: dict[str, Any] = {}
        if label_selector:
            options["label_selector"] = label_selector
            what += f" ({label_selector})"
        if field_selector:
            options["field_selector"] = field_selector
            what += f" ({field_selector})"
        if limit:
            options["limit"] = limit
        api = self._apis[group]
        if namespace and namespaced:
            body = self._call(what, getattr(api, f"list_namespaced_{suffix}"), namespace, **options)
        elif namespaced:
            body = self._call(what, getattr(api, f"list_{suffix}_for_all_namespaces"), **options)
        else:
            body = self._call(what, getattr(api, f"list_{suffix}"), **options)
        return json_object(body, what)

    def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        previous: bool = False,
        tail_lines: int = 2000,
        limit_bytes: int = 512 * 1024,
    ) -> str:
        """The container's log (the previous instance's with ``previous``), last lines only."""
        which = "previous log" if previous else "log"
        what = f"read {which} of {namespace}/{pod} container {container}"
        body = self._call(
            what,
            self._apis["core"].read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
        )
        return body.decode("utf-8", errors="replace")

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        remaining = self._deadline - self._clock()
        if remaining < 0.5:
            raise BudgetSpentError(f"{what}: skipped, the time budget is spent")
        timeout = (min(self._connect_timeout, remaining), min(self._read_timeout, remaining))
        self.asked += 1
        with kube_errors(what):
            response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            try:
                body: bytes = response.data
            finally:
                response.release_conn()
        self.answered = True
        return body


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """An API server answer as the JSON object it must be (``ServiceError`` otherwise)."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ServiceError(SERVICE, f"{what}: the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise ServiceError(SERVICE, f"{what}: the answer is not a JSON object")
    return document


def selector_string(selector: Mapping[str, Any] | None) -> str | None:
    """A ``LabelSelector`` (``matchLabels``, ``matchExpressions``) as the query string the API
    takes (``app=api,tier in (web,api)``); None when it selects nothing (or is missing)."""
    if not selector:
        return None
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or ():
        key = expression.get("key")
        operator = expression.get("operator")
        values = ",".join(expression.get("values") or ())
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None
