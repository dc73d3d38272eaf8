"""The lines of a container log that explain a crash: error and fatal lines, exceptions with
the head of their stack trace, Go panics, the last frame of a Python traceback."""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_ERROR_LINES = 6

_ERROR = re.compile(
    r"\b(error|err|fatal|panic|exception|critical|crit|severe|emerg|alert)\b"
    r"|\blevel[=:]\"?(error|fatal|crit|critical)"
    r"|^[EF]\d{4} "  # klog: E0612 10:00:00.000000 ...
    r"|\b(unable to|cannot|could not|failed to)\b",
    re.IGNORECASE,
)
_EXCEPTION = re.compile(r"^([\w$.]+(Error|Exception|Exit|Interrupt|Fault))(:|$)|^Caused by:")
_NOT_AN_ERROR = re.compile(
    r"\b(no|0|zero) (errors?|exceptions?)\b|\berrors?[=:] ?(0|nil|none)\b", re.IGNORECASE
)
_GOROUTINE = re.compile(r"^goroutine \d+ \[")
_FRAME = re.compile(r"^\s+(at |File \")|^\s+\S")


def error_lines(lines: Sequence[str], limit: int = MAX_ERROR_LINES) -> list[str]:
    """The lines of ``lines`` that say what went wrong, in order, the last ``limit`` of them
    (the error right before a crash is usually its cause)."""
    picked: dict[int, str] = {}
    traceback_frame: tuple[int, str] | None = None
    in_traceback = False
    frames_wanted = 0
    for index, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("Traceback (most recent call last)"):
            picked[index], in_traceback, traceback_frame = line, True, None
            continue
        if in_traceback:
            if line[:1].isspace():
                # The last frame in the program's own code, not the interpreter's.
                if stripped.startswith("File ") and not stripped.startswith('File "<'):
                    traceback_frame = (index, line)
                continue
            # The first unindented line after the frames is the exception itself.
            if traceback_frame is not None:
                picked[traceback_frame[0]] = traceback_frame[1]
            picked[index], in_traceback = line, False
            continue
        if frames_wanted and (
            _FRAME.match(line) or picked.get(index - 1, "").startswith("goroutine")
        ):
            picked[index] = line
            frames_wanted -= 1
            continue
        frames_wanted = 0
        if _GOROUTINE.match(stripped):
            picked[index], frames_wanted = line, 2
        elif _EXCEPTION.match(stripped) or (_ERROR.search(line) and not _NOT_AN_ERROR.search(line)):
            picked[index], frames_wanted = line, 1
    chosen = [picked[index] for index in sorted(picked)]
    return chosen[-limit:]


_TELLING = re.compile(r"^\s*(panic: |fatal error: |Caused by: )|\bFATAL\b|\bfatal\b", re.IGNORECASE)


def telling_line(errors: Sequence[str]) -> str | None:
    """The one line of ``errors`` that best says why: the last exception or panic line, else
    the last fatal line, else the last error line."""
    exceptions = [
        line for line in errors if _EXCEPTION.match(line.strip()) or line.startswith("panic:")
    ]
    if exceptions:
        return exceptions[-1].strip()
    fatal = [line for line in errors if _TELLING.search(line)]
    if fatal:
        return fatal[-1].strip()
    return errors[-1].strip() if errors else None


def last_line(lines: Sequence[str]) -> str | None:
    for line in reversed(lines):
        if line.strip():
            return line.rstrip()
    return None
