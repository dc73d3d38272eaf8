"""A container log cut down to the lines that explain a failure: error lines with a little
context, whole stack traces (Python, Java, Go panics), and the last lines, within hard line
and character caps, so a 10,000-line crash loop fits in a prompt and still shows its error.

Lines that repeat with only numbers changed (a retry loop logging the same error every
second) are kept twice; the rest are counted in the gap markers.
"""

from __future__ import annotations

import re

from pitcrew.records import frozen

MAX_LINES = 120
MAX_CHARS = 6000
TAIL_LINES = 30
CONTEXT_LINES = 2
MAX_LINE_CHARS = 300
MAX_TRACE_LINES = 40
REPEATS_KEPT = 2

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_IMPORTANT = re.compile(
    r"\b(?:error|errors|err|exception|fatal|panic|panicked|traceback|critical|crit|severe"
    r"|emerg|alert|failed|failure|refused|denied|unauthorized|forbidden|unable to|cannot"
    r"|can't|could not|killed|oom|out of memory|segmentation fault|sigsegv|sigabrt"
    r"|caused by|timeout|timed out|no such file|not found)\b"
    r"|^[EF]\d{4} "  # klog: E0612 12:00:00.000 ...
    r"|\blevel=(?:error|fatal|panic)\b|\"level\":\s*\"(?:error|fatal|panic)\"",
    re.IGNORECASE,
)
_PYTHON_TRACE = re.compile(r"^\s*Traceback \(most recent call last\):")
_GO_PANIC = re.compile(r"^(?:panic: |fatal error: |goroutine \d+ \[)")
# Lines that continue a stack trace started on an earlier line.
_JAVA_FRAME = re.compile(r"^\s+at \S|^\s*Caused by: |^\s*\.\.\. \d+ (?:more|common frames)")
_GO_FRAME = re.compile(
    r"^(?:\s*$|\t|goroutine \d+ \[|created by |exit status \d+|[\w./*()\[\]{}%-]+\(.*\)\s*$)"
)
_NUMBERS = re.compile(r"0x[0-9a-f]+|\d+", re.IGNORECASE)


@frozen
class _Block:
    start: int  # first line kept (context included)
    end: int  # one past the last line kept
    anchor: int  # the line that made it important


def trim_log(
    text: str,
    *,
    max_lines: int = MAX_LINES,
    max_chars: int = MAX_CHARS,
    tail: int = TAIL_LINES,
    context: int = CONTEXT_LINES,
) -> tuple[list[str], int]:
    """The lines of ``text`` that matter, in their order, with ``[... N lines omitted ...]``
    markers for the gaps; and how many lines the log had. The result never has more than
    ``max_lines`` lines nor more than ``max_chars`` characters (newlines counted)."""
    lines = [_clean(line) for line in text.splitlines()]
    total = len(lines)
    if total <= max_lines and _size(lines) <= max_chars:
        return lines, total

    budget = _Budget(max_lines, max_chars)
    kept: set[int] = set()
    # The end of the log comes first: it is where a crash says its last words.
    for index in range(total - 1, max(total - tail, 0) - 1, -1):
        if not budget.take(lines[index], new_gap=False):
            break
        kept.add(index)
    budget.reserve_gap()  # the marker before the tail

    blocks = _deduplicated(_blocks(lines, context), lines)
    # The first error is often the cause and the last one the fatal one; then the others,
    # most recent first.
    order = blocks[:1] + blocks[-1:] + blocks[-2:0:-1] if blocks else []
    for block in order:
        fresh = [i for i in range(block.start, block.end) if i not in kept]
        if not fresh:
            continue
        if budget.fits(lines, fresh):
            kept.update(fresh)
        elif block.anchor not in kept and budget.fits(lines, [block.anchor]):
            kept.add(block.anchor)  # at least the error line itself
    return _render(lines, sorted(kept)), total


class _Budget:
    """Lines and characters left; each separate run of kept lines may add one gap marker."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self.lines = max_lines
        self.chars = max_chars

    def take(self, line: str, *, new_gap: bool) -> bool:
        need_lines = 1 + (1 if new_gap else 0)
        need_chars = len(line) + 1 + (_MARKER_CHARS if new_gap else 0)
        if need_lines > self.lines or need_chars > self.chars:
            return False
        self.lines -= need_lines
        self.chars -= need_chars
        return True

    def reserve_gap(self) -> None:
        self.lines -= 1
        self.chars -= _MARKER_CHARS

    def fits(self, lines: list[str], indexes: list[int]) -> bool:
        need_lines = len(indexes) + 1
        need_chars = sum(len(lines[i]) + 1 for i in indexes) + _MARKER_CHARS
        if need_lines > self.lines or need_chars > self.chars:
            return False
        self.lines -= need_lines
        self.chars -= need_chars
        return True


def _marker(count: int) -> str:
    return f"[... {count} lines omitted ...]"


_MARKER_CHARS = len(_marker(10**9)) + 1


def _clean(line: str) -> str:
    line = _ANSI.sub("", line).rstrip("\r")
    if len(line) > MAX_LINE_CHARS:
        line = line[: MAX_LINE_CHARS - 3] + "..."
    return line


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _blocks(lines: list[str], context: int) -> list[_Block]:
    """Each important line, with the stack trace it starts and ``context`` lines around."""
    blocks: list[_Block] = []
    total = len(lines)
    index = 0
    while index < total:
        line = lines[index]
        if not (_IMPORTANT.search(line) or _PYTHON_TRACE.match(line) or _GO_PANIC.match(line)):
            index += 1
            continue
        end = _trace_end(lines, index)
        blocks.append(
            _Block(start=max(index - context, 0), end=min(end + context, total), anchor=index)
        )
        index = end
    return blocks


def _trace_end(lines: list[str], start: int) -> int:
    """One past the last line of the stack trace starting at ``start`` (``start + 1`` when
    the line starts none)."""
    limit = min(start + MAX_TRACE_LINES, len(lines))
    end = start + 1
    if _PYTHON_TRACE.match(lines[start]):
        # Indented frames and source lines, then the unindented exception line.
        while end < limit and lines[end][:1].isspace():
            end += 1
        return min(end + 1, limit) if end < limit else end
    if _GO_PANIC.match(lines[start]):
        while end < limit and (_GO_FRAME.match(lines[end]) or _GO_PANIC.match(lines[end])):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # trailing blank lines are not part of it
        return end
    while end < limit and _JAVA_FRAME.match(lines[end]):
        end += 1
    return end


def _signature(line: str) -> str:
    return _NUMBERS.sub("#", line.strip().lower())


def _deduplicated(blocks: list[_Block], lines: list[str]) -> list[_Block]:
    """The blocks whose error line has not already been seen ``REPEATS_KEPT`` times; the
    last block is always kept (it is the most recent occurrence)."""
    seen: dict[str, int] = {}
    kept: list[_Block] = []
    for position, block in enumerate(blocks):
        signature = _signature(lines[block.anchor])
        seen[signature] = seen.get(signature, 0) + 1
        if seen[signature] <= REPEATS_KEPT or position == len(blocks) - 1:
            kept.append(block)
    return kept


def _render(lines: list[str], kept: list[int]) -> list[str]:
    out: list[str] = []
    previous = -1
    for index in kept:
        if index > previous + 1:
            out.append(_marker(index - previous - 1))
        out.append(lines[index])
        previous = index
    if previous < len(lines) - 1:
        out.append(_marker(len(lines) - 1 - previous))
    return out
