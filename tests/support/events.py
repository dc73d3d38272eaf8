"""The one way tests read the sample trigger payloads kept in the repository's ``events/``.

Names are paths relative to ``events/`` with forward slashes, such as
``"alertmanager/firing-crashloop.json"``. Every call reads the file again, so a test may
change what it gets without touching what the next test sees.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

EVENTS_DIR: Path = Path(__file__).resolve().parents[2] / "events"
GITHUB_HEADERS = "github/headers.json"


class SampleEventNotFoundError(FileNotFoundError):
    """No sample has that name; the message lists the ones there are."""


def available_events() -> list[str]:
    """Every sample's name, sorted (``github/headers.json`` included)."""
    return sorted(path.relative_to(EVENTS_DIR).as_posix() for path in EVENTS_DIR.rglob("*.json"))


def _path(name: str) -> Path:
    relative = PurePosixPath(name)
    path = EVENTS_DIR.joinpath(*relative.parts)
    if relative.is_absolute() or ".." in relative.parts or not path.is_file():
        listing = "\n  ".join(available_events())
        raise SampleEventNotFoundError(
            f"no sample event {name!r} under {EVENTS_DIR}; available:\n  {listing}"
        )
    return path


def load_raw(name: str) -> bytes:
    """The sample's exact bytes, as a sender would put them on the wire (and sign them)."""
    return _path(name).read_bytes()


def load_event(name: str) -> dict[str, Any]:
    """The sample parsed from JSON; every sample is a JSON object."""
    event = json.loads(load_raw(name))
    if not isinstance(event, dict):
        raise TypeError(f"sample event {name!r} is a JSON {type(event).__name__}, not an object")
    return event


def github_delivery(name: str) -> tuple[bytes, dict[str, str]]:
    """A GitHub delivery: the body's exact bytes and the headers GitHub sends with it.

    ``name`` is a file under ``events/github/``, with or without the ``github/`` prefix. The
    headers carry no signature: the sender computes ``X-Hub-Signature-256`` over the body.
    """
    file_name = name.removeprefix("github/")
    body = load_raw(f"github/{file_name}")
    all_headers = load_event(GITHUB_HEADERS)
    if file_name not in all_headers:
        raise SampleEventNotFoundError(
            f"{GITHUB_HEADERS} has no headers for {file_name!r}; it has: {sorted(all_headers)}"
        )
    return body, dict(all_headers[file_name])
