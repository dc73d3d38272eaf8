"""The local runtime end to end, in-process: template.yaml plus the test resources of
``tests/fixtures/templates/local-triggers.yaml``, every trigger reaching the test functions.

One runtime serves the module (start-up is the slow part); each test tags what it sends
with a fresh marker and looks only for its own records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pitcrew.local.demo import Demo
from pitcrew.local.errors import UnknownNameError
from pitcrew.local.runtime import LocalRuntime
from tests.support.events import EVENTS_DIR as EVENTS
from tests.support.local import FakeClock, local_runtime, records, template_with, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-runtime")]

START = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock) -> Iterator[LocalRuntime]:
    template = template_with(tmp_path_factory.mktemp("stack"), "local-triggers.yaml")
    with local_runtime(template, clock=clock.now, sleep=clock.sleep) as started:
        yield started


def marker() -> str:
    return uuid.uuid4().hex


def arn_of(runtime: LocalRuntime, logical_id: str) -> str:
    assert runtime.stack is not None
    return runtime.stack.attrs[logical_id, "Arn"]


def ref(runtime: LocalRuntime, logical_id: str) -> str:
    assert runtime.stack is not None
    return runtime.stack.refs[logical_id]


def mentioning(runtime: LocalRuntime, recorder: str, text: str) -> list[dict[str, Any]]:
    return [r for r in records(runtime, recorder) if text in json.dumps(r["event"])]


def bodies(record: dict[str, Any]) -> list[str]:
    return [r["body"] for r in record["event"]["Records"]]


def test_resources_added_to_the_template_appear_with_no_other_change(
    runtime: LocalRuntime,
) -> None:
    tables = runtime.client("dynamodb").list_tables()["TableNames"]
    queues = runtime.client("sqs").list_queues()["QueueUrls"]
    machines = runtime.client("stepfunctions").list_state_machines()["stateMachines"]
    functions = runtime.client("lambda").list_functions()["Functions"]
    rules = runtime.client("events").list_rules(EventBusName="pitcrew")["Rules"]

    # template.yaml's own resources ...
    assert {ref(runtime, "IncidentsTable"), ref(runtime, "CostsTable")} <= set(tables)
    assert ref(runtime, "IncidentQueue") in queues
    # ... and the ones the test added to it.
    assert ref(runtime, "RecordsTable") in tables
    assert {ref(runtime, "WorkQueue"), ref(runtime, "WorkDeadLetterQueue")} <= set(queues)
    assert "local-test-pipeline" in {m["name"] for m in machines}
    by_name = {f["FunctionName"]: f for f in functions}
    recorder = by_name[ref(runtime, "QueueRecorderFunction")]
    assert (recorder["Timeout"], recorder["MemorySize"]) == (5, 256)
    assert recorder["Environment"]["Variables"]["RECORDER_NAME"] == "queue"
    assert ref(runtime, "ApiFunction") in by_name
    assert any("Diagnosed" in r["Name"] for r in rules)


def test_a_queued_message_reaches_its_function(runtime: LocalRuntime) -> None:
    sqs = runtime.client("sqs")
    body = f"hello {marker()}"
    sqs.send_message(
        QueueUrl=ref(runtime, "WorkQueue"),
        MessageBody=body,
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
    )

    (record,) = wait_for(lambda: mentioning(runtime, "queue", body))

    (delivered,) = record["event"]["Records"]
    assert delivered["body"] == body
    assert delivered["eventSource"] == "aws:sqs"
    assert delivered["eventSourceARN"] == arn_of(runtime, "WorkQueue")
    assert delivered["attributes"]["ApproximateReceiveCount"] == "1"
    assert delivered["messageAttributes"]["kind"]["stringValue"] == "greeting"
    context, env = record["context"], record["environment"]
    assert context["function_name"] == ref(runtime, "QueueRecorderFunction")
    assert context["memory_limit_in_mb"] == "256"
    assert 0 < context["remaining_ms"] <= 5000
    # The template's Environment, with Globals merged, and the local runtime's own.
    assert env["RECORDER_NAME"] == "queue"
    assert env["EVENT_BUS_NAME"] == "pitcrew"
    assert env["INCIDENT_QUEUE_URL"] == ref(runtime, "IncidentQueue")
    assert env["AWS_ENDPOINT_URL"] == runtime.endpoint_url
    assert env["PITCREW_CONFIG"] == runtime.config_source
    assert env["PITCREW_CONFIG"].endswith("infra/local/pitcrew.yaml")

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=ref(runtime, "WorkQueue"), AttributeNames=["All"]
        )["Attributes"]
        return attributes["ApproximateNumberOfMessages"] == "0" and (
            attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    wait_for(drained)


def test_a_message_whose_handler_keeps_failing_ends_in_the_dlq(runtime: LocalRuntime) -> None:
    sqs = runtime.client("sqs")
    body = f"always-fail {marker()}"
    sqs.send_message(QueueUrl=ref(runtime, "WorkQueue"), MessageBody=body)

    def in_dead_letter_queue() -> list[dict[str, Any]]:
        answer = sqs.receive_message(
            QueueUrl=ref(runtime, "WorkDeadLetterQueue"), WaitTimeSeconds=1, VisibilityTimeout=0
        )
        return [m for m in answer.get("Messages", []) if m["Body"] == body]

    wait_for(in_dead_letter_queue, timeout=15)

    attempts = mentioning(runtime, "queue", body)
    assert len(attempts) == 2  # maxReceiveCount
    counts = [a["event"]["Records"][0]["attributes"]["ApproximateReceiveCount"] for a in attempts]
    assert counts == ["1", "2"]


def test_partial_batch_failures_leave_only_the_reported_messages(runtime: LocalRuntime) -> None:
    sqs = runtime.client("sqs")
    tag = marker()
    sent = [f"ok-1 {tag}", f"fail-item-2 {tag}", f"ok-3 {tag}"]
    sqs.send_message_batch(
        QueueUrl=ref(runtime, "PartialQueue"),
        Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(sent)],
    )

    def delivered() -> list[str]:
        return [b for r in mentioning(runtime, "queue", tag) for b in bodies(r)]

    try:
        wait_for(lambda: delivered().count(sent[1]) >= 2, timeout=10)
        seen = delivered()
        assert seen.count(sent[0]) == 1
        assert seen.count(sent[2]) == 1
    finally:
        sqs.purge_queue(QueueUrl=ref(runtime, "PartialQueue"))


def put(runtime: LocalRuntime, detail_type: str, detail: dict[str, Any], **entry: Any) -> None:
    answer = runtime.client("events").put_events(
        Entries=[
            {
                "EventBusName": "pitcrew",
                "Source": "pitcrew",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                **entry,
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0


def test_an_event_on_the_bus_reaches_the_functions_whose_rules_match_it_and_no_others(
    runtime: LocalRuntime,
) -> None:
    tag = marker()
    put(runtime, "IncidentDiagnosed", {"tag": tag, "case": "diagnosed"})
    put(
        runtime,
        "CostAnomalyDetected",
        {"tag": tag, "case": "big", "delta_usd": 42, "service": "EC2"},
    )
    put(
        runtime,
        "CostAnomalyDetected",
        {"tag": tag, "case": "small", "delta_usd": 5, "service": "EC2"},
    )
    put(
        runtime,
        "CostAnomalyDetected",
        {"tag": tag, "case": "tax", "delta_usd": 99, "service": "Tax"},
    )
    put(
        runtime,
        "CostAnomalyDetected",
        {"tag": tag, "case": "forecast", "delta_usd": 99, "service": "S3", "forecast": 1},
    )
    put(runtime, "IncidentOpened", {"tag": tag, "case": "opened"})
    # The default bus: only a schedule rule there, which must not take it.
    put(runtime, "IncidentDiagnosed", {"tag": tag, "case": "default-bus"}, EventBusName="default")

    (diagnosed,) = wait_for(lambda: mentioning(runtime, "diagnosed", tag))
    (costs,) = wait_for(lambda: mentioning(runtime, "costs", tag))
    time.sleep(0.5)  # asynchronous delivery: give any wrong match time to show up

    assert diagnosed["event"]["detail"]["case"] == "diagnosed"
    assert diagnosed["event"]["detail-type"] == "IncidentDiagnosed"
    assert diagnosed["event"]["source"] == "pitcrew"
    assert diagnosed["event"]["time"].endswith("Z")
    assert costs["event"]["detail"]["case"] == "big"
    assert len(mentioning(runtime, "diagnosed", tag)) == 1
    assert len(mentioning(runtime, "costs", tag)) == 1
    assert mentioning(runtime, "never", tag) == []
    assert mentioning(runtime, "schedule", tag) == []


def test_a_template_rule_targeting_a_function_delivers_its_transformed_input(
    runtime: LocalRuntime,
) -> None:
    tag = marker()

    put(runtime, "PromotionStarted", {"tag": tag})

    (record,) = wait_for(lambda: mentioning(runtime, "diagnosed", tag))
    assert record["event"] == {"promotion": tag, "from": "pitcrew"}


def test_a_rate_schedule_fires_on_time(runtime: LocalRuntime, clock: FakeClock) -> None:
    rule_arn = arn_of(runtime, "ScheduleRecorderFunctionEveryMinute")

    def scheduled() -> list[dict[str, Any]]:
        return [
            r
            for r in records(runtime, "schedule")
            if r["event"].get("detail-type") == "Scheduled Event"
            and r["event"]["time"] != "now"
            and dt.datetime.fromisoformat(r["event"]["time"]) > START
        ]

    already = len(scheduled())
    clock.advance(59)
    time.sleep(0.3)
    assert len(scheduled()) == already  # not yet: the rule appeared at START
    clock.advance(2)
    fired = wait_for(lambda: scheduled()[already:])

    event = fired[0]["event"]
    assert event["time"] == (START + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (event["source"], event["detail"], event["resources"]) == ("aws.events", {}, [rule_arn])
    clock.advance(60)
    again = wait_for(lambda: scheduled()[already + 1 :])
    assert again[0]["event"]["time"] == (START + dt.timedelta(minutes=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_fire_runs_a_schedule_rule_now(runtime: LocalRuntime) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)

    rule = runtime.fire("ScheduleRecorderFunction.EveryMinute", when)

    (record,) = wait_for(
        lambda: [
            r for r in records(runtime, "schedule") if r["event"]["time"] == "2030-01-02T03:04:00Z"
        ]
    )
    assert record["event"]["resources"][0].endswith(f"rule/{rule}")
    assert runtime.fire("EveryMinute") == rule
    with pytest.raises(UnknownNameError, match=r"known: .*EveryMinute"):
        runtime.fire("Hourly")


def execution_result(runtime: LocalRuntime, execution_arn: str) -> dict[str, Any]:
    sfn = runtime.client("stepfunctions")
    return wait_for(
        lambda: (
            (d := sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING" and d
        )
    )


def test_a_state_machine_runs_lambda_tasks_and_waits_for_the_task_token(
    runtime: LocalRuntime,
) -> None:
    sfn = runtime.client("stepfunctions")
    value = int(time.time() * 1000) % 1_000_000
    execution = sfn.start_execution(
        stateMachineArn=arn_of(runtime, "PipelineStateMachine"), input=json.dumps({"value": value})
    )["executionArn"]

    def waiting_task() -> list[dict[str, Any]]:
        return [
            r
            for r in records(runtime, "task")
            if r["event"].get("doubled") == value * 2 and "taskToken" in r["event"]
        ]

    (task,) = wait_for(waiting_task)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    sfn.send_task_success(taskToken=task["event"]["taskToken"], output='{"approved": true}')

    result = execution_result(runtime, execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"approved": True}
    # lambda:invoke got {"value"}; the plain-ARN task got the first task's output.
    calls = [r["event"] for r in records(runtime, "task")]
    assert {"value": value} in calls
    assert {"doubled": value * 2} in calls


def test_a_failing_task_fails_the_execution_with_the_handlers_error(
    runtime: LocalRuntime,
) -> None:
    sfn = runtime.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=arn_of(runtime, "PipelineStateMachine"),
        input=json.dumps({"value": "always-fail"}),
    )["executionArn"]

    result = execution_result(runtime, execution)

    assert result["status"] == "FAILED"
    assert result.get("error") == "RuntimeError"


def test_secrets_manager_rotation_drives_the_four_steps(runtime: LocalRuntime) -> None:
    secrets = runtime.client("secretsmanager")
    secret = ref(runtime, "RotatedSecret")
    steps = ["createSecret", "setSecret", "testSecret", "finishSecret"]
    # The RotationSchedule rotated it once at start-up, as CloudFormation would.
    assert [r["event"]["Step"] for r in records(runtime, "rotation")][:4] == steps
    before = secrets.get_secret_value(SecretId=secret)

    answer = secrets.rotate_secret(
        SecretId=secret,
        RotationLambdaARN=arn_of(runtime, "RotationFunction"),
        RotateImmediately=True,
    )

    token = answer["VersionId"]
    calls = [
        r["event"]
        for r in records(runtime, "rotation")
        if r["event"]["ClientRequestToken"] == token
    ]
    assert [c["Step"] for c in calls] == steps
    assert all(c["SecretId"] in (secret, before["Name"]) for c in calls)
    after = secrets.get_secret_value(SecretId=secret)
    assert after["VersionId"] == token
    assert after["SecretString"].startswith("rotated-")
    assert after["SecretString"] != before["SecretString"]
    previous = secrets.get_secret_value(SecretId=secret, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == before["SecretString"]


def test_the_api_serves_the_routes_the_template_declares(runtime: LocalRuntime) -> None:
    assert runtime.api_url is not None
    health = httpx.get(f"{runtime.api_url}/healthz", timeout=10)
    unknown = httpx.post(f"{runtime.api_url}/no-such-route", json={}, timeout=10)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert unknown.status_code == 403
    assert unknown.json() == {"message": "Missing Authentication Token"}


def test_lambda_invoke_on_the_emulator_runs_the_function_in_process(
    runtime: LocalRuntime,
) -> None:
    lam = runtime.client("lambda")
    name = ref(runtime, "TaskFunction")

    answer = lam.invoke(FunctionName=name, Payload=b'{"value": 2}')
    timed_out = lam.invoke(FunctionName=name, Payload=b'{"x": "sleep-past-timeout"}')
    tag = marker()
    queued = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"tag": tag}))

    assert answer.get("FunctionError") is None
    assert json.loads(answer["Payload"].read()) == {"doubled": 4}
    assert timed_out["FunctionError"] == "Unhandled"
    error = json.loads(timed_out["Payload"].read())
    assert error["errorType"] == "Sandbox.Timedout"
    assert "after 1.00 seconds" in error["errorMessage"]
    assert queued["StatusCode"] == 202
    wait_for(lambda: mentioning(runtime, "task", tag))


def test_demo_sends_the_samples_through_the_running_stack(
    runtime: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runtime.api_url is not None
    demo = Demo(api_url=runtime.api_url, aws_endpoint=runtime.endpoint_url, events_dir=EVENTS)

    assert demo.run() == 0

    shown = capsys.readouterr().out
    assert "GET /healthz -> 200" in shown
    assert "firing-crashloop.json" in shown and "POST /webhooks/alertmanager" in shown
    # The sample IncidentDiagnosed event reaches the test function whose rule matches it.
    assert "DiagnosedRecorderFunction" in shown
    wait_for(lambda: mentioning(runtime, "diagnosed", "01JD3XK5Q8ZB7N4M2V6W9YT0RC"))


def test_the_banner_names_who_invokes_each_function(runtime: LocalRuntime) -> None:
    from pitcrew.local.cli import _function_triggers

    lines = _function_triggers(runtime)
    assert "rotate_secret (Secrets Manager rotation)" in lines
    (steps,) = [line for line in lines if line.startswith("promotion_steps (")]
    assert "Step Functions" in steps and "Schedule" in steps


def test_an_action_the_emulator_does_not_implement_is_one_warning_not_a_traceback(
    runtime: LocalRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):  # moto answers 500 (botocore retries it first)
        runtime.client("ce").get_anomaly_monitors()

    said = [r for r in caplog.records if r.name == "werkzeug" and r.levelno >= logging.WARNING]
    assert said and all(r.exc_info is None for r in said)
    assert "AWS emulator: The get_anomaly_monitors action has not been implemented" in (
        said[0].getMessage()
    )
