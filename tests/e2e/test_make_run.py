"""`make run` from the outside: the stack comes up on free ports, a second client sees the
template's resources through the emulator's port, the API answers, and Ctrl-C stops it all
cleanly."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from pitcrew.local.template import load_template
from tests.e2e.conftest import PITCREW, REPO, LocalStack, free_port, start_local_stack

pytestmark = pytest.mark.e2e


def names_for(logical_ids: list[str], names: list[str]) -> dict[str, list[str]]:
    return {lid: [n for n in names if lid in n] for lid in logical_ids}


def test_pitcrew_local_serves_the_template_and_stops_cleanly_on_ctrl_c() -> None:
    template = load_template()
    table_ids = list(template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"))
    queue_ids = list(template.of_type("AWS::SQS::Queue"))
    machine_ids = list(
        template.of_type("AWS::StepFunctions::StateMachine", "AWS::Serverless::StateMachine")
    )

    with start_local_stack() as stack:
        tables = stack.client("dynamodb").list_tables()["TableNames"]
        queues = [url.rsplit("/", 1)[-1] for url in stack.client("sqs").list_queues()["QueueUrls"]]
        machines = stack.client("stepfunctions").list_state_machines()["stateMachines"]
        health = httpx.get(f"{stack.api_url}/healthz", timeout=10)

        code, out, err = stack.stop()

    assert all(names_for(table_ids, tables).values()), (table_ids, tables)
    assert all(names_for(queue_ids, queues).values()), (queue_ids, queues)
    assert len(machines) == len(machine_ids)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert code == 0, err
    assert stack.api_url in out and stack.aws_endpoint in out  # the banner
    assert "curl" in out and "/webhooks/alertmanager" in out
    assert "pitcrew local: stopping" in err
    assert "Traceback" not in err


def test_a_taken_port_is_reported_and_the_command_fails(local_stack: LocalStack) -> None:
    port = local_stack.aws_endpoint.rsplit(":", 1)[-1]

    clash = subprocess.run(
        [str(PITCREW), "local", "--port", str(free_port()), "--aws-port", port],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert clash.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in clash.stderr
    assert "--aws-port" in clash.stderr
    assert local_stack.process.poll() is None  # the running stack is untouched
