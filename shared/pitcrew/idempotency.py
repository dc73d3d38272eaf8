"""Process-once guarantees for at-least-once triggers (EventBridge, SQS, webhooks retried by
their senders), with powertools Idempotency on the stack's ``IdempotencyTable``.

A record expires after ``expires_after_seconds`` (DynamoDB TTL on ``expiration``), so the
table does not grow without bound.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)

from pitcrew.aws import client
from pitcrew.stores import table_name

DAY_S = 24 * 60 * 60


def persistence_layer() -> DynamoDBPersistenceLayer:
    """The idempotency store: ``IDEMPOTENCY_TABLE``, through pitcrew's client factory."""
    return DynamoDBPersistenceLayer(
        table_name=table_name("IDEMPOTENCY_TABLE"), boto3_client=client("dynamodb")
    )


def once_per(key_path: str, *, expires_after_seconds: int = DAY_S) -> IdempotencyConfig:
    """Treat events with the same value at ``key_path`` (JMESPath) as one."""
    return IdempotencyConfig(
        event_key_jmespath=key_path,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
    )
