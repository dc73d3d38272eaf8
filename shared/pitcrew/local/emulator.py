"""The embedded AWS emulator: moto in server mode, in this process, on 127.0.0.1 only.

It listens on port 4566 by default, the port LocalStack uses, so ``AWS_ENDPOINT_URL``,
``localstack-client`` and ``awslocal``-style tools all reach it. Step Functions executions run
through moto's interpreter of the real definitions (its ``execute_state_machine`` setting).
Because it runs in-process, the local runtime can hook moto's Lambda backend to reach the
in-process functions (``pitcrew.local.bridge``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from typing import Any

from pitcrew.local.errors import LocalRuntimeError, PortInUseError

HOST = "127.0.0.1"
DEFAULT_PORT = 4566
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Credentials that only the emulator accepts; they never reach AWS.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

log = logging.getLogger("pitcrew.local")


class NotEmulated(logging.Filter):
    """moto answers an action it does not implement with a 500, and werkzeug logs that with
    moto's whole traceback (in the message text): one line says it instead (the caller sees
    the 500)."""

    _MARK = "NotImplementedError: "

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Error on request") and self._MARK in text:
            reason = text.rsplit(self._MARK, 1)[1].strip().splitlines()[0]
            record.msg, record.args = "AWS emulator: %s (moto answered 500)", (reason,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def ensure_port_free(port: int, what: str, option: str) -> None:
    """Raise ``PortInUseError`` when ``127.0.0.1:port`` cannot be bound (0: any port)."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((HOST, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(what, port, option) from exc
        raise LocalRuntimeError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()


class Emulator:
    """moto's server on ``127.0.0.1:port`` (``port=0`` picks a free one), started by
    ``start()`` and stopped, with its state reset, by ``stop()``."""

    def __init__(self, port: int = DEFAULT_PORT, *, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._saved_sfn_setting: Any = None
        self._saved_moto_port: str | None = None
        self._clients: dict[str, Any] = {}
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._server is None:
            raise LocalRuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Bind the port (raising ``PortInUseError`` when it is taken) and serve."""
        from moto.core.config import default_user_config
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # moto logs every request through werkzeug's logger; the runtime logs what matters.
        werkzeug_log = logging.getLogger("werkzeug")
        werkzeug_log.setLevel(logging.WARNING)
        if not any(isinstance(f, NotEmulated) for f in werkzeug_log.filters):
            werkzeug_log.addFilter(NotEmulated())
        # werkzeug reports a taken port by printing and exiting; ask first.
        ensure_port_free(self._requested_port, "AWS emulator", "--aws-port")
        app = DomainDispatcherApplication(create_backend_app)
        try:
            # Bound here rather than in the server thread (as ThreadedMotoServer does), so a
            # taken port is an error now instead of a start() that never returns.
            self._server = make_server(
                HOST, self._requested_port, app, threaded=True, request_handler=MotoRequestHandler
            )
        except SystemExit as exc:  # werkzeug's way of saying the port was taken meanwhile
            raise PortInUseError("AWS emulator", self._requested_port, "--aws-port") from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError("AWS emulator", self._requested_port, "--aws-port") from exc
            raise LocalRuntimeError(
                f"cannot listen on {HOST}:{self._requested_port}: {exc.strerror}"
            ) from exc

        sfn = default_user_config.setdefault("stepfunctions", {})
        self._saved_sfn_setting = sfn.get("execute_state_machine")
        sfn["execute_state_machine"] = True
        # moto's Step Functions interpreter calls other services (Lambda, SQS, ...) through
        # http://localhost:$MOTO_PORT, i.e. back into this server.
        self._saved_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(self.port)

        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-emulator", daemon=True
        )
        self._thread.start()
        log.debug("AWS emulator listening on %s", self.endpoint_url)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` that talks to this emulator (cached)."""
        found = self._clients.get(service)
        if found is not None:
            return found
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                if self._session is None:
                    import boto3

                    # One session for every client: it parses botocore's data files once.
                    # Sessions are not thread-safe, hence the lock; clients are.
                    self._session = boto3.session.Session(region_name=self.region, **CREDENTIALS)
                self._clients[service] = self._session.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30),
                )
            return self._clients[service]

    def stop(self) -> None:
        """Stop serving, close the port and forget every resource (moto's state is global
        to the process, so the next emulator starts empty)."""
        if self._server is None:
            return
        from moto.core.config import default_user_config
        from moto.moto_api._internal import moto_api_backend

        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        self._clients.clear()
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = bool(
            self._saved_sfn_setting
        )
        if self._saved_moto_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._saved_moto_port
        moto_api_backend.reset()
