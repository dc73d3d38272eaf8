"""Kubernetes resource quantities: parsed exactly, formatted back as a person writes them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from pitcrew.incidents.quantity import (
    GI,
    MI,
    QuantityError,
    format_cpu,
    format_memory,
    format_quantity,
    parse_quantity,
    round_cpu_up,
    round_memory_up,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", 512 * MI),
        ("1Gi", GI),
        ("1.5Gi", 1536 * MI),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        ("129M", 129_000_000),
        ("123Ki", 123 * 1024),
        ("2Ti", 2 * 1024**4),
        ("500m", Decimal("0.5")),
        ("250m", Decimal("0.25")),
        ("1.5", Decimal("1.5")),
        ("2e3", 2000),
        ("2E-3", Decimal("0.002")),
        ("100n", Decimal("1e-7")),
        ("1k", 1000),
        (".5", Decimal("0.5")),
        ("+1", 1),
        (" 64Mi ", 64 * MI),
        (2, 2),
        (0.5, Decimal("0.5")),
    ],
)
def test_parses_the_api_servers_grammar(text: str | int | float, value: int | Decimal) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize(
    "text", ["", "Mi", "1.5.2", "12MB", "1 Gi", "1mi", "1Gi2", "lots", "1e", "--1"]
)
def test_refuses_what_is_not_a_quantity_and_quotes_it(text: str) -> None:
    with pytest.raises(QuantityError, match=re.escape(repr(text))):
        parse_quantity(text)


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}])
def test_refuses_values_of_the_wrong_type(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (768 * MI, "768Mi"),
        (GI, "1Gi"),
        (2 * GI, "2Gi"),
        (1536 * MI, "1536Mi"),
        (1536, "1536"),  # not a multiple of 1Ki: plain bytes
        (2048, "2Ki"),
        (1000, "1000"),
        (Decimal("100.2"), "101"),
        (0, "0"),
    ],
)
def test_formats_memory_in_the_largest_exact_binary_unit(size: int | Decimal, text: str) -> None:
    assert format_memory(size) == text


@pytest.mark.parametrize(
    ("cores", "text"),
    [
        (1, "1"),
        (2, "2"),
        (Decimal("0.5"), "500m"),
        (Decimal("1.25"), "1250m"),
        (0.1, "100m"),
        (Decimal("0.0001"), "1m"),
    ],
)
def test_formats_cpu_as_cores_or_millicores(cores: int | float | Decimal, text: str) -> None:
    assert format_cpu(cores) == text


def test_round_trips_through_format_quantity() -> None:
    for text, resource in [("768Mi", "memory"), ("3Gi", "memory"), ("250m", "cpu"), ("4", "cpu")]:
        assert format_quantity(parse_quantity(text), resource) == text


@pytest.mark.parametrize(
    ("size", "clean"),
    [
        (Decimal(512 * MI) * Decimal("1.5"), 768 * MI),
        (Decimal(700 * MI) * Decimal("1.5"), 1088 * MI),
        (100 * MI, 112 * MI),
        (150 * MI, 160 * MI),
        (5 * GI + 1, 5 * GI + 256 * MI),
        (1, 16 * MI),
        (0, 0),
    ],
)
def test_rounds_memory_up_to_a_clean_size(size: int | Decimal, clean: int) -> None:
    assert round_memory_up(size) == clean
    assert round_memory_up(size) >= size


def test_rounds_cpu_up_to_clean_steps() -> None:
    assert round_cpu_up(Decimal("0.33")) == Decimal("0.35")
    assert round_cpu_up(Decimal("1.51")) == Decimal("1.6")
    assert format_cpu(round_cpu_up(Decimal("0.3"))) == "300m"
