"""Errors of the local runtime: what stops ``pitcrew local`` / ``pitcrew invoke`` from starting.

    PitcrewError
    └── LocalRuntimeError          the local runtime cannot start or cannot do what was asked
        ├── PortInUseError         a port it must bind on 127.0.0.1 is taken
        └── UnknownNameError       a function or rule name that the stack does not have

Errors raised by a handler are not exceptions here: an invocation reports them in its result,
the way Lambda does (``FunctionError`` and an error payload).
"""

from __future__ import annotations

from collections.abc import Iterable

from pitcrew.errors import PitcrewError


class LocalRuntimeError(PitcrewError):
    """The local runtime cannot start, or cannot do what was asked of it."""


class PortInUseError(LocalRuntimeError):
    """A port the local runtime must listen on is already taken."""

    def __init__(self, what: str, port: int, option: str) -> None:
        self.port = port
        super().__init__(
            f"port {port} on 127.0.0.1 is already in use, so the {what} cannot start. "
            f"Stop whatever listens there (another `pitcrew local`, LocalStack?) "
            f"or choose another port with {option}."
        )


class UnknownNameError(LocalRuntimeError):
    """A name (function, rule) that the stack does not define; the message lists the known."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(set(known))
        listed = ", ".join(self.known) if self.known else "none"
        super().__init__(f"no {kind} named {name!r} in the stack; known: {listed}")
