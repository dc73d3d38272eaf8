"""Typed DynamoDB stores: plain Python values in and out, pitcrew errors on failure.

``Table`` wraps one DynamoDB table behind the low-level client (numbers come back as
``int``/``float``, never ``Decimal``; a failed condition is a ``ConflictError``).
``Store`` puts a record type on top: a record class says how it maps to an item
(``to_item``/``from_item``) and each capability declares its own (``IncidentStore``,
``CostHistory``...). Table names come from the environment variables the template sets
(``INCIDENTS_TABLE``, ``COSTS_TABLE``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from pitcrew.aws import aws_errors
from pitcrew.errors import ConfigError

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def table_name(env_var: str) -> str:
    """The physical name of a table, from the environment variable the template sets."""
    name = os.environ.get(env_var)
    if not name:
        raise ConfigError([f"environment variable {env_var} is not set (the table's name)"])
    return name


def _to_dynamo(value: Any) -> Any:
    # DynamoDB numbers are Decimals; floats are refused by boto3's serializer.
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Python mapping as a DynamoDB item (``{"name": {"S": ...}}``); None values dropped."""
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values."""
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


class Table:
    """One DynamoDB table, spoken to with plain Python values."""

    def __init__(self, name: str, client: Any | None = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("dynamodb")
        return self._client

    def get(self, key: Mapping[str, Any], *, consistent: bool = True) -> dict[str, Any] | None:
        with aws_errors("dynamodb"):
            response = self.client.get_item(
                TableName=self.name, Key=serialize(key), ConsistentRead=consistent
            )
        item = response.get("Item")
        return deserialize(item) if item else None

    def put(
        self,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old: bool = False,
    ) -> dict[str, Any] | None:
        """Write ``item``; with ``condition``, a ``ConflictError`` when it does not hold.
        With ``return_old``, the item it replaced (None when there was none)."""
        request: dict[str, Any] = {"TableName": self.name, "Item": serialize(item)}
        _add_condition(request, condition, names, values)
        if return_old:
            request["ReturnValues"] = "ALL_OLD"
        with aws_errors("dynamodb"):
            response = self.client.put_item(**request)
        old = response.get("Attributes") if return_old else None
        return deserialize(old) if old else None

    def delete(
        self,
        key: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        request: dict[str, Any] = {"TableName": self.name, "Key": serialize(key)}
        _add_condition(request, condition, names, values)
        with aws_errors("dynamodb"):
            self.client.delete_item(**request)

    def query(
        self,
        key_condition: str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        index: str | None = None,
        forward: bool = True,
        limit: int | None = None,
        filter_expression: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item matching ``key_condition``, following pagination; at most ``limit``."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": forward,
        }
        if index:
            request["IndexName"] = index
        if filter_expression:
            request["FilterExpression"] = filter_expression
        _add_condition(request, None, names, values)
        yield from self._paginate("query", request, limit)

    def scan(self, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        yield from self._paginate("scan", {"TableName": self.name}, limit)

    def _paginate(
        self, operation: str, request: dict[str, Any], limit: int | None
    ) -> Iterator[dict[str, Any]]:
        returned = 0
        while True:
            with aws_errors("dynamodb"):
                response = getattr(self.client, operation)(**request)
            for item in response.get("Items", []):
                yield deserialize(item)
                returned += 1
                if limit is not None and returned >= limit:
                    return
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request = {**request, "ExclusiveStartKey": last}


def _add_condition(
    request: dict[str, Any],
    condition: str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> None:
    if condition:
        request["ConditionExpression"] = condition
    if names:
        request["ExpressionAttributeNames"] = dict(names)
    if values:
        request["ExpressionAttributeValues"] = serialize(values)


class Record(Protocol):
    """What a store keeps: a value that knows its DynamoDB item form."""

    def to_item(self) -> dict[str, Any]: ...

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self: ...


R = TypeVar("R", bound=Record)


class Store(Generic[R]):
    """Records of one type in a table keyed by ``pk``/``sk``.

    Subclasses set ``record`` and ``table_env`` (the environment variable with the table's
    name); the table can be injected for tests.
    """

    record: ClassVar[type[Any]]
    table_env: ClassVar[str]

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or Table(table_name(self.table_env))

    def get(self, pk: str, sk: str) -> R | None:
        item = self.table.get({"pk": pk, "sk": sk})
        return self.record.from_item(item) if item else None

    def put(self, record: R) -> None:
        self.table.put(record.to_item())

    def create(self, record: R) -> None:
        """Write ``record`` only if nothing has its key yet (``ConflictError`` otherwise)."""
        self.table.put(record.to_item(), condition="attribute_not_exists(pk)")

    def in_partition(
        self, pk: str, *, sk_prefix: str | None = None, newest_first: bool = False
    ) -> Iterator[R]:
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": pk}
        if sk_prefix:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = sk_prefix
        for item in self.table.query(condition, values=values, forward=not newest_first):
            yield self.record.from_item(item)
