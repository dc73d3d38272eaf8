"""Logging, metrics and tracing for every function, and the guarantee that secrets never
reach a log line.

Each function calls ``instrument(name)`` once at module level and gets a powertools
``Logger`` (JSON, correlation ids), ``Metrics`` (EMF, namespace ``pitcrew``) and ``Tracer``.
Every secret value pitcrew resolves is passed to ``register_secret``; from then on the
formatter of every pitcrew logger, and a filter on the root logger's handlers, replace it
with ``***`` wherever it appears. Credentials in URLs (``https://user:pass@host``) are
redacted the same way without registration.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from pitcrew.records import frozen

REDACTED = "***"
# Shorter values would redact ordinary words; no real credential is this short.
MIN_SECRET_LENGTH = 4
# Bounded repeats: a long run of letters must not make the match quadratic.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<user>[^/\s:@]{1,256}):[^/\s@]{1,1024}@"
)

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so that it is redacted from every log line from now on."""
    global _pattern  # noqa: PLW0603 - one process-wide registry, rebuilt on change
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets.add(value)
        # Longest first, so a secret that contains another is redacted whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secrets() -> None:
    """Clear the registry (tests only)."""
    global _pattern  # noqa: PLW0603
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret and every URL password replaced by ``***``."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _URL_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """The powertools JSON formatter, redacting the finished line (message, extra keys,
    exception text alike)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class SecretFilter(logging.Filter):
    """For handlers pitcrew does not format itself (the Lambda runtime's, libraries'):
    renders the message once and redacts it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# botocore logs whole request and response bodies at DEBUG, before any caller could
# register the values in them for redaction (the configuration's own secret: and ssm:
# references are read that way): those records are dropped when they carry a Secrets
# Manager value or an SSM parameter's.
_WIRE_LOGGERS = ("botocore.endpoint", "botocore.parsers")
_VALUE_FIELDS = ("SecretString", "SecretBinary", "RandomPassword", "'Parameter'", '"Parameter"')
_filters_lock = threading.Lock()


class SecretWireFilter(logging.Filter):
    """Drops botocore's DEBUG wire records (request params, response bodies) that hold a
    Secrets Manager or SSM parameter value."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot render says nothing either
            return False
        return not any(name in text for name in _VALUE_FIELDS)


def keep_values_out_of_wire_logs() -> None:
    """Install ``SecretWireFilter`` on botocore's wire loggers (idempotent)."""
    with _filters_lock:
        for name in _WIRE_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, SecretWireFilter) for f in logger.filters):
                logger.addFilter(SecretWireFilter())


def protect_root_logger() -> None:
    """Attach the secret filter to every handler of the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


@frozen
class Instruments:
    """What a function's module creates once: its logger, metrics and tracer."""

    logger: Logger
    metrics: Metrics
    tracer: Tracer


def instrument(
    function: str, *, traced: Sequence[str] = ("botocore",), **logger_options: Any
) -> Instruments:
    """Logger, Metrics and Tracer for one pitcrew function (``service`` is its name).

    ``traced`` names the libraries X-Ray patches: by default powertools patches every one it
    supports that is installed, importing each at cold start whether the function uses it
    or not. A function names what it calls (``("botocore", "httpx")``). botocore, and any
    library already imported, is patched now; another is patched when something first
    imports it, so a library the function does not need this time is never loaded for
    tracing alone."""
    protect_root_logger()
    keep_values_out_of_wire_logs()
    logger = Logger(service=function, logger_formatter=RedactingFormatter(), **logger_options)
    metrics = Metrics(namespace="pitcrew", service=function)
    now = tuple(name for name in traced if name == "botocore" or name in sys.modules)
    tracer = Tracer(service=function, patch_modules=now or ("botocore",))
    if not tracer.disabled:
        for name in traced:
            if name not in now:
                _patch_when_imported(tracer, name)
    return Instruments(logger=logger, metrics=metrics, tracer=tracer)


def _patch_when_imported(tracer: Tracer, name: str) -> None:
    # wrapt is aws_xray_sdk's own dependency (it patches with it) and runs the hook at once
    # if the library is imported in the meantime.
    import wrapt

    wrapt.register_post_import_hook(lambda _module: tracer.patch([name]), name)
