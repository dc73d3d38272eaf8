"""Memory and CPU against limits from a fake Prometheus HTTP API on loopback (the real
``/api/v1/query`` JSON), through httpx; and inside ``gather`` with the fake Kubernetes API."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pitcrew.config import PrometheusConfig, Value, parse_config_text
from pitcrew.incidents.model import Category, MetricSample, Subject, WorkloadRef
from pitcrew.kube import gather
from pitcrew.prometheus import container_usage
from tests.support.fakehttp import FakeService, Reply, Request, fake_service
from tests.support.fakekube import (
    FakeKube,
    container,
    container_status,
    deployment,
    pod,
    replicaset,
    terminated,
    waiting,
)

NS = "payments"
POD = "worker-5d8f7b9c4-m2n3p"
MiB = 2**20


def vector(*samples: tuple[dict[str, str], float]) -> Reply:
    return Reply(
        200,
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": labels, "value": [1718186400.123, repr(value)]}
                    for labels, value in samples
                ],
            },
        },
    )


def answer(with_limits: bool = True) -> Callable[[Request], Reply]:
    def handle(request: Request) -> Reply:
        query = request.query["query"][0]
        labels = {"pod": POD, "container": "worker"}
        if "container_memory_working_set_bytes" in query:
            return vector((labels, 127.5 * MiB))
        if "container_cpu_usage_seconds_total" in query:
            return vector((labels, 0.42))
        if "kube_pod_container_resource_limits" in query and with_limits:
            return vector(
                ({**labels, "resource": "memory"}, 128.0 * MiB),
                ({**labels, "resource": "cpu"}, 0.5),
            )
        return vector()

    return handle


@pytest.fixture
def prometheus() -> Iterator[FakeService]:
    with fake_service("prometheus") as service:
        yield service


def config_for(service: FakeService) -> PrometheusConfig:
    return PrometheusConfig(url=Value(service.url, "prometheus.url", url=True))


def test_peaks_come_with_their_limits(prometheus: FakeService) -> None:
    prometheus.route("GET", "/api/v1/query")(answer())

    samples, notes = container_usage(config_for(prometheus), NS, [POD])

    assert notes == []
    assert samples == [
        MetricSample(POD, "worker", "cpu", peak=0.42, limit=0.5),
        MetricSample(POD, "worker", "memory", peak=127.5 * MiB, limit=128.0 * MiB),
    ]
    queries = [r.query["query"][0] for r in prometheus.received("GET", "/api/v1/query")]
    assert len(queries) == 3
    assert all(f'namespace="{NS}"' in q and f'pod=~"{POD}"' in q for q in queries)
    assert "max_over_time(container_memory_working_set_bytes{" in queries[0]
    assert "[1h]" in queries[0] and "[5m])[1h:1m]" in queries[1]
    assert 'resource=~"memory|cpu"' in queries[2]


def test_limits_come_from_the_pod_spec_without_kube_state_metrics(
    prometheus: FakeService,
) -> None:
    prometheus.route("GET", "/api/v1/query")(answer(with_limits=False))
    spec = pod(POD, NS, containers=[container("worker", memory="256Mi", cpu="250m")])

    samples, _ = container_usage(config_for(prometheus), NS, [POD], pods=[spec])

    assert {(s.resource, s.limit) for s in samples} == {("memory", 256 * MiB), ("cpu", 0.25)}


def test_a_bad_query_answer_is_a_note(prometheus: FakeService) -> None:
    prometheus.reply(
        "GET",
        "/api/v1/query",
        Reply(
            400,
            {
                "status": "error",
                "errorType": "bad_data",
                "error": 'invalid parameter "query": 1:1: parse error: unexpected character',
            },
        ),
    )

    samples, notes = container_usage(config_for(prometheus), NS, [POD])

    assert samples == []
    assert len(notes) == 3
    assert notes[0].startswith("prometheus: query at http://127.0.0.1:")
    assert "HTTP 400: bad_data: invalid parameter" in notes[0]


def test_an_unreachable_prometheus_is_one_note() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = Value(f"http://127.0.0.1:{port}", "prometheus.url", url=True)

    samples, notes = container_usage(PrometheusConfig(url=url), NS, [POD])

    assert samples == []
    (note,) = notes  # it stops after the first failure
    assert "cannot connect" in note


def test_gather_adds_metrics_for_the_workloads_pods(
    prometheus: FakeService, tmp_path: Path
) -> None:
    prometheus.route("GET", "/api/v1/query")(answer())
    with FakeKube() as kube:
        worker = deployment("worker", NS, replicas=1, available=0)
        rs = replicaset(worker, "5d8f7b9c4")
        oom = pod(
            POD,
            NS,
            owner=rs,
            statuses=[
                container_status(
                    "worker",
                    waiting("CrashLoopBackOff"),
                    last_state=terminated("OOMKilled", 137),
                    restarts=4,
                )
            ],
        )
        kube.add(worker, rs, oom)
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
        config = parse_config_text(
            f"clusters: {{default: {{kubeconfig: {kubeconfig}}}}}\n"
            f"prometheus: {{url: {prometheus.url}}}\n"
        )
        subject = Subject(
            "default",
            "KubePodCrashLooping",
            NS,
            WorkloadRef("Deployment", "worker", NS),
            pod=POD,
            category_hint=Category.OOM_KILLED,
        )

        context = gather(subject, config)

    memory = next(m for m in context.metrics if m.resource == "memory")
    assert (memory.pod, memory.peak, memory.limit) == (POD, 127.5 * MiB, 128.0 * MiB)
    assert not any(note.startswith("prometheus") for note in context.notes)
