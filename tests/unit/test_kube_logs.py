"""Log trimming: a crash loop's 10,000 lines come down to a bounded excerpt that still shows
the error, the whole stack trace and the last lines."""

from __future__ import annotations

import re

from pitcrew.kube.logs import MAX_CHARS, MAX_LINES, trim_log

MARKER = re.compile(r"^\[\.\.\. (\d+) lines omitted \.\.\.\]$")


def noise(count: int, start: int = 0) -> list[str]:
    return [
        f"2024-06-12T09:{(i // 60) % 60:02d}:{i % 60:02d}Z INFO GET /api/orders/{i} 200 12ms"
        for i in range(start, start + count)
    ]


def accounted(lines: list[str], kept: list[str]) -> int:
    """How many original lines the excerpt stands for (kept plus omitted)."""
    total = 0
    for line in kept:
        match = MARKER.match(line)
        total += int(match.group(1)) if match else 1
    return total


def assert_bounded(kept: list[str]) -> None:
    assert len(kept) <= MAX_LINES
    assert sum(len(line) + 1 for line in kept) <= MAX_CHARS


def test_ten_thousand_lines_keep_the_error_its_traceback_and_the_tail() -> None:
    traceback = [
        "Traceback (most recent call last):",
        '  File "/app/server.py", line 88, in <module>',
        "    main()",
        '  File "/app/server.py", line 80, in main',
        "    settings = load_settings(os.environ)",
        '  File "/app/settings.py", line 31, in load_settings',
        '    return Settings(database_url=env["DATABASE_URL"])',
        "KeyError: 'DATABASE_URL'",
    ]
    lines = [
        *noise(6000),
        "2024-06-12T10:40:00Z ERROR settings: DATABASE_URL is not set",
        *traceback,
        *noise(3991, 6000),
    ]
    assert len(lines) == 10_000

    kept, total = trim_log("\n".join(lines))

    assert total == 10_000
    assert_bounded(kept)
    assert "2024-06-12T10:40:00Z ERROR settings: DATABASE_URL is not set" in kept
    start = kept.index(traceback[0])
    assert kept[start : start + len(traceback)] == traceback  # the whole trace, in order
    assert kept[-1] == lines[-1]  # the log's last words
    assert kept[-30:] == lines[-30:]
    assert accounted(lines, kept) == total


def test_java_stack_trace_with_its_causes_is_kept_whole() -> None:
    trace = [
        'Exception in thread "main" org.springframework.beans.factory.BeanCreationException: '
        "Error creating bean with name 'dataSource'",
        "\tat org.springframework.beans.factory.support.AbstractBeanFactory.doGetBean(A.java:3)",
        "\tat com.example.orders.Application.main(Application.java:12)",
        "Caused by: java.net.ConnectException: Connection refused",
        "\tat java.base/sun.nio.ch.Net.connect0(Native Method)",
        "\t... 42 more",
    ]
    lines = [*noise(3000), *trace, *noise(2000, 3000)]

    kept, _ = trim_log("\n".join(lines))

    assert_bounded(kept)
    start = kept.index(trace[0])
    assert kept[start : start + len(trace)] == trace


def test_go_panic_with_its_goroutine_is_kept() -> None:
    panic = [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a5b2c]",
        "",
        "goroutine 1 [running]:",
        "main.(*Server).Start(0x0)",
        "\t/src/server.go:42 +0x2c",
        "main.main()",
        "\t/src/main.go:17 +0x85",
        "exit status 2",
    ]
    lines = [*noise(5000), *panic]

    kept, _ = trim_log("\n".join(lines))

    assert_bounded(kept)
    start = kept.index(panic[0])
    assert kept[start : start + len(panic)] == panic


def test_a_retry_loop_repeating_one_error_is_not_kept_thousands_of_times() -> None:
    lines = []
    for attempt in range(3000):
        lines += noise(2, attempt * 2)
        lines.append(
            f"2024-06-12T10:00:00Z ERROR attempt {attempt}: dial tcp 10.0.3.7:5432: refused"
        )
    lines.append("2024-06-12T10:59:59Z FATAL giving up after 3000 attempts")

    kept, total = trim_log("\n".join(lines))

    assert_bounded(kept)
    before_tail = [line for line in kept[:-30] if "ERROR attempt" in line]
    assert len(before_tail) == 2  # the first two: 2,990 more are only counted
    assert "ERROR attempt 0:" in before_tail[0]
    assert len(kept) < 40
    assert kept[-1].endswith("FATAL giving up after 3000 attempts")
    assert accounted(lines, kept) == total


def test_errors_everywhere_with_long_lines_still_fit_the_character_cap() -> None:
    lines = [f"ERROR {i} " + "x" * 1000 for i in range(10_000)]

    kept, total = trim_log("\n".join(lines))

    assert total == 10_000
    assert_bounded(kept)
    assert all(len(line) <= 300 for line in kept)  # each line cut to a readable length
    assert kept[-1].startswith("ERROR 9999 ")


def test_a_short_log_is_returned_as_it_is_without_colour_codes() -> None:
    text = "starting\n\x1b[31mERROR\x1b[0m config missing\r\nexiting\n"
    assert trim_log(text) == (["starting", "ERROR config missing", "exiting"], 3)
    assert trim_log("") == ([], 0)


def test_a_log_without_errors_keeps_its_tail() -> None:
    lines = noise(5000)
    kept, _ = trim_log("\n".join(lines))
    assert kept[0] == "[... 4970 lines omitted ...]"
    assert kept[1:] == lines[-30:]
