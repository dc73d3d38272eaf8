"""POST /webhooks/alertmanager against the stack of template.yaml in moto: authentication,
limits, durable dedup across deliveries, what lands on the incident queue, and that nothing
accepted is lost when the queue cannot be reached."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from chalice import Chalice
from chalice.test import Client

from pitcrew.api import alertmanager, create_app
from pitcrew.api.routes import ApiContext
from pitcrew.config import load_config
from pitcrew.incidents.intake import MAX_MESSAGE_BYTES, AlertIntake, SeenAlerts
from pitcrew.local.provision import Stack
from pitcrew.observability import instrument
from tests.conftest import harness_client
from tests.support.events import load_event, load_raw

CRASHLOOP = "alertmanager/firing-crashloop.json"
WEBHOOK = "/webhooks/alertmanager"


@pytest.fixture
def token(stack: Stack) -> str:
    secret = harness_client("secretsmanager").get_secret_value(SecretId="pitcrew/alertmanager")
    return str(secret["SecretString"])


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(create_app(load_config(), instrument("api-test"))) as test_client:
        yield test_client


def post(client: Client, body: bytes | str, token: str, **headers: str) -> Any:
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **headers}
    return client.http.post(WEBHOOK, body=body, headers=sent)


def queued() -> list[dict[str, Any]]:
    """Every message body on the incident queue (received once, then deleted)."""
    sqs = harness_client("sqs")
    url = os.environ["INCIDENT_QUEUE_URL"]
    bodies = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return bodies
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def answer(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, json.loads(response.body)


# ------------------------------------------------------------------ accepted and deduplicated


def test_a_delivery_is_accepted_and_enqueued_with_its_group(client: Client, token: str) -> None:
    notification = load_event(CRASHLOOP)

    status, body = answer(post(client, load_raw(CRASHLOOP), token))

    assert (status, body) == (202, {"accepted": 2, "duplicates": 0})
    (message,) = queued()
    assert message["alerts"] == notification["alerts"]
    assert message["group"] == {
        key: notification[key]
        for key in (
            "receiver",
            "status",
            "externalURL",
            "groupKey",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "truncatedAlerts",
        )
    }


def test_a_resend_is_all_duplicates_and_enqueues_nothing(client: Client, token: str) -> None:
    post(client, load_raw(CRASHLOOP), token)
    queued()

    status, body = answer(post(client, load_raw(CRASHLOOP), token))

    assert (status, body) == (202, {"accepted": 0, "duplicates": 2})
    assert queued() == []


def test_a_grown_group_enqueues_only_its_new_alerts(client: Client, token: str) -> None:
    first = load_event(CRASHLOOP)
    post(client, json.dumps(first), token)
    queued()
    grown = copy.deepcopy(first)
    extra = copy.deepcopy(first["alerts"][0])
    extra["labels"]["pod"] = "api-7c9d8f6b5-m8w2n"
    extra["fingerprint"] = "0f0e0d0c0b0a0908"
    grown["alerts"].append(extra)

    status, body = answer(post(client, json.dumps(grown), token))

    assert (status, body) == (202, {"accepted": 1, "duplicates": 2})
    (message,) = queued()
    assert message["alerts"] == [extra]


def test_the_resolution_of_an_alert_is_a_new_alert(client: Client, token: str) -> None:
    post(client, load_raw(CRASHLOOP), token)
    queued()

    status, body = answer(post(client, load_raw("alertmanager/resolved-crashloop.json"), token))

    assert (status, body) == (202, {"accepted": 2, "duplicates": 0})
    (message,) = queued()
    assert [a["status"] for a in message["alerts"]] == ["resolved", "resolved"]


def test_the_same_alert_twice_in_one_delivery_counts_once(client: Client, token: str) -> None:
    notification = load_event(CRASHLOOP)
    notification["alerts"].append(copy.deepcopy(notification["alerts"][0]))

    status, body = answer(post(client, json.dumps(notification), token))

    assert (status, body) == (202, {"accepted": 2, "duplicates": 1})
    (message,) = queued()
    assert len(message["alerts"]) == 2


def test_a_large_delivery_is_split_into_messages_under_the_limit(
    client: Client, token: str
) -> None:
    notification = load_event(CRASHLOOP)
    template = notification["alerts"][0]
    alerts = []
    for index in range(300):
        alert = copy.deepcopy(template)
        alert["labels"]["pod"] = f"api-7c9d8f6b5-p{index:04d}"
        alert["fingerprint"] = f"{index:016x}"
        alert["annotations"]["description"] = "x" * 2000
        alerts.append(alert)
    notification["alerts"] = alerts

    status, body = answer(post(client, json.dumps(notification), token))

    assert (status, body) == (202, {"accepted": 300, "duplicates": 0})
    messages = queued()
    assert len(messages) > 1
    assert all(len(json.dumps(m, separators=(",", ":"))) <= MAX_MESSAGE_BYTES for m in messages)
    got = sorted(a["fingerprint"] for m in messages for a in m["alerts"])
    assert got == sorted(a["fingerprint"] for a in alerts)


def test_truncated_alerts_are_logged_and_kept_in_the_group(
    client: Client, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    notification = load_event(CRASHLOOP)
    notification["truncatedAlerts"] = 7

    status, _ = answer(post(client, json.dumps(notification), token))

    assert status == 202
    (message,) = queued()
    assert message["group"]["truncatedAlerts"] == 7
    assert "truncated 7 alert(s)" in caplog.text


def test_the_incident_batch_sample_is_what_intake_enqueues(client: Client, token: str) -> None:
    post(client, load_raw(CRASHLOOP), token)
    (message,) = queued()

    records = load_event("sqs/incident-batch.json")["Records"]

    assert [json.loads(r["body"]) for r in records] == [message]
    for record in records:
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324


# ------------------------------------------------------------------ authentication


def test_basic_auth_with_the_token_as_password_is_accepted(client: Client, token: str) -> None:
    basic = base64.b64encode(f"alertmanager:{token}".encode()).decode()

    response = post(client, load_raw(CRASHLOOP), token, Authorization=f"Basic {basic}")

    assert answer(response) == (202, {"accepted": 2, "duplicates": 0})


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing 'Authorization' header"),
        ("Bearer wrong-token", "invalid Alertmanager token"),
        ("Basic " + base64.b64encode(b"alertmanager:wrong").decode(), "invalid Alertmanager"),
        ("Basic not-base64!", "malformed Basic credentials"),
        ("Token abc", "unsupported authorization scheme"),
    ],
)
def test_without_the_token_the_answer_is_401_and_nothing_is_enqueued(
    client: Client, authorization: str | None, message: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = client.http.post(WEBHOOK, body=load_raw(CRASHLOOP), headers=headers)

    assert response.status_code == 401
    assert message in json.loads(response.body)["error"]
    assert queued() == []


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "got a JSON array"),
        (json.dumps({**load_event(CRASHLOOP), "version": "3"}), "version: expected"),
        (
            json.dumps({**load_event(CRASHLOOP), "alerts": [{"status": "firing"}]}),
            "alerts[0].labels: missing",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(
    client: Client, token: str, body: bytes | str, message: str
) -> None:
    status, answered = answer(post(client, body, token))

    assert status == 400
    assert message in answered["error"]
    assert queued() == []


def test_a_body_over_the_limit_is_a_413(client: Client, token: str) -> None:
    limit = load_config().alertmanager.max_body_bytes  # type: ignore[union-attr]
    notification = load_event(CRASHLOOP)
    notification["commonAnnotations"]["padding"] = "x" * limit

    status, body = answer(post(client, json.dumps(notification), token))

    assert status == 413
    assert "alertmanager.max_body_bytes" in body["error"]


def test_a_declared_length_over_the_limit_is_a_413(client: Client, token: str) -> None:
    response = post(client, load_raw(CRASHLOOP), token, **{"Content-Length": str(10**9)})

    assert response.status_code == 413


# ------------------------------------------------------------------ nothing accepted is lost


class FailingSqs:
    """The real SQS client of the stack, failing from the ``fail_from``-th send on."""

    def __init__(self, fail_from: int) -> None:
        self.real = harness_client("sqs")
        self.fail_from = fail_from
        self.sends = 0

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.sends += 1
        if self.sends >= self.fail_from:
            # A queue that is not there: the real service's error, through botocore.
            return dict(
                self.real.send_message(**{**request, "QueueUrl": request["QueueUrl"] + "-gone"})
            )
        return dict(self.real.send_message(**request))


def _app_with(intake: AlertIntake) -> Chalice:
    app = Chalice(app_name="intake-test")
    context = ApiContext(config=load_config(), instruments=instrument("api-test"))
    app.register_blueprint(alertmanager.blueprint(context, intake=intake))
    return app


def test_when_the_queue_fails_the_answer_is_503_and_the_retry_is_accepted(
    stack: Stack, token: str
) -> None:
    with Client(_app_with(AlertIntake(sqs=FailingSqs(fail_from=1)))) as broken:
        failed = post(broken, load_raw(CRASHLOOP), token)
    with Client(_app_with(AlertIntake())) as healthy:
        retried = answer(post(healthy, load_raw(CRASHLOOP), token))

    assert failed.status_code == 503
    # The caller is told to send again; the queue's name and AWS's error stay in the log.
    error = json.loads(failed.body)["error"]
    assert "unavailable" in error and "again later" in error and "sqs" not in error
    assert retried == (202, {"accepted": 2, "duplicates": 0})
    (message,) = queued()
    assert len(message["alerts"]) == 2


def test_a_partial_enqueue_gives_back_only_the_alerts_not_sent(stack: Stack, token: str) -> None:
    notification = load_event(CRASHLOOP)
    template = notification["alerts"][0]
    alerts = []
    for index in range(150):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"{index:016x}"
        alert["annotations"]["description"] = "y" * 3000
        alerts.append(alert)
    notification["alerts"] = alerts
    body = json.dumps(notification)

    with Client(_app_with(AlertIntake(sqs=FailingSqs(fail_from=2)))) as broken:
        failed = post(broken, body, token)
    sent_first = queued()
    with Client(_app_with(AlertIntake())) as healthy:
        status, retried = answer(post(healthy, body, token))

    assert failed.status_code == 503
    first = len(sent_first[0]["alerts"])
    assert 0 < first < 150
    assert (status, retried) == (202, {"accepted": 150 - first, "duplicates": first})
    resent = [a["fingerprint"] for m in queued() for a in m["alerts"]]
    assert sorted(resent + [a["fingerprint"] for a in sent_first[0]["alerts"]]) == sorted(
        a["fingerprint"] for a in alerts
    )


# ------------------------------------------------------------------ concurrent deliveries


class RacingDynamo:
    """The stack's DynamoDB client, letting a competing delivery write just before this
    delivery's first write: the lost race a conditional write must catch."""

    def __init__(self, competitor: Any) -> None:
        self.real = harness_client("dynamodb")
        self.competitor = competitor
        self.raced = False

    def put_item(self, **request: Any) -> dict[str, Any]:
        if not self.raced:
            self.raced = True
            self.competitor()
        return dict(self.real.put_item(**request))

    def get_item(self, **request: Any) -> dict[str, Any]:
        return dict(self.real.get_item(**request))


@pytest.mark.parametrize("group_exists", [False, True])
def test_of_two_racing_claims_each_key_is_taken_once(stack: Stack, group_exists: bool) -> None:
    table = os.environ["IDEMPOTENCY_TABLE"]
    if group_exists:
        SeenAlerts(table, harness_client("dynamodb")).claim("alertmanager#race", ["00" * 10])
    keys = [f"{i:020x}" for i in range(1, 7)]
    winner: set[str] = set()

    def compete() -> None:
        winner.update(
            SeenAlerts(table, harness_client("dynamodb")).claim("alertmanager#race", keys[:4])
        )

    loser = SeenAlerts(table, RacingDynamo(compete)).claim("alertmanager#race", keys[2:])

    assert winner == set(keys[:4])
    assert loser == set(keys[4:])
    assert SeenAlerts(table, harness_client("dynamodb")).claim("alertmanager#race", keys) == set()


def test_a_form_encoded_request_still_gets_pitcrews_own_answers(client: Client, token: str) -> None:
    # curl --data sends application/x-www-form-urlencoded: the answer is pitcrew's 401 or 400,
    # not API Gateway's 415.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = client.http.post(WEBHOOK, body="{}", headers={**form, "Authorization": "Bearer no"})
    assert wrong.status_code == 401 and "error" in json.loads(wrong.body)
    bad = post(client, '{"version": "3"}', token, **form)
    assert bad.status_code == 400 and "version" in json.loads(bad.body)["error"]
