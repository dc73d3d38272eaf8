"""Kubernetes resource quantities (``512Mi``, ``1Gi``, ``500m``, ``1.5``, ``2e3``): parsed to
exact decimals and formatted back the way a person would write them in a manifest.

The grammar is the API server's (``k8s.io/apimachinery/pkg/api/resource``): a signed decimal
number followed by a binary suffix (``Ki``..``Ei``), a decimal suffix (``n``, ``u``, ``m``,
``k``, ``M``..``E``) or a decimal exponent (``e3``, ``E-2``).
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

KI = 1024
MI = 1024**2
GI = 1024**3

_BINARY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exponent>[eE][+-]?\d+)|(?P<decimal>[numkMGTPE]?))$"
)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity; the message quotes it."""


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """The quantity's exact value in base units (bytes for memory, cores for CPU).

    Numbers are taken as they are (a YAML ``memory: 1073741824`` or ``cpu: 2``); booleans and
    anything else that is not a quantity raise ``QuantityError``.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity")
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(f"{value!r} is not a quantity (like 512Mi, 1Gi, 500m or 1.5)")
    try:
        number = Decimal(match["number"])
        if match["binary"]:
            return number * _BINARY[match["binary"]]
        if match["exponent"]:
            return number.scaleb(int(match["exponent"][1:]))
        return number * _DECIMAL[match["decimal"] or ""]
    except (InvalidOperation, OverflowError) as exc:
        raise QuantityError(f"{value!r} is out of range") from exc


def format_memory(size: Decimal | int) -> str:
    """Bytes in the largest binary unit that divides them exactly (``805306368`` → ``768Mi``,
    ``1073741824`` → ``1Gi``); fractions of a byte are rounded up."""
    whole = int(Decimal(size).to_integral_value(rounding=ROUND_CEILING))
    for suffix, factor in (("Ei", 1024**6), ("Pi", 1024**5), ("Ti", 1024**4), ("Gi", GI)):
        if whole and whole % factor == 0:
            return f"{whole // factor}{suffix}"
    for suffix, factor in (("Mi", MI), ("Ki", KI)):
        if whole and whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def format_cpu(cores: Decimal | int | float) -> str:
    """Cores as whole cores when exact (``2``), else millicores rounded up (``1.25`` →
    ``1250m``, ``0.1`` → ``100m``)."""
    millis = int((Decimal(str(cores)) * 1000).to_integral_value(rounding=ROUND_CEILING))
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis}m"


def format_quantity(value: Decimal | int, resource: str) -> str:
    """``format_memory`` for ``memory`` (and other byte resources), ``format_cpu`` for ``cpu``."""
    return format_cpu(value) if resource == "cpu" else format_memory(value)


def round_memory_up(size: Decimal | int | float) -> int:
    """Bytes rounded up to a clean size to write in a manifest: a multiple of 16Mi below
    256Mi, of 64Mi below 4Gi, of 256Mi above (``1.5 x 512Mi`` stays ``768Mi``; ``1.5 x
    700Mi`` becomes ``1088Mi``)."""
    value = Decimal(str(size)) if isinstance(size, float) else Decimal(size)
    if value <= 0:
        return 0
    step = 16 * MI if value < 256 * MI else 64 * MI if value < 4 * GI else 256 * MI
    steps = (value / step).to_integral_value(rounding=ROUND_CEILING)
    return int(steps) * step


def round_cpu_up(cores: Decimal | int | float) -> Decimal:
    """Cores rounded up to a multiple of 50m below 1 core, of 100m above."""
    value = Decimal(str(cores))
    if value <= 0:
        return Decimal(0)
    step = Decimal("0.05") if value < 1 else Decimal("0.1")
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step
