"""The local runtime in tests: the repository's template.yaml plus test resources, started
in-process on free ports, and helpers to read what the test functions recorded.

``template_with(tmp_path, "local-triggers.yaml")`` writes the merged template: every resource
of ``template.yaml`` and of the fixture, with code and definition paths made absolute, so the
runtime sees exactly what it would if the resources were added to ``template.yaml``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pitcrew.local.runtime import LocalRuntime
from pitcrew.local.template import CfnLoader, default_template_path

REPO = Path(__file__).resolve().parents[2]
FIXTURE_TEMPLATES = REPO / "tests" / "fixtures" / "templates"
_PATH_PROPERTIES = ("CodeUri", "DefinitionUri", "ContentUri")

T = TypeVar("T")


def _load(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnLoader)  # noqa: S506
    for resource in (document.get("Resources") or {}).values():
        properties = resource.get("Properties") or {}
        for key in _PATH_PROPERTIES:
            if isinstance(properties.get(key), str):
                properties[key] = str((path.parent / properties[key]).resolve())
    return document


def template_with(tmp_path: Path, *fixtures: str, base: Path | None = None) -> Path:
    """``base`` (default: the stack's template.yaml, ``$PITCREW_TEMPLATE`` if set) with the
    resources (and parameters) of each fixture template added."""
    merged = _load(base or default_template_path())
    for name in fixtures:
        extra = _load(FIXTURE_TEMPLATES / name)
        for section in ("Parameters", "Resources", "Outputs"):
            if extra.get(section):
                merged.setdefault(section, {}).update(extra[section])
    target = tmp_path / "template.yaml"
    target.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return target


class FakeClock:
    """The scheduler's clock in tests: time moves only when ``advance`` is called; the
    scheduler's sleep is a short real wait, so its thread keeps looking at the clock."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)

    @staticmethod
    def sleep(_seconds: float) -> None:
        time.sleep(0.02)


@contextmanager
def local_runtime(template_path: Path, **options: Any) -> Iterator[LocalRuntime]:
    """The local runtime on free ports, stopped (and the emulator emptied) afterwards."""
    options.setdefault("aws_port", 0)
    options.setdefault("api_port", 0)
    runtime = LocalRuntime(template_path=template_path, **options)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def wait_for(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout} s (last: {result!r})")
        time.sleep(interval)


def records(runtime: LocalRuntime, recorder: str) -> list[dict[str, Any]]:
    """What the recorder test function named ``recorder`` wrote, oldest first: dicts with
    ``event``, ``context`` and ``environment``."""
    assert runtime.stack is not None
    table = runtime.stack.refs["RecordsTable"]
    items = runtime.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": recorder}},
    )["Items"]
    return [
        {
            key: json.loads(item[key]["S"])
            for key in ("event", "context", "environment")
            if key in item
        }
        for item in sorted(items, key=lambda i: i["sk"]["S"])
    ]


def queue_url(runtime: LocalRuntime, logical_id: str) -> str:
    assert runtime.stack is not None
    return runtime.stack.refs[logical_id]
