"""Per-invocation environment variables for functions that share one process.

In Lambda each function has its own process and its own ``os.environ``. Locally every function
runs in one process, several at once (an SQS batch, an API request and a Step Functions task
may overlap), so setting ``os.environ`` around a call would leak one function's variables into
another. ``install()`` replaces ``os.environ`` with a mapping that reads through the current
invocation's overlay (a context variable) first and the real environment second; writes made
during an invocation stay in its overlay. ``os.getenv`` and ``os.environ[...]`` see the overlay;
a child process started with ``env=None`` inherits the real environment only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# None marks a variable the invocation has unset (it hides the real one).
Overlay = dict[str, str | None]

_overlay: ContextVar[Overlay | None] = ContextVar("pitcrew_local_environ", default=None)
_lock = threading.Lock()
_installed: list[Any] = []  # the original os.environ while installed, once per install() call


class ScopedEnviron(MutableMapping[str, str]):
    """``os.environ`` as the running invocation sees it: its overlay over the real one."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self._base = base

    @property
    def base(self) -> MutableMapping[str, str]:
        return self._base

    def __getitem__(self, key: str) -> str:
        overlay = _overlay.get()
        if overlay is not None and key in overlay:
            value = overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        return self._base[key]

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"str expected, not {type(value).__name__}")
        overlay = _overlay.get()
        if overlay is not None:
            overlay[key] = value
        else:
            self._base[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _overlay.get()
        if overlay is None:
            del self._base[key]
            return
        if key not in self:
            raise KeyError(key)
        overlay[key] = None

    def _keys(self) -> list[str]:
        overlay = _overlay.get() or {}
        keys = [k for k in self._base if overlay.get(k, "") is not None]
        keys.extend(k for k, v in overlay.items() if v is not None and k not in self._base)
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def copy(self) -> dict[str, str]:
        return dict(self.items())

    def __repr__(self) -> str:
        return f"ScopedEnviron({self.copy()!r})"


def install() -> None:
    """Make ``os.environ`` invocation-aware (idempotent; pair each call with ``uninstall``)."""
    with _lock:
        current = os.environ
        _installed.append(current)
        if not isinstance(current, ScopedEnviron):
            # Replacing (not clearing) os.environ is the point: B003 warns of the opposite.
            os.environ = ScopedEnviron(current)  # type: ignore[assignment]  # noqa: B003


def uninstall() -> None:
    """Undo one ``install()``; the last one puts the real ``os.environ`` back."""
    with _lock:
        if not _installed:
            return
        original = _installed.pop()
        if not _installed:
            os.environ = original  # noqa: B003 - puts the real mapping back


@contextmanager
def scoped(variables: Mapping[str, str | None]) -> Iterator[Overlay]:
    """Run the body with ``variables`` over the real environment (None unsets a variable).

    Only effective while ``install()`` is in force; the overlay is per thread / task, so
    concurrent invocations each see their own function's variables.
    """
    overlay: Overlay = dict(variables)
    token = _overlay.set(overlay)
    try:
        yield overlay
    finally:
        _overlay.reset(token)
