"""``@frozen`` behaves as ``@dataclass(frozen=True)`` and ``@mutable`` as ``@dataclass`` for
everything pitcrew relies on, and both are much cheaper to define (the reason they exist)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import time
from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from typing import ClassVar

import pytest

from pitcrew.records import frozen, mutable


@frozen
class Point:
    LIMIT: ClassVar[int] = 10
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    note: str | None = field(default=None, compare=False)
    hidden: str = field(default="h", repr=False)


@frozen
class Point3(Point):
    z: int = 0


@frozen
class WithFactory:
    values: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    items: list[int] = field(default_factory=list)


@frozen
class Checked:
    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must not be negative")
        object.__setattr__(self, "size", int(self.size))


@frozen
class OwnRepr:
    name: str

    def __repr__(self) -> str:
        return f"<{self.name}>"


def test_construction_by_position_and_keyword_with_defaults() -> None:
    assert Point(1) == Point(x=1, y=0)
    assert Point(1, 2, ("a",)).tags == ("a",)
    assert Point.LIMIT == 10
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags", "note", "hidden"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (Point, "missing required argument 'x'"),
        (lambda: Point(1, z=2), "unexpected keyword 'z'"),
        (lambda: Point(1, x=2), "multiple values for 'x'"),
        (lambda: Point(1, 2, (), None, "h", 6), "takes 5 positional arguments"),
    ],
)
def test_wrong_arguments_are_refused_as_a_dataclass_would(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=message):
        make()


def test_instances_are_frozen() -> None:
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x  # type: ignore[misc]


def test_equality_and_hash_use_the_compared_fields_only() -> None:
    assert Point(1, note="a") == Point(1, note="b")
    assert hash(Point(1, note="a")) == hash(Point(1, note="b"))
    assert Point(1) != Point(2)
    assert Point(1) != Point3(1)  # another class is never equal
    assert {Point(1), Point(1)} == {Point(1)}


def test_repr_shows_the_shown_fields_and_a_class_may_keep_its_own() -> None:
    assert repr(Point(1)) == "Point(x=1, y=0, tags=(), note=None)"
    assert repr(OwnRepr("a")) == "<a>"


def test_inheritance_puts_the_base_fields_first() -> None:
    assert Point3(1, 2, z=3) == Point3(x=1, y=2, z=3)
    assert [f.name for f in dataclasses.fields(Point3)][-1] == "z"


def test_default_factories_give_each_instance_its_own_value() -> None:
    a, b = WithFactory(), WithFactory()
    assert a.items == [] and a.items is not b.items
    assert a.values == {}


def test_post_init_runs_after_the_fields_are_set() -> None:
    assert Checked(3).size == 3
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_the_dataclasses_functions_work() -> None:
    point = Point(1, tags=("a",))
    assert dataclasses.is_dataclass(point)
    assert dataclasses.replace(point, y=5) == Point(1, 5, ("a",))
    assert dataclasses.asdict(Point3(1)) == {
        "x": 1,
        "y": 0,
        "tags": (),
        "note": None,
        "hidden": "h",
        "z": 0,
    }
    assert dataclasses.astuple(Point(1)) == (1, 0, (), None, "h")


def test_copy_and_pickle_round_trip() -> None:
    point = Point3(1, 2, ("t",), z=3)
    assert pickle.loads(pickle.dumps(point)) == point  # noqa: S301 - our own bytes
    assert copy.deepcopy(point) == point
    assert copy.copy(point) == point


def test_pattern_matching_by_position() -> None:
    match Point(4, 5):
        case Point(x, y):
            assert (x, y) == (4, 5)
        case _:
            pytest.fail("no match")


def test_class_definition_errors_match_dataclasses() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @frozen
        class Bad:
            items: list[int] = []

    with pytest.raises(TypeError, match="non-default argument 'b' follows default"):

        @frozen
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="init=False"):

        @frozen
        class NoInit:
            a: int = field(default=0, init=False)


@dataclasses.dataclass(frozen=True)
class Plain:
    x: int
    kind: ClassVar[str] = "plain"


def test_a_record_over_a_dataclass_takes_its_fields_not_its_class_variables() -> None:
    @frozen
    class Over(Plain):
        y: int = 0

    assert [f.name for f in dataclasses.fields(Over)] == ["x", "y"]
    assert Over(1, 2) == Over(x=1, y=2) and Over(1).kind == "plain"
    with pytest.raises(TypeError):
        Over(1, kind="other")  # type: ignore[call-arg]


def test_a_dataclass_over_a_record_is_a_dataclass_of_both_fields() -> None:
    @dataclasses.dataclass(frozen=True)
    class Under(Point3):
        w: int = 0

    assert [f.name for f in dataclasses.fields(Under)][-2:] == ["z", "w"]
    assert Under(1, w=4).w == 4
    with pytest.raises(TypeError, match="non-frozen"):

        @dataclasses.dataclass
        class Thawed(Point3):  # type: ignore[misc]
            w: int = 0


@mutable
class Tally:
    name: str
    counts: list[int] = field(default_factory=list)
    total: int = 0


def test_a_mutable_record_can_change_and_is_not_hashable() -> None:
    tally = Tally("a")
    tally.total += 2
    tally.counts.append(1)
    assert tally == Tally("a", [1], 2)
    assert Tally("b").counts is not Tally("b").counts
    with pytest.raises(TypeError, match="unhashable"):
        hash(tally)
    assert dataclasses.replace(tally, name="b") == Tally("b", [1], 2)
    assert dataclasses.asdict(tally) == {"name": "a", "counts": [1], "total": 2}
    assert repr(tally) == "Tally(name='a', counts=[1], total=2)"


def _define_many(decorate, count: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(count):

        class Section:
            url: str
            token: str | None = None
            timeout_s: float = 10.0
            retries: int = 2
            labels: tuple[str, ...] = ()

        decorate(Section)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    ("record", "dataclass"),
    [(frozen, dataclasses.dataclass(frozen=True)), (mutable, dataclasses.dataclass)],
)
def test_defining_a_record_costs_a_fraction_of_a_dataclass(record, dataclass) -> None:  # type: ignore[no-untyped-def]
    count = 40
    records = min(_define_many(record, count) for _ in range(3))
    dataclasses_ = min(_define_many(dataclass, count) for _ in range(3))
    assert records < dataclasses_ / 4, (records, dataclasses_)
