"""The API function behind a local API Gateway: chalice's local server on 127.0.0.1.

Chalice's ``LocalGateway`` turns each HTTP request into the API Gateway proxy event and the
response back into HTTP, as ``chalice local`` does. The call itself goes through the
function's ``FunctionRunner``, so the handler runs with the template's Environment, Timeout and
a Lambda context, exactly as on any other trigger.

API Gateway only routes what the template declares: a Chalice route that is not an ``Api``
event of the function (nor under a ``{proxy+}`` one) answers 403 ``Missing Authentication
Token`` here as it would in AWS, and is listed in the start-up warnings.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pitcrew.local.emulator import HOST
from pitcrew.local.errors import LocalRuntimeError, PortInUseError

if TYPE_CHECKING:
    from pitcrew.local.functions import FunctionRunner

log = logging.getLogger("pitcrew.local")

_API_EVENT_TYPES = ("Api", "HttpApi")
_BAD_GATEWAY = {
    "statusCode": 502,
    "headers": {"Content-Type": "application/json"},
    "multiValueHeaders": {},
    "body": json.dumps({"message": "Internal server error"}),
}


def declared_routes(runner: FunctionRunner) -> list[tuple[str, str]] | None:
    """The (path, METHOD) pairs the template routes to the function (``ANY`` for any
    method); None when it declares no API event at all."""
    routes = []
    for event in runner.function.events.values():
        if event.get("Type") not in _API_EVENT_TYPES:
            continue
        properties = event.get("Properties") or {}
        path = str(properties.get("Path", "/{proxy+}"))
        method = str(properties.get("Method", "ANY")).upper()
        routes.append(
            (path, "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method)
        )
    return routes or None


def _covers(declared_path: str, declared_method: str, path: str, method: str) -> bool:
    if declared_method not in ("ANY", method):
        return False
    if declared_path == path:
        return True
    if declared_path.endswith("/{proxy+}"):
        prefix = declared_path[: -len("{proxy+}")]
        return path.startswith(prefix) and len(path) > len(prefix)
    return False


def routed(
    app_routes: dict[str, dict[str, Any]], declared: list[tuple[str, str]] | None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The app's routes API Gateway would reach, and one line per route it would not."""
    if declared is None:
        return app_routes, []
    kept: dict[str, dict[str, Any]] = {}
    missing = []
    for path, methods in app_routes.items():
        for method, entry in methods.items():
            if any(_covers(dp, dm, path, method) for dp, dm in declared):
                kept.setdefault(path, {})[method] = entry
            else:
                missing.append(f"{method} {path}")
    return kept, missing


@dataclass(frozen=True)
class Stage:
    """Where the API is deployed: what API Gateway writes into ``requestContext``."""

    name: str = "Prod"
    api_id: str = "local"
    account_id: str = "123456789012"


def api_gateway_event(local_event: dict[str, Any], stage: Stage, host: str) -> dict[str, Any]:
    """The REST API (v1) Lambda proxy event for a request, from chalice's local event (which
    carries only what Chalice reads, and the body as bytes)."""
    context = local_event["requestContext"]
    method, path, resource = context["httpMethod"], context["path"], context["resourcePath"]
    headers: dict[str, str] = local_event.get("headers") or {}
    multi_query = local_event.get("multiValueQueryStringParameters")
    raw = local_event.get("body")
    body: str | None = raw if isinstance(raw, str) or raw is None else None
    encoded = bool(local_event.get("isBase64Encoded"))
    if isinstance(raw, bytes):
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode("ascii"), True
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": (
            {k: v[-1] for k, v in multi_query.items()} if multi_query else None
        ),
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": local_event.get("pathParameters") or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage.name}{path}",
            "accountId": stage.account_id,
            "protocol": "HTTP/1.1",
            "stage": stage.name,
            "domainPrefix": host.split(":", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {
                "sourceIp": context.get("identity", {}).get("sourceIp", HOST),
                "userAgent": headers.get("user-agent"),
            },
            "domainName": host,
            "apiId": stage.api_id,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


class _GatewayTarget:
    """What chalice's gateway calls: the app's declared routes, invoked through the runner."""

    def __init__(
        self,
        app: Any,
        runner: FunctionRunner,
        routes: dict[str, dict[str, Any]],
        stage: Stage,
        host: str,
    ) -> None:
        self._app = app
        self._runner = runner
        self._stage = stage
        self._host = host
        self.routes = routes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def __call__(self, local_event: dict[str, Any], _chalice_context: Any) -> Any:
        event = api_gateway_event(local_event, self._stage, self._host)
        trigger = f"api {event['httpMethod']} {event['path']}"
        invocation = self._runner.invoke(event, trigger=trigger)
        if invocation.ok and isinstance(invocation.payload, dict):
            payload = dict(invocation.payload)
            payload.setdefault("headers", {})
            payload.setdefault("multiValueHeaders", {})
            return payload
        # What API Gateway answers when the Lambda proxy integration fails.
        return dict(_BAD_GATEWAY)


def _quiet_handler_class() -> Any:
    from chalice.local import ChaliceRequestHandler

    class QuietHandler(ChaliceRequestHandler):
        """Chalice's request handler, with its access log sent to the runtime's logger."""

        def log_message(self, format: str, *args: Any) -> None:
            log.info("api %s", format % args)

    return QuietHandler


class ApiServer:
    """Serves the API function on ``127.0.0.1:port`` (``port=0`` picks a free one)."""

    def __init__(
        self, runner: FunctionRunner, *, port: int = 8000, stage: Stage | None = None
    ) -> None:
        self.runner = runner
        self.stage = stage or Stage()
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.warnings: list[str] = []

    @property
    def port(self) -> int:
        if self._server is None:
            raise LocalRuntimeError("the API server is not bound")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def bind(self) -> None:
        """Take the port now, so that a clash is reported before anything else starts."""
        if self._server is not None:
            return
        from chalice.local import ThreadedHTTPServer

        try:
            self._server = ThreadedHTTPServer((HOST, self._requested_port), _quiet_handler_class())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError("API", self._requested_port, "--port") from exc
            raise LocalRuntimeError(
                f"cannot listen on {HOST}:{self._requested_port}: {exc.strerror}"
            ) from exc

    def start(self) -> None:
        """Load the API function (its cold start) and serve its declared routes."""
        from chalice.app import Chalice
        from chalice.config import Config
        from chalice.local import CustomLocalChalice, LocalChalice

        self.bind()
        failure = self.runner.load()
        if failure is not None:
            self.stop()
            raise LocalRuntimeError(
                f"the {self.runner.name} function cannot start: "
                f"{failure.error_type}: {failure.error_message}"
            )
        app = self.runner.handler_object
        if not isinstance(app, Chalice):
            self.stop()
            raise LocalRuntimeError(
                f"the handler {self.runner.function.handler} of {self.runner.name} "
                "is not a Chalice app"
            )
        # As `chalice local` does: requests overlap, so the current request is per thread.
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice

        declared = declared_routes(self.runner)
        routes, unrouted = routed(app.routes, declared)
        logical_id = self.runner.function.logical_id
        if declared is None:
            self.warnings.append(
                f"{logical_id} has no Api event in the template: serving every Chalice route"
            )
        self.warnings.extend(
            f"route {route} is not an Api event of {logical_id} in the template: API Gateway "
            "would answer 403, and so does the local API"
            for route in unrouted
        )
        fn = self.runner.function
        config = Config.create(
            app_name=fn.function_name, lambda_timeout=fn.timeout, lambda_memory_size=fn.memory
        )
        handler_class = self._server.RequestHandlerClass
        self._server.RequestHandlerClass = functools.partial(
            handler_class,
            app_object=_GatewayTarget(app, self.runner, routes, self.stage, f"{HOST}:{self.port}"),
            config=config,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="api-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._server = None
