"""``@frozen`` and ``@mutable``: dataclasses that cost next to nothing to define.

``@dataclass(frozen=True)`` writes the source of six methods per class and compiles it with
``exec`` when the module is imported: about a millisecond a class on Python 3.11. The
configuration alone has thirty such classes and every function imports it, so at a cold
start that was the largest single cost pitcrew added to the runtime's own imports.

``@frozen`` gives the same class without generating code: the methods are shared and read
the class's field list. It behaves as ``@dataclass(frozen=True)`` for what pitcrew uses
(``@mutable`` as ``@dataclass``: no hash, attributes assignable):

- fields from the class's annotations (``ClassVar`` excluded), a record's base fields first;
  defaults, and ``dataclasses.field(default=, default_factory=, repr=, compare=)``;
- ``__init__`` taking the fields by position or keyword, then ``__post_init__`` if defined;
- ``__repr__``, ``__eq__`` (same class, equal compared fields) and ``__hash__`` over the
  compared fields; assigning or deleting an attribute raises ``FrozenInstanceError``;
- ``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work on records, and
  type checkers treat them as frozen dataclasses (``typing.dataclass_transform``).

Not supported (use ``@dataclass`` for these): ``init=False`` fields, ``InitVar``,
``KW_ONLY``, ``slots``, ordering.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError
from types import SimpleNamespace
from typing import Any, TypeVar, dataclass_transform

__all__ = ["frozen", "mutable"]

T = TypeVar("T", bound=type)

# dataclasses marks a field's kind with these sentinels; fields() returns only _FIELD ones.
_FIELD = dataclasses._FIELD  # type: ignore[attr-defined]
_FIELDS = "__dataclass_fields__"
_MUTABLE_DEFAULTS = (list, dict, set)


def _is_class_var(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _inherited_fields(cls: type) -> dict[str, Field[Any]]:
    fields: dict[str, Field[Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        for name, inherited in (getattr(base, _FIELDS, None) or {}).items():
            # A dataclass base lists its ClassVar and InitVar pseudo-fields here too.
            if inherited._field_type is _FIELD:
                fields[name] = inherited
            elif inherited._field_type is dataclasses._FIELD_INITVAR:  # type: ignore[attr-defined]
                raise TypeError(f"{cls.__qualname__}: @frozen does not support InitVar ({name})")
    return fields


def _fields_of(cls: type) -> dict[str, Field[Any]]:
    """The base records' fields, then the class's own, in definition order."""
    fields = _inherited_fields(cls)
    for name, annotation in inspect.get_annotations(cls).items():
        if _is_class_var(annotation):
            continue
        default = cls.__dict__.get(name, MISSING)
        spec: Field[Any] = (
            default if isinstance(default, Field) else dataclasses.field(default=default)
        )
        if isinstance(spec.default, _MUTABLE_DEFAULTS):
            raise ValueError(
                f"mutable default {type(spec.default).__name__} for field {name} of "
                f"{cls.__qualname__} is not allowed: use default_factory"
            )
        if not spec.init:
            raise TypeError(f"{cls.__qualname__}.{name}: @frozen does not support init=False")
        if spec.kw_only is True:
            raise TypeError(f"{cls.__qualname__}.{name}: @frozen does not support kw_only")
        spec.kw_only = False  # as dataclass resolves it: a dataclass over a record reads it
        spec.name = name
        spec.type = annotation
        spec._field_type = _FIELD  # type: ignore[attr-defined]
        fields[name] = spec
        if isinstance(default, Field):  # the class attribute is the default, as in dataclasses
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
    required_seen_after_default = False
    for spec in fields.values():
        if spec.default is MISSING and spec.default_factory is MISSING:
            if required_seen_after_default:
                raise TypeError(
                    f"{cls.__qualname__}: non-default argument {spec.name!r} follows "
                    "default argument"
                )
        else:
            required_seen_after_default = True
    return fields


class _Layout:
    """What the shared methods need of one record class, worked out once."""

    __slots__ = ("compared", "defaults", "factories", "known", "names", "post_init", "shown")

    def __init__(self, cls: type, fields: dict[str, Field[Any]]) -> None:
        self.names = tuple(fields)
        self.known = frozenset(fields)
        self.defaults = {n: f.default for n, f in fields.items() if f.default is not MISSING}
        self.factories: dict[str, Callable[[], Any]] = {
            n: f.default_factory for n, f in fields.items() if f.default_factory is not MISSING
        }
        self.shown = tuple(n for n, f in fields.items() if f.repr)
        self.compared = tuple(n for n, f in fields.items() if f.compare)
        self.post_init = getattr(cls, "__post_init__", None)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    layout: _Layout = type(self).__record_layout__
    names = layout.names
    if len(args) > len(names):
        raise TypeError(
            f"{type(self).__qualname__}() takes {len(names)} positional arguments "
            f"but {len(args)} were given"
        )
    values = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        if name in values:
            raise TypeError(f"{type(self).__qualname__}() got multiple values for {name!r}")
        values[name] = value
    if not values.keys() <= layout.known:
        unknown = sorted(values.keys() - layout.known)
        raise TypeError(f"{type(self).__qualname__}() got an unexpected keyword {unknown[0]!r}")
    setter = object.__setattr__
    for name in names:
        if name in values:
            setter(self, name, values[name])
        elif name in layout.defaults:
            setter(self, name, layout.defaults[name])
        elif name in layout.factories:
            setter(self, name, layout.factories[name]())
        else:
            raise TypeError(f"{type(self).__qualname__}() missing required argument {name!r}")
    if layout.post_init is not None:
        layout.post_init(self)


def _repr(self: Any) -> str:
    layout: _Layout = type(self).__record_layout__
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in layout.shown)
    return f"{type(self).__qualname__}({shown})"


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self).__record_layout__.compared)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


_SHARED = {"__init__": _init, "__repr__": _repr, "__eq__": _eq}
# What @dataclass reads of a base's parameters (its frozenness), for a dataclass over a record.
_PARAMS = "__dataclass_params__"
_FROZEN_PARAMS = SimpleNamespace(init=True, repr=True, eq=True, order=False, frozen=True)
_MUTABLE_PARAMS = SimpleNamespace(init=True, repr=True, eq=True, order=False, frozen=False)
_FROZEN = {"__setattr__": _setattr, "__delattr__": _delattr}


def _define(cls: type, *, frozen: bool) -> None:
    fields = _fields_of(cls)
    own = cls.__dict__
    # As dataclass does: a class's own __init__, __repr__ or __eq__ is kept, and so is an
    # explicit __hash__ (Python sets __hash__ to None in a class that defines __eq__).
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if frozen:
        for name in _FROZEN:
            if name in own:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__qualname__}")
    setattr(cls, _FIELDS, fields)
    setattr(cls, _PARAMS, _FROZEN_PARAMS if frozen else _MUTABLE_PARAMS)
    setattr(cls, "__record_layout__", _Layout(cls, fields))  # noqa: B010
    setattr(cls, "__match_args__", tuple(fields))  # noqa: B010 - mypy refuses the assignment
    for name, method in _SHARED.items():
        if name not in own:
            setattr(cls, name, method)
    if not explicit_hash:
        # Frozen: hashed by the compared fields; mutable: unhashable (eq without frozen).
        setattr(cls, "__hash__", _hash if frozen else None)  # noqa: B010
    if frozen:
        for name, method in _FROZEN.items():
            setattr(cls, name, method)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def frozen(cls: T) -> T:
    """Make ``cls`` a frozen record: ``@dataclass(frozen=True)`` (see the module docstring)."""
    _define(cls, frozen=True)
    return cls


@dataclass_transform(field_specifiers=(dataclasses.field, Field))
def mutable(cls: T) -> T:
    """Make ``cls`` a mutable record: ``@dataclass`` (see the module docstring)."""
    _define(cls, frozen=False)
    return cls
