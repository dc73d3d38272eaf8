"""The events triggers hand to functions: SQS batches, EventBridge targets, API Gateway."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pitcrew.local.api import Stage, api_gateway_event, routed
from pitcrew.local.bridge import event_for_target, iso_time
from pitcrew.local.functions import Invocation
from pitcrew.local.sqs import SqsMapping, SqsPoller, failed_message_ids, sqs_record
from tests.support.events import load_event

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:pitcrew-IncidentQueue-7QM2XK9VLW3R"


def received_message(**overrides: Any) -> dict[str, Any]:
    message = {
        "MessageId": "bd46d46d-ca51-4f9b-a925-fde47e171edf",
        "ReceiptHandle": "AQEBD1eI",
        "MD5OfBody": "f2b4f57c3bfde6381dd1f058094629f2",
        "Body": '{"alert": {}}',
        "Attributes": {
            "SenderId": "AROAZ5KQ3VJMBEXAMPLE7:pitcrew-api",
            "SentTimestamp": "1732004143102",
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": "1732004143143",
            "MessageDeduplicationId": "ignored-on-standard-queues",
        },
    }
    message.update(overrides)
    return message


def test_an_sqs_record_has_the_shape_lambda_delivers() -> None:
    sample = load_event("sqs/incident-batch.json")["Records"][0]

    record = sqs_record(received_message(), QUEUE_ARN, "eu-west-1")

    assert list(record) == list(sample)
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == QUEUE_ARN
    assert record["awsRegion"] == "eu-west-1"
    assert record["messageAttributes"] == {}
    assert set(record["attributes"]) <= set(sample["attributes"]) | {"MessageDeduplicationId"}


def test_sqs_message_attributes_are_shaped_like_lambdas() -> None:
    message = received_message(
        MessageAttributes={
            "kind": {"StringValue": "alert", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
        },
        MD5OfMessageAttributes="abc",
    )

    record = sqs_record(message, QUEUE_ARN, "eu-west-1")

    assert record["messageAttributes"] == {
        "kind": {
            "stringValue": "alert",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\x01").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert record["md5OfMessageAttributes"] == "abc"


def invocation(payload: Any, error: str | None = None) -> Invocation:
    return Invocation("diagnose", "req", payload, error, 1.0)


IDS = ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("result", "report", "kept"),
    [
        (invocation(None), False, set()),
        (invocation({"errorType": "ValueError"}, "Unhandled"), False, set(IDS)),
        (invocation({"errorType": "ValueError"}, "Unhandled"), True, set(IDS)),
        # Without ReportBatchItemFailures a returned report means nothing.
        (invocation({"batchItemFailures": [{"itemIdentifier": "m2"}]}), False, set()),
        (invocation({"batchItemFailures": [{"itemIdentifier": "m2"}]}), True, {"m2"}),
        (invocation({"batchItemFailures": []}), True, set()),
        (invocation(None), True, set()),
        (invocation("done"), True, set()),
        # An unusable report fails the whole batch, as in Lambda.
        (invocation({"batchItemFailures": [{"itemIdentifier": "other"}]}), True, set(IDS)),
        (invocation({"batchItemFailures": [{"itemIdentifier": ""}]}), True, set(IDS)),
        (invocation({"batchItemFailures": ["m1"]}), True, set(IDS)),
    ],
)
def test_which_messages_stay_on_the_queue(result: Invocation, report: bool, kept: set[str]) -> None:
    assert failed_message_ids(result, IDS, report) == kept


def test_sqs_mapping_reads_sams_event_properties() -> None:
    mapping = SqsMapping.from_event(
        "diagnose",
        "Incidents",
        {
            "Queue": QUEUE_ARN,
            "BatchSize": 5,
            "MaximumBatchingWindowInSeconds": 2,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FilterCriteria": {
                "Filters": [{"Pattern": {"body": {"alert": {"status": ["firing"]}}}}]
            },
        },
    )

    assert (mapping.batch_size, mapping.batching_window_s) == (5, 2.0)
    assert mapping.report_batch_item_failures
    assert mapping.queue_name == "pitcrew-IncidentQueue-7QM2XK9VLW3R"
    assert json.loads(mapping.filters[0]) == {"body": {"alert": {"status": ["firing"]}}}
    with pytest.raises(ValueError, match="queue ARN"):
        SqsMapping.from_event("diagnose", "Incidents", {"Queue": "https://queue-url"})


MOTO_EVENT = {
    "version": "0",
    "id": "8454688c",
    "detail-type": "IncidentDiagnosed",
    "source": "pitcrew",
    "account": "123456789012",
    "time": 1732003106.0,
    "region": "eu-west-1",
    "resources": [],
    "detail": {"id": "01JD3", "cluster": "prod-eu"},
    "ingestion-time": 1732003106.2,
}


def test_a_lambda_target_gets_the_event_as_eventbridge_sends_it() -> None:
    sample = load_event("eventbridge/IncidentDiagnosed.json")

    event = event_for_target(MOTO_EVENT, {"Id": "1", "Arn": "arn:aws:lambda:..."})

    assert list(event) == list(sample)
    assert event["time"] == "2024-11-19T07:58:26Z"
    assert iso_time("2024-11-19T07:58:26Z") == "2024-11-19T07:58:26Z"


def test_target_input_options() -> None:
    assert event_for_target(MOTO_EVENT, {"Input": '{"fixed": true}'}) == {"fixed": True}
    assert event_for_target(MOTO_EVENT, {"InputPath": "$.detail"}) == MOTO_EVENT["detail"]
    transformed = event_for_target(
        MOTO_EVENT,
        {
            "InputTransformer": {
                "InputPathsMap": {"cluster": "$.detail.cluster"},
                "InputTemplate": '{"where": <cluster>}',
            }
        },
    )
    assert transformed == {"where": "prod-eu"}
    in_text = event_for_target(
        MOTO_EVENT,
        {
            "InputTransformer": {
                "InputPathsMap": {"cluster": "$.detail.cluster", "missing": "$.detail.nope"},
                "InputTemplate": '{"text": "on <cluster>", "detail": <aws.events.event.json>, '
                '"none": <missing>}',
            }
        },
    )
    assert in_text["text"] == "on prod-eu"
    assert in_text["detail"]["detail"] == MOTO_EVENT["detail"]
    assert in_text["none"] is None
    plain = event_for_target(
        MOTO_EVENT,
        {
            "InputTransformer": {
                "InputPathsMap": {"cluster": "$.detail.cluster"},
                "InputTemplate": "Incident in <cluster>",
            }
        },
    )
    assert plain == "Incident in prod-eu"


def test_only_routes_the_template_declares_are_served() -> None:
    app_routes = {
        "/healthz": {"GET": "health"},
        "/incidents": {"GET": "list", "POST": "create"},
        "/incidents/{id}": {"GET": "show"},
    }

    kept, unrouted = routed(app_routes, [("/healthz", "GET"), ("/incidents", "GET")])
    assert kept == {"/healthz": {"GET": "health"}, "/incidents": {"GET": "list"}}
    assert unrouted == ["POST /incidents", "GET /incidents/{id}"]

    kept, unrouted = routed(app_routes, [("/{proxy+}", "ANY")])
    assert kept == app_routes and unrouted == []

    kept, unrouted = routed(app_routes, None)
    assert kept == app_routes and unrouted == []


def test_api_gateway_event_has_the_rest_proxy_shape() -> None:
    local_event = {
        "requestContext": {
            "httpMethod": "POST",
            "resourcePath": "/incidents/{id}",
            "identity": {"sourceIp": "127.0.0.1"},
            "path": "/incidents/42",
        },
        "headers": {"content-type": "application/json", "user-agent": "curl/8"},
        "pathParameters": {"id": "42"},
        "stageVariables": {},
        "multiValueQueryStringParameters": {"status": ["open", "all"]},
        "body": b'{"x": 1}',
    }

    event = api_gateway_event(local_event, Stage("v1", "abc123defg", "123456789012"), "h:1")

    assert event["resource"] == "/incidents/{id}"
    assert (event["path"], event["httpMethod"]) == ("/incidents/42", "POST")
    assert event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"status": "all"}
    assert event["multiValueHeaders"]["user-agent"] == ["curl/8"]
    context = event["requestContext"]
    assert (context["stage"], context["apiId"], context["path"]) == (
        "v1",
        "abc123defg",
        "/v1/incidents/42",
    )
    json.dumps(event)  # what crosses the wire must be JSON

    binary = api_gateway_event({**local_event, "body": b"\xff\xfe"}, Stage(), "h:1")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\xfe"


class FakeSqs:
    """ReceiveMessage answers from a script; DeleteMessageBatch is recorded."""

    def __init__(self, *batches: list[dict[str, Any]]) -> None:
        self.batches = list(batches)
        self.deleted: list[str] = []

    def get_queue_url(self, **_: Any) -> dict[str, str]:
        return {"QueueUrl": "http://127.0.0.1/123456789012/q"}

    def receive_message(self, **_: Any) -> dict[str, Any]:
        return {"Messages": self.batches.pop(0)} if self.batches else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:
        self.deleted += [e["ReceiptHandle"] for e in Entries]


class FakeRunner:
    name = "diagnose"

    def __init__(self, answer: Invocation) -> None:
        self.answer = answer
        self.events: list[Any] = []

    def invoke(self, event: Any, *, trigger: str) -> Invocation:
        self.events.append(event)
        return self.answer


def message(number: int, body: str) -> dict[str, Any]:
    return received_message(MessageId=f"m{number}", ReceiptHandle=f"r{number}", Body=body)


def poller(sqs: FakeSqs, runner: FakeRunner, **properties: Any) -> SqsPoller:
    mapping = SqsMapping.from_event("diagnose", "Incidents", {"Queue": QUEUE_ARN, **properties})
    return SqsPoller(mapping, runner, sqs, region="eu-west-1")  # type: ignore[arg-type]


def test_a_successful_batch_is_deleted_and_a_failed_one_left_for_redelivery() -> None:
    sqs = FakeSqs([message(1, "a"), message(2, "b")], [message(3, "c")])
    ok = FakeRunner(invocation({"done": True}))

    assert poller(sqs, ok).poll_once() == 2
    assert [r["body"] for r in ok.events[0]["Records"]] == ["a", "b"]
    assert sqs.deleted == ["r1", "r2"]

    failing = FakeRunner(invocation({"errorType": "ValueError"}, "Unhandled"))
    assert poller(sqs, failing).poll_once() == 1
    assert sqs.deleted == ["r1", "r2"]


def test_reported_failures_are_all_that_stays() -> None:
    sqs = FakeSqs([message(1, "a"), message(2, "b"), message(3, "c")])
    runner = FakeRunner(invocation({"batchItemFailures": [{"itemIdentifier": "m2"}]}))

    poller(sqs, runner, FunctionResponseTypes=["ReportBatchItemFailures"]).poll_once()

    assert sqs.deleted == ["r1", "r3"]


def test_filter_criteria_drop_what_does_not_match_without_invoking() -> None:
    sqs = FakeSqs(
        [
            message(1, '{"status": "firing"}'),
            message(2, '{"status": "resolved"}'),
            message(3, "plain text"),
        ]
    )
    runner = FakeRunner(invocation(None))
    pattern = {"body": {"status": ["firing"]}}

    poller(sqs, runner, FilterCriteria={"Filters": [{"Pattern": json.dumps(pattern)}]}).poll_once()

    assert [r["body"] for r in runner.events[0]["Records"]] == ['{"status": "firing"}']
    assert sorted(sqs.deleted) == ["r1", "r2", "r3"]  # filtered out, or handled
