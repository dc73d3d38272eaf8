"""Alertmanager webhook parsing, the label-to-object mapping of kubernetes-mixin alerts,
authentication, size limits and message packing: pure logic, no network."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from pitcrew.errors import BadRequestError, PayloadTooLargeError, UnauthorizedError
from pitcrew.incidents.alerts import (
    Alert,
    alert_from_dict,
    alert_identity,
    owner_of_job,
    owner_of_pod,
    parse_webhook,
    subject_of,
)
from pitcrew.incidents.intake import (
    MAX_MESSAGE_BYTES,
    authenticate,
    check_size,
    group_id,
    key_digest,
    pack_messages,
)
from pitcrew.incidents.model import Category, WorkloadRef
from tests.support.events import available_events, load_event, load_raw

TOKEN = "am-token-0123456789"
ALERTMANAGER_SAMPLES = [n for n in available_events() if n.startswith("alertmanager/")]


def alert(alertname: str, status: str = "firing", **labels: str) -> Alert:
    return Alert(
        status=status,
        labels={"alertname": alertname, "cluster": "prod-eu", **labels},
        annotations={},
        starts_at="2024-11-19T08:14:32.517Z",
        ends_at="0001-01-01T00:00:00Z",
        fingerprint="e98b1163182ec543",
        generator_url="http://prometheus:9090/graph",
    )


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("name", ALERTMANAGER_SAMPLES)
def test_every_sample_parses_and_keeps_every_field(name: str) -> None:
    document = load_event(name)

    webhook = parse_webhook(load_raw(name))

    assert webhook.receiver == document["receiver"]
    assert webhook.status == document["status"]
    assert webhook.group_key == document["groupKey"]
    assert webhook.group_labels == document["groupLabels"]
    assert webhook.common_labels == document["commonLabels"]
    assert webhook.common_annotations == document["commonAnnotations"]
    assert webhook.external_url == document["externalURL"]
    assert webhook.truncated_alerts == document["truncatedAlerts"]
    assert [a.as_dict() for a in webhook.alerts] == document["alerts"]


def test_the_alert_key_is_fingerprint_start_and_status() -> None:
    webhook = parse_webhook(load_raw("alertmanager/firing-crashloop.json"))
    first = webhook.alerts[0]
    assert first.key == "e98b1163182ec543/2024-11-19T08:14:32.517Z/firing"
    assert alert_from_dict(first.as_dict()) == first


def _broken(change: Any) -> bytes:
    document = load_event("alertmanager/firing-crashloop.json")
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'"firing"', "got a JSON string"),
        (_broken(lambda d: d.pop("version")), "version: expected Alertmanager webhook version"),
        (_broken(lambda d: d.update(version=4)), "got 4"),
        (_broken(lambda d: d.pop("groupKey")), "groupKey: missing"),
        (_broken(lambda d: d.update(status="pending")), "status: expected 'firing' or 'resolved'"),
        (_broken(lambda d: d.update(alerts={})), "alerts: expected a list, got a JSON object"),
        (
            _broken(lambda d: d.update(truncatedAlerts=-1)),
            "truncatedAlerts: expected a non-negative",
        ),
        (_broken(lambda d: d.update(truncatedAlerts=True)), "truncatedAlerts: expected an integer"),
        (_broken(lambda d: d.update(commonLabels=[])), "commonLabels: expected an object"),
        (_broken(lambda d: d["alerts"].append(7)), "alerts[2]: expected an object"),
        (
            _broken(lambda d: d["alerts"][1]["labels"].update(pod=3)),
            "alerts[1].labels.pod: expected a string, got a JSON number",
        ),
        (_broken(lambda d: d["alerts"][0].update(labels={})), "alerts[0].labels: an alert needs"),
        (
            _broken(lambda d: d["alerts"][0].update(startsAt="yesterday")),
            "alerts[0].startsAt: expected an RFC 3339 time",
        ),
        (_broken(lambda d: d["alerts"][0].pop("endsAt")), "alerts[0].endsAt: missing"),
        (_broken(lambda d: d["alerts"][0].update(fingerprint="")), "fingerprint: must not be"),
        (
            _broken(lambda d: d["alerts"][0].update(generatorURL=None)),
            "alerts[0].generatorURL: expected a string, got a JSON null",
        ),
        (_broken(lambda d: d["alerts"][0].update(status="ok")), "alerts[0].status: expected"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_webhook(body)
    assert message in str(refused.value)


def test_go_timestamps_with_nanoseconds_and_offsets_are_accepted() -> None:
    document = load_event("alertmanager/firing-crashloop.json")
    document["alerts"][0]["startsAt"] = "2024-11-19T08:14:32.517123456+02:00"
    assert parse_webhook(json.dumps(document)).alerts[0].starts_at.endswith("+02:00")


# ------------------------------------------------------------------ owners from pod names


@pytest.mark.parametrize(
    ("pod", "owner"),
    [
        ("api-7c9d8f6b5-x2x7q", WorkloadRef("Deployment", "api")),
        ("payments-api-5d4b8c7f9d-kq4zt", WorkloadRef("Deployment", "payments-api")),
        ("postgres-0", WorkloadRef("StatefulSet", "postgres")),
        ("kafka-broker-12", WorkloadRef("StatefulSet", "kafka-broker")),
        ("node-exporter-x7k2p", WorkloadRef("DaemonSet", "node-exporter")),
        ("kube-proxy-4hq9z", WorkloadRef("DaemonSet", "kube-proxy")),
        ("backup-28391234-x7k2p", WorkloadRef("CronJob", "backup")),
        ("debug", WorkloadRef("Pod", "debug")),
        ("my-pod-name", WorkloadRef("Pod", "my-pod-name")),
    ],
)
def test_the_owner_is_guessed_from_the_pod_name(pod: str, owner: WorkloadRef) -> None:
    assert owner_of_pod(pod) == owner


def test_words_are_not_mistaken_for_generated_suffixes() -> None:
    # "exporter" has vowels: never a pod-template-hash, so this is not Deployment "node".
    assert owner_of_pod("node-exporter-x7k2p").kind == "DaemonSet"
    assert owner_of_pod("web-server-alpha").kind == "Pod"


@pytest.mark.parametrize(
    ("job", "owner"),
    [
        ("db-migrate", WorkloadRef("Job", "db-migrate")),
        ("nightly-report-28391234", WorkloadRef("CronJob", "nightly-report")),
    ],
)
def test_jobs_of_cronjobs_belong_to_the_cronjob(job: str, owner: WorkloadRef) -> None:
    assert owner_of_job(job) == owner


# ------------------------------------------------------------------ subjects of real alerts

# kube-prometheus-stack scrapes kube-state-metrics with honorLabels: a series without pod or
# container labels of its own carries the exporter's pod and container (target labels).
KSM = {
    "job": "kube-state-metrics",
    "container": "kube-state-metrics",
    "namespace": "monitoring",
    "pod": "kube-prometheus-stack-kube-state-metrics-6d8b7c9f5-vq8lz",
    "service": "kube-prometheus-stack-kube-state-metrics",
}


@pytest.mark.parametrize(
    ("given", "kind", "name", "namespace", "category"),
    [
        (
            alert(
                "KubePodCrashLooping",
                namespace="payments",
                pod="api-7c9d8f6b5-x2x7q",
                container="api",
                reason="CrashLoopBackOff",
            ),
            "Deployment",
            "api",
            "payments",
            Category.APP_CRASH,
        ),
        (
            alert("KubePodNotReady", namespace="payments", pod="api-7c9d8f6b5-x2x7q"),
            "Deployment",
            "api",
            "payments",
            Category.UNSCHEDULABLE,
        ),
        (
            alert(
                "KubeContainerWaiting",
                namespace="payments",
                pod="db-0",
                container="pg",
                reason="ImagePullBackOff",
            ),
            "StatefulSet",
            "db",
            "payments",
            Category.IMAGE_PULL,
        ),
        (
            alert(
                "KubeContainerWaiting",
                namespace="payments",
                pod="db-0",
                container="pg",
                reason="CreateContainerConfigError",
            ),
            "StatefulSet",
            "db",
            "payments",
            Category.MISSING_CONFIG,
        ),
        (
            alert("KubeContainerWaiting", namespace="payments", pod="db-0", container="pg"),
            "StatefulSet",
            "db",
            "payments",
            Category.UNKNOWN,
        ),
        (
            alert(
                "KubeDeploymentReplicasMismatch",
                **{**KSM, "namespace": "payments"},
                deployment="api",
            ),
            "Deployment",
            "api",
            "payments",
            Category.ROLLOUT_STUCK,
        ),
        (
            alert("KubeDeploymentRolloutStuck", namespace="payments", deployment="api"),
            "Deployment",
            "api",
            "payments",
            Category.ROLLOUT_STUCK,
        ),
        (
            alert("KubeDeploymentGenerationMismatch", namespace="payments", deployment="api"),
            "Deployment",
            "api",
            "payments",
            Category.ROLLOUT_STUCK,
        ),
        (
            alert("KubeStatefulSetReplicasMismatch", namespace="data", statefulset="kafka"),
            "StatefulSet",
            "kafka",
            "data",
            Category.ROLLOUT_STUCK,
        ),
        (
            alert("KubeDaemonSetRolloutStuck", namespace="kube-system", daemonset="cilium"),
            "DaemonSet",
            "cilium",
            "kube-system",
            Category.ROLLOUT_STUCK,
        ),
        (
            alert("KubeJobFailed", **{**KSM, "namespace": "batch"}, job_name="db-migrate"),
            "Job",
            "db-migrate",
            "batch",
            Category.JOB_FAILED,
        ),
        (
            alert("KubeJobNotCompleted", namespace="batch", job_name="report-28391234"),
            "CronJob",
            "report",
            "batch",
            Category.JOB_FAILED,
        ),
        (
            alert("KubeNodeNotReady", **KSM, node="ip-10-20-3-41"),
            "Node",
            "ip-10-20-3-41",
            None,
            Category.NODE_NOT_READY,
        ),
        (
            alert("KubeNodeUnreachable", **KSM, node="ip-10-20-3-42"),
            "Node",
            "ip-10-20-3-42",
            None,
            Category.NODE_NOT_READY,
        ),
        (
            alert("KubeletDown", job="kubelet", namespace="kube-system", node="ip-10-20-3-43"),
            "Node",
            "ip-10-20-3-43",
            None,
            Category.NODE_NOT_READY,
        ),
        (
            alert(
                "KubePersistentVolumeFillingUp",
                namespace="data",
                persistentvolumeclaim="data-kafka-0",
            ),
            "PersistentVolumeClaim",
            "data-kafka-0",
            "data",
            Category.UNKNOWN,
        ),
        (
            alert(
                "KubePersistentVolumeInodesFillingUp",
                namespace="data",
                persistentvolumeclaim="data-kafka-1",
            ),
            "PersistentVolumeClaim",
            "data-kafka-1",
            "data",
            Category.UNKNOWN,
        ),
        (
            alert(
                "KubePersistentVolumeErrors", **KSM, persistentvolume="pvc-4b1e6f0c", phase="Failed"
            ),
            "PersistentVolume",
            "pvc-4b1e6f0c",
            None,
            Category.PVC_PENDING,
        ),
        (
            alert(
                "CPUThrottlingHigh",
                namespace="payments",
                pod="api-7c9d8f6b5-x2x7q",
                container="api",
            ),
            "Deployment",
            "api",
            "payments",
            Category.UNKNOWN,
        ),
        (
            alert(
                "KubeContainerOOMKilled",
                namespace="payments",
                pod="api-7c9d8f6b5-x2x7q",
                container="api",
            ),
            "Deployment",
            "api",
            "payments",
            Category.OOM_KILLED,
        ),
        (
            alert(
                "KubernetesContainerOomKiller", namespace="payments", pod="worker-0", container="w"
            ),
            "StatefulSet",
            "worker",
            "payments",
            Category.OOM_KILLED,
        ),
        (
            alert(
                "KubeContainerWaiting",
                namespace="payments",
                pod="api-7c9d8f6b5-x2x7q",
                reason="OOMKilled",
            ),
            "Deployment",
            "api",
            "payments",
            Category.OOM_KILLED,
        ),
    ],
)
def test_kubernetes_mixin_alerts_map_to_their_object(
    given: Alert, kind: str, name: str, namespace: str | None, category: Category
) -> None:
    subject = subject_of(given)

    assert subject.workload == WorkloadRef(kind, name, namespace)
    assert subject.namespace == namespace
    assert subject.category_hint == category
    assert subject.cluster == "prod-eu"
    assert subject.alertname == given.name


def test_the_pod_and_its_container_are_kept() -> None:
    subject = subject_of(
        alert(
            "KubePodCrashLooping", namespace="payments", pod="api-7c9d8f6b5-x2x7q", container="api"
        )
    )
    assert (subject.pod, subject.container) == ("api-7c9d8f6b5-x2x7q", "api")


def test_without_a_pod_the_container_label_is_the_exporters() -> None:
    subject = subject_of(
        alert(
            "KubeDeploymentReplicasMismatch",
            namespace="payments",
            deployment="api",
            container="kube-state-metrics",
        )
    )
    assert subject.container is None


@pytest.mark.parametrize(
    "given",
    [
        alert("KubeJobFailed", **{**KSM, "namespace": "batch"}, job_name="db-migrate"),
        alert("KubeNodeNotReady", **KSM, node="ip-10-20-3-41"),
        alert("KubePersistentVolumeErrors", **KSM, persistentvolume="pvc-4b1e6f0c"),
        # Same namespace as the exporter: its pod must not stand in for grafana's.
        alert("KubeDeploymentReplicasMismatch", **KSM, deployment="grafana"),
        alert("KubeStatefulSetReplicasMismatch", **KSM, statefulset="prometheus-main"),
    ],
)
def test_the_exporters_own_pod_is_not_the_subject(given: Alert) -> None:
    subject = subject_of(given)

    assert (subject.pod, subject.container) == (None, None)


@pytest.mark.parametrize(
    ("given", "pod"),
    [
        (
            alert(
                "KubeJobFailed", namespace="batch", job_name="db-migrate", pod="db-migrate-x7k2p"
            ),
            "db-migrate-x7k2p",
        ),
        (
            alert("KubeStatefulSetReplicasMismatch", namespace="d", statefulset="db", pod="db-1"),
            "db-1",
        ),
        # A long Deployment name: its pods' names start with its first 58 characters.
        (
            alert(
                "KubeDeploymentRolloutStuck",
                namespace="d",
                deployment="a" * 60,
                pod="a" * 58 + "x7k2p",
            ),
            "a" * 58 + "x7k2p",
        ),
    ],
)
def test_a_pod_of_the_alerts_object_is_kept(given: Alert, pod: str) -> None:
    assert subject_of(given).pod == pod


def test_the_cluster_defaults_to_default() -> None:
    given = alert("KubePodCrashLooping", namespace="payments", pod="api-7c9d8f6b5-x2x7q")
    labels = dict(given.labels)
    labels.pop("cluster")
    subject = subject_of(Alert(**{**given.__dict__, "labels": labels}))
    assert subject.cluster == "default"


def test_an_unknown_alert_is_keyed_by_its_identifying_labels() -> None:
    (unknown,) = parse_webhook(load_raw("alertmanager/firing-unknown.json")).alerts

    subject = subject_of(unknown)

    assert subject.workload == WorkloadRef(
        "Alert",
        'SettlementBacklogGrowing{consumer_group="settlement-writer",topic="settlements.v2"}',
        "payments",
    )
    assert subject.category_hint == Category.UNKNOWN


def test_an_unknown_alert_without_identifying_labels_is_its_name() -> None:
    assert alert_identity(alert("Watchdog", severity="none", prometheus="m/p")) == "Watchdog"


def test_a_very_long_identity_is_shortened_stably() -> None:
    given = alert("Custom", detail="x" * 500)
    name = alert_identity(given)
    assert len(name) < 50 and name.startswith("Custom{")
    assert alert_identity(given) == name


def test_the_samples_map_as_the_story_says() -> None:
    storm = parse_webhook(load_raw("alertmanager/firing-storm.json")).alerts
    workloads = {subject_of(a).workload for a in storm}
    assert workloads == {WorkloadRef("Deployment", "api", "payments")}
    (node,) = parse_webhook(load_raw("alertmanager/firing-node-not-ready.json")).alerts
    assert subject_of(node).workload == WorkloadRef(
        "Node", "ip-10-20-3-41.eu-west-1.compute.internal", None
    )


# ------------------------------------------------------------------ authentication


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer  {TOKEN} ", basic("alertmanager", TOKEN), basic("", TOKEN)],
)
def test_bearer_and_basic_with_the_token_are_accepted(header: str) -> None:
    authenticate({"authorization": header}, TOKEN)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing 'Authorization' header"),
        ({"Authorization": "Bearer"}, "invalid Alertmanager token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid Alertmanager token"),
        ({"Authorization": basic(TOKEN, "wrong")}, "invalid Alertmanager token"),
        ({"Authorization": "Basic %%%"}, "malformed Basic credentials"),
        ({"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}, "user:password"),
        ({"Authorization": f"Digest {TOKEN}"}, "unsupported authorization scheme 'Digest'"),
        ({"Authorization": TOKEN}, "has no scheme: use Bearer or Basic"),
    ],
)
def test_anything_else_is_unauthorized(headers: dict[str, str], message: str) -> None:
    with pytest.raises(UnauthorizedError, match=message) as refused:
        authenticate(headers, TOKEN)
    # The answer goes to whoever sent the header: it never repeats the token.
    assert TOKEN not in str(refused.value)


# ------------------------------------------------------------------ size


def test_the_declared_and_the_real_size_are_both_checked() -> None:
    check_size({"Content-Length": "100"}, b"x" * 100, 100)
    with pytest.raises(PayloadTooLargeError, match="101 bytes"):
        check_size({"content-length": "101"}, b"", 100)
    with pytest.raises(PayloadTooLargeError, match="max_body_bytes is 100"):
        check_size({}, b"x" * 101, 100)


# ------------------------------------------------------------------ messages


def test_messages_stay_under_the_limit_and_keep_every_alert_in_order() -> None:
    webhook = parse_webhook(load_raw("alertmanager/firing-crashloop.json"))
    template = webhook.alerts[0].as_dict()
    alerts = []
    for index in range(250):
        raw = copy.deepcopy(template)
        raw["fingerprint"] = f"{index:016x}"
        raw["annotations"]["description"] = "z" * 1500
        alerts.append(alert_from_dict(raw))

    messages = pack_messages(webhook.group(), alerts)

    assert len(messages) > 1
    assert all(len(body.encode()) <= MAX_MESSAGE_BYTES for body, _ in messages)
    decoded = [json.loads(body) for body, _ in messages]
    assert [a["fingerprint"] for m in decoded for a in m["alerts"]] == [
        a.fingerprint for a in alerts
    ]
    assert [count for _, count in messages] == [len(m["alerts"]) for m in decoded]
    assert all(m["group"] == webhook.group() for m in decoded)


def test_an_alert_too_large_for_a_message_is_refused() -> None:
    raw = load_event("alertmanager/firing-crashloop.json")["alerts"][0]
    raw["annotations"]["description"] = "z" * MAX_MESSAGE_BYTES
    with pytest.raises(PayloadTooLargeError, match=r"alerts\[0\]"):
        pack_messages({}, [alert_from_dict(raw)])


def test_markers_are_per_group_and_keys_are_short_and_stable() -> None:
    webhook = parse_webhook(load_raw("alertmanager/firing-crashloop.json"))
    resolved = parse_webhook(load_raw("alertmanager/resolved-crashloop.json"))
    assert group_id(webhook) == group_id(resolved)
    assert group_id(webhook).startswith("alertmanager#")
    digest = key_digest(webhook.alerts[0].key)
    assert len(digest) == 20 and digest == key_digest(webhook.alerts[0].key)
    assert digest != key_digest(resolved.alerts[0].key)


def test_node_exporter_alerts_are_about_the_node_not_the_exporter_pod() -> None:
    # kube-prometheus-stack's node-exporter series: instance is the node's name, pod and
    # namespace are the exporter's own.
    def exporter_alert(name: str, instance: str) -> Alert:
        return alert_from_dict(
            {
                "status": "firing",
                "labels": {
                    "alertname": name,
                    "job": "node-exporter",
                    "namespace": "monitoring",
                    "pod": "kube-prometheus-stack-prometheus-node-exporter-7xk2p",
                    "container": "node-exporter",
                    "instance": instance,
                    "mountpoint": "/var/lib/containerd",
                    "severity": "warning",
                },
                "annotations": {},
                "startsAt": "2024-11-19T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": f"{name}{instance}",
            }
        )

    one = subject_of(exporter_alert("NodeFilesystemSpaceFillingUp", "ip-10-0-1-17.ec2.internal"))
    other = subject_of(exporter_alert("NodeFilesystemSpaceFillingUp", "10.0.2.9:9100"))
    assert one.workload == WorkloadRef("Node", "ip-10-0-1-17.ec2.internal")
    assert other.workload == WorkloadRef("Node", "10.0.2.9")
    assert one.namespace is None and one.pod is None and one.container is None
    assert one.category_hint is Category.NODE_NOT_READY
    clock = subject_of(exporter_alert("NodeClockNotSynchronising", "ip-10-0-1-17.ec2.internal"))
    assert clock.workload == WorkloadRef("Node", "ip-10-0-1-17.ec2.internal")
    assert clock.category_hint is Category.UNKNOWN
