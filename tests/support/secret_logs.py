"""The promise "no secret value is ever logged", checked around every rotation test.

``no_secret_in_logs`` is an autouse fixture for a test module (import it there): it sets
every logger to DEBUG for the test, captures all log records (caplog, including the
functions' powertools loggers, which do not propagate) and everything written to stdout and
stderr (capsys), and fails the test if any secret value registered with
``pitcrew.observability.register_secret``, or named with ``remember``, appears in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pitcrew import observability

# The powertools loggers of the functions under test (their service names): they write to
# their own handler and do not propagate to the root logger.
FUNCTION_LOGGERS = ("rotate_secret", "rotate_vault")
_remembered: set[str] = set()


def remember(*values: str) -> None:
    """Values the test itself made (never registered by the code): checked too."""
    _remembered.update(v for v in values if len(v) >= observability.MIN_SECRET_LENGTH)


@pytest.fixture(autouse=True)
def no_secret_in_logs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    attached = []
    for name in FUNCTION_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(caplog.handler)
        attached.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level in attached:
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)
    captured = capsys.readouterr()
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    lines = [caplog.handler.format(record) for record in records]
    lines += [record.getMessage() for record in records]
    text = "\n".join([*lines, captured.out, captured.err])
    leaked = leaked_values(text)
    # Where, with the value itself blanked: enough to find the culprit, nothing to leak.
    where = [
        line.replace(value, "<SECRET>")[:300]
        for value in leaked
        for line in text.splitlines()
        if value in line
    ]
    assert not leaked, f"{len(leaked)} secret value(s) appear in the log output: {where[:5]}"


def leaked_values(text: str) -> list[str]:
    """The registered (or remembered) secret values that appear in ``text``."""
    values = set(observability._secrets) | _remembered
    return sorted({v for v in values if v in text}, key=len)
