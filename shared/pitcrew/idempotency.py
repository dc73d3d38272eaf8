"""Process-once guarantees for at-least-once triggers (EventBridge, SQS, webhooks retried by
their senders), with powertools Idempotency on the stack's ``IdempotencyTable``.

A record expires after ``expires_after_seconds`` (DynamoDB TTL on ``expiration``), so the
table does not grow without bound.

The DynamoDB client is made on the first idempotent call, not when the handler module is
imported (``bench/coldstart.py``): the first invocation pays the ~100 ms a first botocore
client costs instead of the import, so a cold start costs the same in all, and warm
invocations reuse the client either way.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.shared import user_agent
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)

from pitcrew.stores import table_name

DAY_S = 24 * 60 * 60


class _NoClientYet:
    """Stands in for the client while powertools' constructor runs (it only registers a
    user-agent hook on it, which the real client gets when it is made)."""

    class meta:  # mirrors botocore's client.meta
        class events:
            @staticmethod
            def register(*_args: Any, **_kwargs: Any) -> None:
                return None


class DeferredDynamoDBPersistenceLayer(DynamoDBPersistenceLayer):
    """powertools' DynamoDB persistence layer with its client made on first use, through
    pitcrew's client factory (``pitcrew.aws.client``), unless one is given."""

    def __init__(self, table_name: str, *, client: Any | None = None, **options: Any) -> None:
        self._client = client
        self._constructed = False
        super().__init__(table_name=table_name, boto3_client=_NoClientYet(), **options)
        self._constructed = True

    @property
    def client(self) -> Any:
        if not self._constructed:
            return _NoClientYet()
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("dynamodb")
            user_agent.register_feature_to_client(client=self._client, feature="idempotency")
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        if not isinstance(value, _NoClientYet):
            self._client = value


def persistence_layer(client: Any | None = None) -> DynamoDBPersistenceLayer:
    """The idempotency store: ``IDEMPOTENCY_TABLE``, through pitcrew's client factory."""
    return DeferredDynamoDBPersistenceLayer(table_name("IDEMPOTENCY_TABLE"), client=client)


def once_per(key_path: str, *, expires_after_seconds: int = DAY_S) -> IdempotencyConfig:
    """Treat events with the same value at ``key_path`` (JMESPath) as one."""
    return IdempotencyConfig(
        event_key_jmespath=key_path,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
    )
