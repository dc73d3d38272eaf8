"""Every function of the template refuses to start on an invalid configuration, with the
problems `pitcrew config validate` prints: a cold start fails loudly instead of running
half-configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pitcrew.cli import main
from pitcrew.local.template import load_template

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BAD = "alertmanager:\n  max_body_bytes: lots\ngithb: {}\n"


def function_dirs() -> list[str]:
    template = load_template(REPO / "template.yaml")
    return sorted(
        str(resource.properties["CodeUri"]).rstrip("/")
        for resource in template.of_type("AWS::Serverless::Function").values()
    )


@pytest.mark.parametrize("code_dir", function_dirs())
def test_the_function_refuses_to_start_with_the_cli_message(
    code_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "pitcrew.yaml"
    bad.write_text(BAD, encoding="utf-8")
    assert main(["config", "validate", str(bad)]) == 1
    problems = [line.strip()[2:] for line in capsys.readouterr().err.splitlines() if "- " in line]
    assert any("alertmanager.max_body_bytes" in p for p in problems)
    assert any("githb" in p for p in problems)

    env = {
        **os.environ,
        "PITCREW_CONFIG": str(bad),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), os.environ.get("PYTHONPATH", "")]),
    }
    started = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=REPO / code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0, f"{code_dir} started on an invalid configuration"
    assert "ConfigError" in started.stderr
    for problem in problems:
        assert problem in started.stderr, f"{code_dir}: {problem!r} not said"
