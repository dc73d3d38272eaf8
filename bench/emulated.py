"""What the in-process benchmarks (``storm.py``, ``intake.py``) share: an environment that can
only ever reach the embedded emulator, and template.yaml's stack provisioned in it, as the
tests' ``stack`` fixture does.

Import this module before anything creates a boto3 client (moto's "pesky imports").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "shared")]
os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - fake: moto answers every call in this process
    AWS_SESSION_TOKEN="bench",  # noqa: S106
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="pitcrew",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
for _name in list(os.environ):
    if _name == "AWS_PROFILE" or _name.startswith("AWS_ENDPOINT_URL"):
        del os.environ[_name]


def provision_stack(config_text: str, folder: Path) -> tuple[Any, Any]:
    """template.yaml's stack in the (already started) emulator, every function's variables in
    this process's environment, and ``config_text`` as the configuration. Returns the stack
    and the boto3 session the harness uses."""
    import boto3

    from pitcrew.local.provision import provision
    from pitcrew.local.template import load_template

    harness = boto3.session.Session()
    stack = provision(
        load_template(),
        client_factory=lambda service: harness.client(service, region_name="us-east-1"),
        invocation_targets=False,
    )
    for function in stack.functions.values():
        os.environ.update(function.environment)
    config = folder / "pitcrew.yaml"
    config.write_text(config_text, encoding="utf-8")
    os.environ["PITCREW_CONFIG"] = str(config)
    return stack, harness
