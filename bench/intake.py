"""The Alertmanager webhook's cost: the ``api`` function's handler for a 100-alert delivery
(authentication, strict parsing, one dedup call, the enqueue), against the bare minimum of
I/O the same delivery needs: one SQS SendMessage of its body and one DynamoDB PutItem, timed
in the same run on the same emulated stack.

Everything runs in this process on the embedded emulator (moto) with the stack of
template.yaml; the handler is called through ``chalice.test.Client``. Each round sends a new
storm (new fingerprints and group key, so every alert is new work, never a duplicate); the
rounds alternate which of the two goes first, after one untimed warm-up round. Usage:
``.venv/bin/python bench/intake.py [--runs N] [--alerts N]``; the last line is
``intake ratio X.XX`` (median handler time over median bare time; target at most 2).
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulated import REPO, provision_stack

ALERTMANAGER_TOKEN = "bench-alertmanager-token"  # noqa: S105 - a stand-in, never a credential
SAMPLE = REPO / "events" / "alertmanager" / "firing-crashloop.json"
SAFE = "bcdfghjklmnpqrstvwxz2456789"
TARGET = 2.0


def payload(round_number: int, alerts: int) -> bytes:
    """A delivery of ``alerts`` distinct crash-looping pods, new in every round."""
    notification = json.loads(SAMPLE.read_text(encoding="utf-8"))
    template = notification["alerts"][0]
    items = []
    for index in range(alerts):
        alert = copy.deepcopy(template)
        suffix = "".join(SAFE[(index // 27**i) % 27] for i in range(5))
        alert["labels"]["pod"] = f"api-7c9d8f6b5-{suffix}"
        alert["fingerprint"] = f"{round_number:06x}{index:010x}"
        items.append(alert)
    notification["alerts"] = items
    notification["groupKey"] = f'{{}}:{{cluster="prod-eu", round="{round_number}"}}'
    return json.dumps(notification).encode()


def timed(action: Callable[[], None]) -> float:
    # Start both sides from a clean heap: a collection of the previous round's garbage would
    # otherwise land in whichever happens to run next.
    gc.collect()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def drain(sqs: Any, queue_url: str) -> None:
    """Empty the queue, so that it does not grow from round to round for either side."""
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def measure(runs: int, alerts: int) -> tuple[list[float], list[float]]:
    """Handler times and bare times, one of each per round, warm-up round left out."""
    from chalice.test import Client

    from pitcrew.api import create_app
    from pitcrew.aws import client
    from pitcrew.config import load_config
    from pitcrew.observability import instrument

    app = create_app(load_config(), instrument("api"))
    queue_url, table = os.environ["INCIDENT_QUEUE_URL"], os.environ["IDEMPOTENCY_TABLE"]
    sqs, dynamodb = client("sqs"), client("dynamodb")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ALERTMANAGER_TOKEN}"}
    handler_times: list[float] = []
    bare_times: list[float] = []
    with Client(app) as http:

        def handler(body: bytes) -> None:
            response = http.http.post("/webhooks/alertmanager", body=body, headers=headers)
            answer = json.loads(response.body)
            if response.status_code != 202 or answer["accepted"] != alerts:
                raise SystemExit(f"webhook answered {response.status_code}: {answer}")

        def bare(body: bytes, round_number: int) -> None:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body.decode())
            dynamodb.put_item(
                TableName=table,
                Item={
                    "id": {"S": f"bench#{round_number}"},
                    "expiration": {"N": str(int(time.time()) + 86400)},
                },
            )

        for round_number in range(runs + 1):
            body = payload(round_number, alerts)
            actions: dict[str, Callable[[], None]] = {
                "handler": functools.partial(handler, body),
                "bare": functools.partial(bare, body, round_number),
            }
            # Alternate which goes first, so neither always meets a warmer emulator.
            order = ("handler", "bare") if round_number % 2 else ("bare", "handler")
            took = {which: timed(actions[which]) for which in order}
            drain(sqs, queue_url)
            if round_number:  # round 0 warms up clients, caches and the token's resolution
                handler_times.append(took["handler"])
                bare_times.append(took["bare"])
    return handler_times, bare_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (at least 7)")
    parser.add_argument("--alerts", type=int, default=100, help="alerts per delivery")
    options = parser.parse_args()
    runs = max(options.runs, 7)

    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory() as folder:
        provision_stack(f"alertmanager: {{token: {ALERTMANAGER_TOKEN}}}\n", Path(folder))
        handler_times, bare_times = measure(runs, options.alerts)

    handler_median, bare_median = statistics.median(handler_times), statistics.median(bare_times)
    size = len(payload(0, options.alerts))
    print(f"delivery: {options.alerts} alerts, {size} bytes; {runs} rounds")
    print(f"webhook handler       median {handler_median * 1000:.1f} ms  ({_ms(handler_times)})")
    print(f"SendMessage + PutItem median {bare_median * 1000:.1f} ms  ({_ms(bare_times)})")
    print(f"target: at most {TARGET:.0f}")
    print(f"intake ratio {handler_median / bare_median:.2f}")
    return 0


def _ms(times: list[float]) -> str:
    return ", ".join(f"{t * 1000:.1f}" for t in times)


if __name__ == "__main__":
    raise SystemExit(main())
