"""``pitcrew local`` / ``invoke`` / ``demo``: registration and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pitcrew.cli import build_parser, main
from pitcrew.local.cli import read_event


def test_registering_the_commands_does_not_import_the_emulator() -> None:
    code = (
        "import sys; import pitcrew.cli as c; c.build_parser(); "
        "print(any(m.split('.')[0] in ('moto', 'boto3', 'chalice') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_commands_and_their_defaults() -> None:
    parser = build_parser()

    local = parser.parse_args(["local"])
    assert (local.port, local.aws_port, local.fire) == (8000, 4566, [])
    invoke = parser.parse_args(["invoke", "api", "--event", "e.json"])
    assert (invoke.function, invoke.event) == ("api", "e.json")
    demo = parser.parse_args(["demo"])
    assert demo.api == "http://127.0.0.1:8000"


def test_read_event_names_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": }')

    assert read_event(str(good)) == {"a": 1}
    with pytest.raises(ValueError, match=r"no such event file: .*missing\.json"):
        read_event(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON: .* line 1 column 7"):
        read_event(str(bad))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such event file"), ("not json", "is not valid JSON")],
)
def test_invoke_rejects_a_bad_event_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    event = tmp_path / "event.json"
    if content is not None:
        event.write_text(content)

    code = main(["invoke", "api", "--event", str(event)])

    assert code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
