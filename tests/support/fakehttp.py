"""A fake HTTP service on 127.0.0.1 for integration tests: real sockets, real HTTP.

Fakes of GitHub, Kubernetes, Vault, an LLM or Slack are built on ``FakeService``: register
handlers per method and path pattern, point the code under test at ``service.url``, then
assert on ``service.requests``. Handlers return a ``Reply``; an unmatched request gets a
404 in the JSON shape most APIs use, and is recorded like the others.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Reply:
    """What a handler answers."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            payload = self.body
        elif isinstance(self.body, str):
            payload = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif self.body is None:
            payload = b""
        else:
            payload = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return payload, headers


Handler = Callable[[Request], Reply]


class FakeService:
    """An HTTP server on an ephemeral 127.0.0.1 port, answering from registered handlers."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.requests: list[Request] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes ---------------------------------------------------------------------------
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler; ``pattern`` is a path with ``{name}`` placeholders, or a regex
        if it starts with ``^``."""
        regex = re.compile(
            pattern
            if pattern.startswith("^")
            else "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        )

        def register(handler: Handler) -> Handler:
            with self._lock:
                # Later registrations win, so a test can override a default handler.
                self._routes.insert(0, (method.upper(), regex, handler))
            return handler

        return register

    def reply(self, method: str, pattern: str, reply: Reply) -> None:
        """Register a fixed reply."""
        self.route(method, pattern)(lambda _request: reply)

    def received(self, method: str, path_prefix: str = "") -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method.upper() and r.path.startswith(path_prefix)
            ]

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "the fake service is not started"
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> FakeService:
        service = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers=dict(self.headers.items()),
                    body=self.rfile.read(length) if length else b"",
                )
                reply = service._dispatch(request)
                payload, headers = reply.encode()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            routes = list(self._routes)
        for method, regex, handler in routes:
            match = regex.match(request.path)
            if method == request.method and match:
                request.params = match.groupdict()
                return handler(request)
        return Reply(404, {"message": "Not Found", "path": request.path})


@contextmanager
def fake_service(name: str = "fake") -> Iterator[FakeService]:
    """``with fake_service("github") as gh: ...``: started, and stopped afterwards."""
    service = FakeService(name).start()
    try:
        yield service
    finally:
        service.stop()
