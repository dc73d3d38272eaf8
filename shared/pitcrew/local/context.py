"""The Lambda context object handed to a local invocation, shaped like the Python runtime's.

Attribute names and types follow ``awslambdaric``'s ``LambdaContext`` (the real runtime):
``memory_limit_in_mb`` is the string form of the memory size, as it is in Lambda.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


@dataclass(frozen=True)
class ClientContext:
    client: Any = None
    custom: dict[str, Any] | None = None
    env: dict[str, Any] | None = None


class LambdaContext:
    """What a handler receives as ``context``: identity of the function and of the request,
    and the time left before the function's timeout."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        timeout_s: float,
        log_group_name: str,
        log_stream_name: str,
        aws_request_id: str | None = None,
        client_context: ClientContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = CognitoIdentity()
        self.client_context = client_context
        self.tenant_id: str | None = None
        self._clock = clock
        self._deadline_ms = int(clock() * 1000) + int(timeout_s * 1000)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out (never negative)."""
        return max(self._deadline_ms - int(self._clock() * 1000), 0)

    def log(self, message: str) -> None:
        print(message, end="" if message.endswith("\n") else "\n", flush=True)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, "
            f"aws_request_id={self.aws_request_id!r})"
        )


@dataclass
class LogStream:
    """Names a function's log group and stream the way Lambda does."""

    function_name: str
    version: str = "$LATEST"
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def stream(self) -> str:
        return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{self.version}]{self.instance}"
