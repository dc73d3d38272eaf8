"""An alert storm through intake and diagnosis: 1,000 Alertmanager alerts about 10 failing
workloads, sent as 200 webhook deliveries (a fifth of them resends, as Alertmanager repeats a
group every ``group_interval``), through the ``api`` webhook and the ``diagnose`` function, with
an OpenAI-compatible LLM (a fake one on loopback) configured.

pitcrew should open exactly one incident per workload and ask the LLM at most once per
incident. Everything runs in this process on the embedded emulator (moto), with the stack of
template.yaml. Usage: ``.venv/bin/python bench/storm.py``; the last line is
``storm incidents N llm_calls M`` (expected: 10 incidents, 1 to 10 calls).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emulated import REPO, provision_stack

os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "pitcrew-diagnose"

WORKLOADS = [
    ("payments", "api"),
    ("payments", "worker"),
    ("checkout", "web"),
    ("checkout", "cart"),
    ("search", "indexer"),
    ("search", "query"),
    ("identity", "auth"),
    ("identity", "session"),
    ("media", "thumbnailer"),
    ("media", "uploader"),
]
UNIQUE_PER_WORKLOAD = 80
DELIVERIES = 200
ALERTS_PER_DELIVERY = 5
API_TOKEN = "bench-operator-token"  # noqa: S105 - a stand-in, never a real credential
ALERTMANAGER_TOKEN = "bench-alertmanager-token"  # noqa: S105
DIAGNOSIS = {
    "category": "app_crash",
    "root_cause": "The container exits with status 1 at start-up: DATABASE_URL is not set.",
    "confidence": 0.8,
    "evidence": ["container exited with code 1", "log: KeyError: 'DATABASE_URL'"],
    "patch": None,
    "summary_line": "crash at start-up: DATABASE_URL is missing",
}


def _pod(name: str, number: int) -> str:
    suffix = hashlib.sha256(f"{name}{number}".encode()).hexdigest()
    letters = "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in suffix[:5])
    return f"{name}-7c9d8f6b5-{letters}"


def _alert(namespace: str, name: str, number: int) -> dict[str, Any]:
    """One distinct firing alert about the workload: a crash-looping pod, a waiting container,
    or the Deployment's replica mismatch (each pod and alert name has its own fingerprint)."""
    kind = number % 4
    labels = {"cluster": "prod-eu", "namespace": namespace, "severity": "warning"}
    if kind == 3:
        labels |= {"alertname": "KubeDeploymentReplicasMismatch", "deployment": name}
        labels["instance"] = f"10.0.{number // 256}.{number % 256}:8080"
    else:
        labels |= {
            "alertname": ("KubePodCrashLooping", "KubeContainerWaiting", "KubePodNotReady")[kind],
            "pod": _pod(name, number),
            "container": name,
        }
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {namespace}/{name}"},
        "startsAt": "2026-11-21T08:14:32.517Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def _payload(alerts: list[dict[str, Any]], namespace: str) -> bytes:
    common = {"cluster": "prod-eu", "namespace": namespace}
    return json.dumps(
        {
            "version": "4",
            "receiver": "pitcrew",
            "status": "firing",
            "alerts": alerts,
            "groupLabels": common,
            "commonLabels": common,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.monitoring:9093",
            "groupKey": f'{{}}:{{cluster="prod-eu", namespace="{namespace}"}}',
            "truncatedAlerts": 0,
        }
    ).encode()


def deliveries(seed: int = 7) -> list[bytes]:
    """200 webhook bodies of 5 alerts: 800 distinct alerts, then 200 of them sent again."""
    rng = random.Random(seed)
    batches: list[tuple[str, list[dict[str, Any]]]] = []
    for namespace, name in WORKLOADS:
        alerts = [_alert(namespace, name, n) for n in range(UNIQUE_PER_WORKLOAD)]
        for start in range(0, len(alerts), ALERTS_PER_DELIVERY):
            batches.append((namespace, alerts[start : start + ALERTS_PER_DELIVERY]))
    rng.shuffle(batches)
    resends = rng.sample(batches, DELIVERIES - len(batches))
    return [_payload(alerts, namespace) for namespace, alerts in batches + resends]


@contextmanager
def _fake_llm() -> Iterator[Any]:
    from tests.support.fakehttp import FakeService, Reply

    service = FakeService("llm")

    @service.route("POST", "/v1/chat/completions")
    def complete(request: Any) -> Reply:
        body = request.json()
        return Reply(
            200,
            {
                "id": f"chatcmpl-{len(service.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "bench-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": json.dumps(DIAGNOSIS)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020},
            },
        )

    service.start()
    try:
        yield service
    finally:
        service.stop()


def _config(llm_url: str) -> str:
    return (
        f"api: {{token: {API_TOKEN}}}\n"
        f"alertmanager: {{token: {ALERTMANAGER_TOKEN}}}\n"
        "clusters: {}\n"
        f"llm: {{provider: openai, base_url: '{llm_url}/v1', model: bench-model,"
        " api_key: bench-llm-key}\n"
    )


def _drain(sqs: Any, queue_url: str, diagnose: Any, context: Any) -> int:
    """Feed the incident queue to the diagnose handler in batches of 10, as Lambda's SQS
    poller does; failed messages stay for the next round."""
    processed = 0
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        )
        messages = answer.get("Messages", [])
        if not messages:
            return processed
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:pitcrew-IncidentQueue",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
        result = diagnose.handler({"Records": records}, context)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        if failed:
            raise SystemExit(f"diagnose failed messages: {sorted(failed)}")
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        processed += len(messages)


def main() -> int:
    from chalice.test import Client
    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory() as folder, _fake_llm() as llm:
        stack, harness = provision_stack(_config(llm.url), Path(folder))

        from pitcrew.api import create_app
        from pitcrew.config import load_config
        from pitcrew.incidents.store import IncidentStore
        from pitcrew.local.context import LambdaContext
        from pitcrew.observability import instrument

        app = create_app(load_config(), instrument("api"))
        sys.path.insert(0, str(REPO / "functions" / "diagnose"))
        diagnose = importlib.import_module("app")
        context = LambdaContext(
            function_name="pitcrew-diagnose",
            function_version="$LATEST",
            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:pitcrew-diagnose",
            memory_limit_in_mb=1024,
            timeout_s=900,
            log_group_name="/aws/lambda/pitcrew-diagnose",
            log_stream_name="bench",
        )
        sqs = harness.client("sqs", region_name="us-east-1")
        queue_url = stack.resolve({"Ref": "IncidentQueue"})

        started = time.perf_counter()
        accepted = duplicates = 0
        headers = {
            "Authorization": f"Bearer {ALERTMANAGER_TOKEN}",
            "Content-Type": "application/json",
        }
        with Client(app) as client:
            for index, body in enumerate(deliveries()):
                response = client.http.post("/webhooks/alertmanager", headers=headers, body=body)
                if response.status_code != 202:
                    raise SystemExit(f"delivery {index}: {response.status_code} {response.body!r}")
                answer = json.loads(response.body)
                accepted += answer["accepted"]
                duplicates += answer["duplicates"]
                if index % 20 == 19:  # the diagnose function keeps up with the queue
                    _drain(sqs, queue_url, diagnose, context)
        _drain(sqs, queue_url, diagnose, context)
        elapsed = time.perf_counter() - started

        incidents = IncidentStore().list("all", limit=1000)
        calls = sum(1 for r in llm.requests if r.path.endswith("/chat/completions"))
        alerts = sum(i.alerts for i in incidents)
        diagnosed = sum(1 for i in incidents if i.diagnosis is not None)
        print(
            f"{DELIVERIES} deliveries: {accepted} alerts accepted, {duplicates} duplicates; "
            f"{len(incidents)} incidents ({diagnosed} diagnosed) holding {alerts} alerts; "
            f"{elapsed:.1f} s"
        )
        print(f"storm incidents {len(incidents)} llm_calls {calls}")
        ok = len(incidents) == len(WORKLOADS) and 1 <= calls <= len(WORKLOADS)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
