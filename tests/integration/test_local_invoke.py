"""``pitcrew invoke FUNCTION --event FILE``: once as a user runs it (a subprocess), then
through ``pitcrew.cli.main`` in-process for the failure paths (same code, faster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pitcrew.cli import main
from tests.support.local import REPO, template_with

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-invoke")]

PITCREW = Path(sys.executable).parent / "pitcrew"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_with(tmp_path_factory.mktemp("invoke"), "local-invoke.yaml")


def invoke(template: Path, function: str, event: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PITCREW), "invoke", function, "--event", str(event), "--template", str(template)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invoke_runs_a_handler_on_a_sample_event_and_prints_json(template: Path) -> None:
    done = invoke(template, "recorder", REPO / "events" / "sqs" / "incident-batch.json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"batchItemFailures": []}


def run_main(*argv: str) -> int:
    return main(list(argv))


def test_invoke_exits_non_zero_and_shows_the_handlers_error(
    template: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "fail.json"
    event.write_text('{"please": "always-fail"}')

    code = run_main(
        "invoke", "RecorderFunction", "--event", str(event), "--template", str(template)
    )

    out, err = capfd.readouterr()
    assert code == 1
    error = json.loads(out)
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "asked to fail")
    assert "RecorderFunction failed: RuntimeError: asked to fail" in err
    assert "recorder/app.py" in err  # the handler's stack trace


def test_invoke_names_the_known_functions_when_given_an_unknown_one(
    template: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "empty.json"
    event.write_text("{}")

    code = run_main("invoke", "nosuch", "--event", str(event), "--template", str(template))

    out, err = capfd.readouterr()
    assert code == 2
    assert "no function named 'nosuch'" in err
    assert "recorder" in err and "api" in err
    assert out == ""
