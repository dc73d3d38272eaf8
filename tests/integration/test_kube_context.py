"""``pitcrew.kube.gather`` with the real kubernetes client against a fake API server on
loopback: crash loops, OOM kills, pending pods, unbound claims, NotReady nodes, wrong name
guesses, missing permissions and clusters that cannot be reached."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from pitcrew.config import Config, parse_config_text
from pitcrew.incidents.model import Category, ClusterContext, Subject, WorkloadRef
from pitcrew.kube import gather
from tests.support.fakekube import (
    FakeKube,
    container,
    container_status,
    cronjob,
    deployment,
    event,
    job,
    kubeconfig_document,
    node,
    pod,
    pvc,
    replicaset,
    running,
    statefulset,
    terminated,
    waiting,
)

TOKEN = "fake-token-0123456789"
NS = "payments"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def config(kube: FakeKube, tmp_path: Path) -> Config:
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    return parse_config_text(f"clusters: {{default: {{kubeconfig: {path}, context: fake}}}}")


def crash_log(lines: int = 10_000) -> str:
    body = [
        f"2024-06-12T09:{i // 600 % 60:02d}:00Z INFO handled request id={i}" for i in range(lines)
    ]
    body[lines - 300] = "2024-06-12T09:57:59Z ERROR cannot connect to postgres: connection refused"
    body[lines - 299 : lines - 299] = [
        "Traceback (most recent call last):",
        '  File "/app/server.py", line 42, in <module>',
        "    db.connect()",
        '  File "/app/db.py", line 17, in connect',
        "    raise ConnectionError(dsn)",
        "ConnectionError: postgres://db.payments:5432/app",
    ]
    return "\n".join(body) + "\n"


def crashing_api(kube: FakeKube) -> tuple[dict, dict, dict]:
    """Deployment api: one pod crash-looping (exit 1), one healthy."""
    api = deployment("api", NS, available=1)
    rs = replicaset(api, "7c9d8f6b5")
    bad = pod(
        "api-7c9d8f6b5-x2x7q",
        NS,
        owner=rs,
        statuses=[
            container_status(
                "api",
                waiting("CrashLoopBackOff", "back-off 5m0s restarting failed container=api"),
                last_state=terminated("Error", 1),
                restarts=7,
            )
        ],
    )
    good = pod("api-7c9d8f6b5-q8k2m", NS, owner=rs, statuses=[container_status("api", running())])
    kube.add(
        api,
        rs,
        bad,
        good,
        event(
            bad, "BackOff", "Back-off restarting failed container api in pod api-7c9d8f6b5-x2x7q"
        ),
        event(good, "Pulled", "Container image already present on machine", type="Normal"),
        node("node-1"),
    )
    kube.set_log(NS, "api-7c9d8f6b5-x2x7q", "api", crash_log(), previous=True)
    kube.set_log(NS, "api-7c9d8f6b5-x2x7q", "api", "starting server\n")
    return api, bad, good


def pod_subject(name: str, guess: str, *, hint: Category = Category.APP_CRASH) -> Subject:
    return Subject(
        cluster="default",
        alertname="KubePodCrashLooping",
        namespace=NS,
        workload=WorkloadRef("Deployment", guess, NS),
        pod=name,
        container="api",
        category_hint=hint,
    )


def names(objects: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]


def test_crash_looping_pod_gets_its_deployment_pods_events_and_previous_log(
    kube: FakeKube, config: Config
) -> None:
    crashing_api(kube)

    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config)

    assert context.reachable, context.notes
    assert context.workload is not None
    assert (context.workload["kind"], context.workload["metadata"]["name"]) == ("Deployment", "api")
    assert "managedFields" not in context.workload["metadata"]
    assert names(context.pods) == ["api-7c9d8f6b5-x2x7q", "api-7c9d8f6b5-q8k2m"]  # failing first
    assert all(p["kind"] == "Pod" for p in context.pods)
    assert [e["reason"] for e in context.events] == ["BackOff"]  # Warning events only
    (excerpt,) = context.logs
    assert (excerpt.pod, excerpt.container, excerpt.previous) == (
        "api-7c9d8f6b5-x2x7q",
        "api",
        True,
    )
    assert excerpt.total_lines == 2000  # the tail the API was asked for
    assert len(excerpt.lines) <= 120
    assert any("ERROR cannot connect to postgres" in line for line in excerpt.lines)
    assert "ConnectionError: postgres://db.payments:5432/app" in excerpt.lines
    (log_request,) = kube.log_requests()
    assert log_request.query["previous"] == ["true"]
    assert log_request.query["container"] == ["api"]
    assert log_request.query["tailLines"] == ["2000"]
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in kube.requests)
    assert not context.nodes  # running pod, not a node alert
    assert context.notes == []
    json.dumps(context.as_dict())  # plain JSON all through


def test_oom_killed_pod_shows_the_kill_and_the_crashed_instances_log(
    kube: FakeKube, config: Config
) -> None:
    worker = deployment(
        "worker", NS, replicas=1, available=0, containers=[container("worker", memory="128Mi")]
    )
    rs = replicaset(worker, "5d8f7b9c4")
    oom = pod(
        "worker-5d8f7b9c4-m2n3p",
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
    kube.set_log(
        NS, oom["metadata"]["name"], "worker", "loading 2000000 rows into memory\n", previous=True
    )

    subject = Subject(
        "default",
        "KubePodCrashLooping",
        NS,
        WorkloadRef("Deployment", "worker", NS),
        pod=oom["metadata"]["name"],
    )
    context = gather(subject, config)

    (found,) = context.pods
    last = found["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert found["spec"]["containers"][0]["resources"]["limits"]["memory"] == "128Mi"
    (excerpt,) = context.logs
    assert excerpt.previous and excerpt.lines == ["loading 2000000 rows into memory"]


def test_pending_pod_gets_its_failed_scheduling_event_and_its_node(
    kube: FakeKube, config: Config
) -> None:
    web = deployment("web", NS, replicas=1, available=0)
    rs = replicaset(web, "6b7c8d9f1")
    pending = pod(
        "web-6b7c8d9f1-zz9yx",
        NS,
        owner=rs,
        phase="Pending",
        node=None,
        node_selector={"kubernetes.io/hostname": "node-3"},
        statuses=[],
    )
    tainted = node(
        "node-3",
        ready="Unknown",
        taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}],
    )
    message = (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/unreachable: }, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful "
        "for scheduling."
    )
    kube.add(
        web,
        rs,
        pending,
        tainted,
        node("node-1"),
        event(pending, "FailedScheduling", message, source="default-scheduler"),
        event(
            tainted,
            "NodeNotReady",
            "Node node-3 status is now: NodeNotReady",
            source="node-controller",
        ),
    )

    context = gather(pod_subject("web-6b7c8d9f1-zz9yx", "web", hint=Category.UNSCHEDULABLE), config)

    assert names(context.nodes) == ["node-3"]
    assert "images" not in context.nodes[0]["status"]  # 50 image names cost tokens, say nothing
    assert {e["reason"] for e in context.events} == {"FailedScheduling", "NodeNotReady"}
    assert kube.log_requests() == []  # no container ever started: there is no log
    assert context.logs == []


def test_pod_pending_on_an_unbound_claim_gets_the_claim_and_its_events(
    kube: FakeKube, config: Config
) -> None:
    db = statefulset("db", NS)
    claim = pvc("data-db-0", NS, storage_class="gp3-encrypted")
    pending = pod(
        "db-0", NS, owner=db, phase="Pending", node=None, claims=["data-db-0"], statuses=[]
    )
    kube.add(
        db,
        claim,
        pvc("data-db-1", NS, phase="Bound"),
        pending,
        event(
            pending,
            "FailedScheduling",
            "pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available",
            source="default-scheduler",
        ),
        event(
            claim,
            "ProvisioningFailed",
            'storageclass.storage.k8s.io "gp3-encrypted" not found',
            source="persistentvolume-controller",
        ),
    )

    by_pod = gather(
        Subject("default", "KubePodNotReady", NS, WorkloadRef("Deployment", "db", NS), pod="db-0"),
        config,
    )
    by_claim = gather(
        Subject(
            "default",
            "KubePersistentVolumeClaimPending",
            NS,
            WorkloadRef("PersistentVolumeClaim", "data-db-0", NS),
            pvc="data-db-0",
            category_hint=Category.PVC_PENDING,
        ),
        config,
    )

    for context in (by_pod, by_claim):
        assert context.workload is not None and context.workload["kind"] == "StatefulSet"
        assert names(context.pvcs) == ["data-db-0"]
        assert {e["reason"] for e in context.events} == {"FailedScheduling", "ProvisioningFailed"}
    assert any("ownerReferences say StatefulSet db" in note for note in by_pod.notes)


def test_node_not_ready_subject_gets_the_node_its_events_and_its_pods(
    kube: FakeKube, config: Config
) -> None:
    sick = node("node-2", ready="Unknown", pressure="MemoryPressure")
    api = deployment("api", NS)
    rs = replicaset(api, "7c9d8f6b5")
    stuck = pod(
        "api-7c9d8f6b5-abcde",
        NS,
        owner=rs,
        node="node-2",
        phase="Unknown",
        statuses=[container_status("api", running(), ready=False)],
    )
    elsewhere = pod(
        "api-7c9d8f6b5-fghij",
        NS,
        owner=rs,
        node="node-1",
        statuses=[container_status("api", running())],
    )
    kube.add(
        sick,
        api,
        rs,
        stuck,
        elsewhere,
        event(
            sick,
            "NodeNotReady",
            "Node node-2 status is now: NodeNotReady",
            source="node-controller",
        ),
    )

    context = gather(
        Subject(
            "default",
            "KubeNodeNotReady",
            workload=WorkloadRef("Node", "node-2"),
            node="node-2",
            category_hint=Category.NODE_NOT_READY,
        ),
        config,
    )

    assert context.reachable and context.workload is None
    assert names(context.nodes) == ["node-2"]
    ready = next(c for c in context.nodes[0]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown"
    assert names(context.pods) == ["api-7c9d8f6b5-abcde"]  # the pods on that node only
    assert [e["reason"] for e in context.events] == ["NodeNotReady"]
    node_events = [r for r in kube.requests if r.path == "/api/v1/events"]
    assert any("involvedObject.kind=Node," in r.query["fieldSelector"][0] for r in node_events)


def test_a_node_named_by_its_address_is_found_by_it(kube: FakeKube, config: Config) -> None:
    # node-exporter's `instance` is the address scraped unless relabelled to the node's name.
    sick = node("ip-10-0-3-17.eu-west-1.compute.internal", ready="Unknown", address="10.0.3.17")
    kube.add(node("ip-10-0-3-18.eu-west-1.compute.internal", address="10.0.3.18"), sick)

    context = gather(
        Subject(
            "default",
            "NodeFilesystemSpaceFillingUp",
            workload=WorkloadRef("Node", "10.0.3.17"),
            node="10.0.3.17",
            category_hint=Category.NODE_NOT_READY,
        ),
        config,
    )

    assert names(context.nodes) == ["ip-10-0-3-17.eu-west-1.compute.internal"]
    assert "node 10.0.3.17 is ip-10-0-3-17.eu-west-1.compute.internal (by its address)" in (
        context.notes
    )
    nodes_listed = [r for r in kube.requests if r.path == "/api/v1/nodes"]
    assert len(nodes_listed) == 1


def test_an_address_no_node_has_is_said_so(kube: FakeKube, config: Config) -> None:
    kube.add(node("node-1", address="10.0.3.18"))

    context = gather(
        Subject(
            "default",
            "NodeMemoryHighUtilization",
            workload=WorkloadRef("Node", "10.9.9.9"),
            node="10.9.9.9",
        ),
        config,
    )

    assert context.nodes == []
    assert "no node has the address 10.9.9.9" in context.notes


def test_wrong_name_guess_is_corrected_from_owner_references(
    kube: FakeKube, config: Config
) -> None:
    backup = cronjob("backup", NS)
    run = job("backup-28391234", NS, owner=backup)
    failed = pod(
        "backup-28391234-xk2p9",
        NS,
        owner=run,
        phase="Failed",
        statuses=[container_status("backup", terminated("Error", 2))],
    )
    failed["spec"]["restartPolicy"] = "Never"
    kube.add(
        backup,
        run,
        failed,
        event(
            run,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            source="job-controller",
        ),
    )
    kube.set_log(
        NS, "backup-28391234-xk2p9", "backup", "pg_dump: error: connection to server failed\n"
    )

    subject = Subject(
        "default",
        "KubeJobFailed",
        NS,
        WorkloadRef("Deployment", "backup-28391234", NS),  # intake's guess from the pod name
        pod="backup-28391234-xk2p9",
        category_hint=Category.JOB_FAILED,
    )
    context = gather(subject, config)

    assert context.workload is not None
    assert (context.workload["kind"], context.workload["metadata"]["name"]) == ("CronJob", "backup")
    assert (
        "the alert suggested Deployment backup-28391234; its ownerReferences say CronJob backup"
        in context.notes
    )
    assert any("BackoffLimitExceeded" in note for note in context.notes)  # the Job's condition
    assert names(context.pods) == ["backup-28391234-xk2p9"]  # found by the Job's selector
    assert [e["reason"] for e in context.events] == ["BackoffLimitExceeded"]
    (excerpt,) = context.logs
    assert not excerpt.previous and excerpt.lines == ["pg_dump: error: connection to server failed"]


def test_forbidden_logs_become_a_note_and_the_rest_is_still_gathered(
    kube: FakeKube, config: Config
) -> None:
    crashing_api(kube)
    kube.forbid("pods/log")

    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config)

    assert context.reachable
    assert context.workload is not None and len(context.pods) == 2 and context.events
    assert context.logs == []
    (note,) = context.notes
    assert "read log of payments/api-7c9d8f6b5-x2x7q container api: forbidden (403)" in note
    assert 'cannot get resource "pods/log"' in note


def test_previous_log_missing_falls_back_to_the_current_one(kube: FakeKube, config: Config) -> None:
    crashing_api(kube)
    del kube.logs[(NS, "api-7c9d8f6b5-x2x7q", "api", True)]

    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config)

    (excerpt,) = context.logs
    assert not excerpt.previous and excerpt.lines == ["starting server"]


def test_pod_gone_falls_back_to_the_guessed_workload(kube: FakeKube, config: Config) -> None:
    crashing_api(kube)

    context = gather(pod_subject("api-7c9d8f6b5-gone1", "api"), config)

    assert context.workload is not None and context.workload["metadata"]["name"] == "api"
    assert len(context.pods) == 2
    assert any('pods "api-7c9d8f6b5-gone1" not found' in note for note in context.notes)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_is_a_note_not_an_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://127.0.0.1:{_closed_port()}"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(server, TOKEN)))
    config = parse_config_text(f"clusters: {{default: {{kubeconfig: {kubeconfig}}}}}")

    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config)

    assert not context.reachable
    assert context.workload is None and context.pods == []
    assert any("connection refused by the API server" in note for note in context.notes)
    assert any("answered no request" in note for note in context.notes)


def test_rejected_credentials_are_unreachable(kube: FakeKube, tmp_path: Path) -> None:
    path = kube.kubeconfig(tmp_path / "kubeconfig", token="stale-token")
    config = parse_config_text(f"clusters: {{default: {{kubeconfig: {path}}}}}")
    crashing_api(kube)

    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config)

    assert not context.reachable
    assert any("401 Unauthorized" in note for note in context.notes)
    assert len(kube.requests) == 1  # stopped at the first refusal


def test_no_cluster_configured_is_a_note(tmp_path: Path) -> None:
    context = gather(pod_subject("api-1", "api"), parse_config_text("llm: {provider: none}"))
    assert context == ClusterContext(
        cluster="default",
        notes=[
            "no cluster 'default' is configured (clusters: none): diagnosed from the alert alone"
        ],
    )


def test_bad_kubeconfig_is_a_note_naming_the_key(tmp_path: Path) -> None:
    config = parse_config_text(f"clusters: {{prod: {{kubeconfig: {tmp_path}/missing.yaml}}}}")
    context = gather(Subject("prod", "KubePodCrashLooping", NS, pod="api-1"), config)
    assert not context.reachable
    missing = f"{tmp_path}/missing.yaml"
    assert context.notes == [
        f"cluster 'prod' cannot be used: clusters.prod.kubeconfig: file not found: {missing}"
    ]


def test_unknown_cluster_label_reads_the_default_cluster_and_says_so(
    kube: FakeKube, config: Config
) -> None:
    crashing_api(kube)
    subject = pod_subject("api-7c9d8f6b5-x2x7q", "api")
    context = gather(Subject(**{**subject.__dict__, "cluster": "prod-us"}), config)
    assert context.reachable and context.cluster == "prod-us"
    assert "no cluster 'prod-us' is configured: reading the 'default' cluster" in context.notes


def test_kubeconfig_kept_in_secrets_manager(aws: None, kube: FakeKube, tmp_path: Path) -> None:
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig").read_text()
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(Name="pitcrew/kubeconfig-prod", SecretString=kubeconfig)
    config = parse_config_text(
        "clusters: {prod: {kubeconfig_secret: secret:pitcrew/kubeconfig-prod, context: fake}}"
    )
    crashing_api(kube)

    context = gather(Subject("prod", "KubePodCrashLooping", NS, pod="api-7c9d8f6b5-x2x7q"), config)

    assert context.reachable and context.workload is not None
    assert context.workload["metadata"]["name"] == "api"


def test_time_budget_stops_gathering_with_a_note(kube: FakeKube, config: Config) -> None:
    crashing_api(kube)
    context = gather(pod_subject("api-7c9d8f6b5-x2x7q", "api"), config, budget_s=0.1)
    assert not context.reachable
    assert any("time budget is spent" in note for note in context.notes)
    assert kube.requests == []


def test_an_alert_naming_no_object_reads_nothing_and_says_so(
    kube: FakeKube, config: Config
) -> None:
    context = gather(Subject("default", "Watchdog", NS), config)
    assert not context.reachable and kube.requests == []
    assert context.notes == [
        "the alert names no pod, workload, node or claim: nothing was read from cluster 'default'"
    ]
