"""Typed DynamoDB stores against the tables of template.yaml (moto)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import pytest

from pitcrew.errors import ConfigError, ConflictError
from pitcrew.local.provision import Stack
from pitcrew.stores import Store, Table, table_name


@dataclass(frozen=True)
class Note:
    owner: str
    at: str
    text: str
    score: float
    count: int

    def to_item(self) -> dict[str, Any]:
        return {
            "pk": f"owner#{self.owner}",
            "sk": f"note#{self.at}",
            "text": self.text,
            "score": self.score,
            "count": self.count,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        return cls(
            owner=item["pk"].removeprefix("owner#"),
            at=item["sk"].removeprefix("note#"),
            text=item["text"],
            score=item["score"],
            count=item["count"],
        )


class Notes(Store[Note]):
    record = Note
    table_env = "INCIDENTS_TABLE"


def test_records_round_trip_with_plain_numbers(stack: Stack) -> None:
    notes = Notes()
    notes.put(Note("ana", "2026-11-20", "hello", 0.9, 3))
    got = notes.get("owner#ana", "note#2026-11-20")
    assert got == Note("ana", "2026-11-20", "hello", 0.9, 3)
    assert isinstance(got.count, int) and isinstance(got.score, float)


def test_create_refuses_to_overwrite(stack: Stack) -> None:
    notes = Notes()
    notes.create(Note("ana", "1", "first", 1.0, 1))
    with pytest.raises(ConflictError, match="dynamodb"):
        notes.create(Note("ana", "1", "second", 1.0, 1))
    assert notes.get("owner#ana", "note#1").text == "first"  # type: ignore[union-attr]


def test_partition_queries_follow_pagination_and_order(stack: Stack) -> None:
    notes = Notes()
    padding = "x" * 30_000  # ~30 KB each: 40 of them span several 1 MB query pages
    for i in range(40):
        notes.put(Note("bo", f"{i:03d}", padding, float(i), i))
    notes.put(Note("other", "000", "not mine", 0.0, 0))
    newest_first = list(notes.in_partition("owner#bo", newest_first=True))
    assert [n.count for n in newest_first] == list(range(39, -1, -1))
    assert [n.at for n in notes.in_partition("owner#bo", sk_prefix="note#00")] == [
        f"{i:03d}" for i in range(10)
    ]


def test_conditional_put_raises_conflict(stack: Stack) -> None:
    table = Table(table_name("PROMOTIONS_TABLE"))
    table.put(
        {"pk": "lock#api#prod", "sk": "lock", "owner": "exec-1"},
        condition="attribute_not_exists(pk)",
    )
    with pytest.raises(ConflictError):
        table.put(
            {"pk": "lock#api#prod", "sk": "lock", "owner": "exec-2"},
            condition="attribute_not_exists(pk)",
        )
    assert table.get({"pk": "lock#api#prod", "sk": "lock"})["owner"] == "exec-1"  # type: ignore[index]


def test_a_missing_table_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSTS_TABLE", raising=False)
    with pytest.raises(ConfigError, match="COSTS_TABLE"):
        table_name("COSTS_TABLE")
