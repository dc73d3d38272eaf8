"""Keeping a queue message that can never be processed, with the reason, instead of
retrying it until SQS gives up (or dropping it).

A consumer whose message is malformed hands it to ``DeadLetters.keep``: the message goes to
the queue's dead-letter queue as JSON ``{"reason", "kept_at", "message"}``, with the reason
also as a message attribute, so an operator can see why and send it back once fixed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pitcrew.aws import aws_errors
from pitcrew.errors import ConfigError
from pitcrew.observability import redact

# SQS takes 256 KiB per message; leave room for the envelope.
MAX_MESSAGE_CHARS = 200_000


class DeadLetters:
    """Writes messages to one dead-letter queue, named by an environment variable (read on
    first use) or given; ``client`` defaults to ``pitcrew.aws.client("sqs")``."""

    def __init__(
        self,
        queue_url: str | None = None,
        client: Any | None = None,
        *,
        env_var: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._queue_url = queue_url
        self._env_var = env_var
        self._client = client
        self._now = now

    @classmethod
    def from_env(cls, env_var: str) -> DeadLetters:
        return cls(env_var=env_var)

    @property
    def queue_url(self) -> str:
        url = self._queue_url or (os.environ.get(self._env_var) if self._env_var else None)
        if not url:
            raise ConfigError(
                [f"environment variable {self._env_var} is not set (the dead-letter queue)"]
            )
        return url

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("sqs")
        return self._client

    def keep(self, message: str, *, reason: str) -> None:
        """Send ``message`` to the dead-letter queue with ``reason``. Raises ``ServiceError``
        when it cannot be written: the caller must then fail, so the message is retried."""
        kept = message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS]
        body = {
            "reason": reason,
            "kept_at": self._now().isoformat().replace("+00:00", "Z"),
            "message": kept,
            "truncated": len(kept) < len(message),
        }
        with aws_errors("sqs"):
            self.client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=redact(json.dumps(body, ensure_ascii=False)),
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": redact(reason)[:1000]}
                },
            )
