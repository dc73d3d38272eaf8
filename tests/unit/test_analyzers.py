"""The rule-based analyzers on Kubernetes API objects (tests/fixtures/kube): each rule's
positive and negative cases, which cause wins when several apply, the answer from the alert
alone when the cluster is unreachable, and that analyze never raises."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pitcrew.incidents.analyzers import analyze
from pitcrew.incidents.analyzers.logs import error_lines, telling_line
from pitcrew.incidents.model import (
    Category,
    ClusterContext,
    Diagnosis,
    LogExcerpt,
    MetricSample,
    Subject,
    WorkloadRef,
)
from pitcrew.incidents.patches import check_patch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube"
MI = 1024**2


def scenario(name: str) -> tuple[Subject, ClusterContext]:
    """A fixture as the subject intake makes and the context pitcrew.kube gathers."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    subject = dict(data["subject"])
    if subject["workload"]:
        subject["workload"] = WorkloadRef(**subject["workload"])
    subject["category_hint"] = Category(subject["category_hint"])
    context = dict(data["context"])
    context["logs"] = [LogExcerpt(**log) for log in context["logs"]]
    context["metrics"] = [MetricSample(**sample) for sample in context["metrics"]]
    return Subject(**subject), ClusterContext(**context)


def diagnose(name: str) -> tuple[Diagnosis, ClusterContext]:
    subject, context = scenario(name)
    return analyze(subject, context), context


def containers_of(patch: Any) -> list[dict[str, Any]]:
    return patch["spec"]["template"]["spec"]["containers"]


def evidence(diagnosis: Diagnosis) -> str:
    return "\n".join(diagnosis.evidence)


ALL = sorted(path.stem for path in FIXTURES.glob("*.json"))
EXPECTED = {
    "oom-rollout": Category.OOM_KILLED,
    "crash-python": Category.APP_CRASH,
    "missing-secret": Category.MISSING_CONFIG,
    "missing-configmap-key": Category.MISSING_CONFIG,
    "image-not-found": Category.IMAGE_PULL,
    "image-unauthorized": Category.IMAGE_PULL,
    "probe-slow-start": Category.PROBE_FAILURE,
    "probe-http-500": Category.PROBE_FAILURE,
    "pending-insufficient": Category.UNSCHEDULABLE,
    "pending-taint-affinity": Category.UNSCHEDULABLE,
    "pvc-pending": Category.PVC_PENDING,
    "rollout-quota": Category.ROLLOUT_STUCK,
    "node-not-ready": Category.NODE_NOT_READY,
    "node-disk-pressure": Category.NODE_NOT_READY,
    "job-backoff": Category.JOB_FAILED,
    "healthy": Category.UNKNOWN,
}


def test_every_fixture_has_an_expected_category() -> None:
    assert sorted(EXPECTED) == ALL


@pytest.mark.parametrize("name", ALL)
def test_each_fixture_gets_its_category_and_a_well_formed_answer(name: str) -> None:
    diagnosis, context = diagnose(name)
    assert diagnosis.category is EXPECTED[name]
    assert diagnosis.source == "rules"
    assert diagnosis.root_cause and diagnosis.summary_line
    assert "\n" not in diagnosis.summary_line
    assert diagnosis.evidence
    assert all(len(line) <= 300 for line in diagnosis.evidence)
    assert 0 < diagnosis.confidence <= 1
    json.dumps(diagnosis.as_dict())
    if diagnosis.patch is not None:  # every patch the rules propose passes the allowlist
        assert check_patch(diagnosis.patch, context.workload) == []
    # Deterministic: the same input, the same answer.
    assert analyze(*scenario(name)) == diagnosis


# -- OOMKilled -----------------------------------------------------------------------------
def test_oom_killed_inside_a_stuck_rollout_is_oom_killed_with_a_bounded_raise() -> None:
    diagnosis, _ = diagnose("oom-rollout")
    assert diagnosis.category is Category.OOM_KILLED
    assert diagnosis.confidence >= 0.9
    assert "Container api of Deployment payments/api" in diagnosis.root_cause
    assert "512Mi" in diagnosis.root_cause
    lines = evidence(diagnosis)
    assert "pod api-7c9d8f6b5-x2x7q container api: terminated OOMKilled (exit code 137)" in lines
    assert "peak memory 509Mi" in lines
    assert "ProgressDeadlineExceeded" in lines  # the rollout is supporting evidence
    assert diagnosis.patch == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "payments"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "api", "resources": {"limits": {"memory": "768Mi"}}}]
                }
            }
        },
    }
    assert "768Mi" in diagnosis.summary_line


def test_oom_raise_follows_the_prometheus_peak_when_it_is_higher_but_at_most_doubles() -> None:
    subject, context = scenario("oom-rollout")
    context.metrics = [MetricSample("api-7c9d8f6b5-x2x7q", "api", "memory", 700.0 * MI, 512.0 * MI)]
    patch = analyze(subject, context).patch
    assert containers_of(patch)[0]["resources"]["limits"]["memory"] == "896Mi"  # 1.25 x 700Mi
    context.metrics = [MetricSample("api-7c9d8f6b5-x2x7q", "api", "memory", 3000.0 * MI, None)]
    patch = analyze(subject, context).patch
    assert containers_of(patch)[0]["resources"]["limits"]["memory"] == "1Gi"  # capped at 2x


def test_oom_with_guaranteed_qos_raises_the_request_with_the_limit() -> None:
    subject, context = scenario("oom-rollout")
    assert context.workload is not None
    api = context.workload["spec"]["template"]["spec"]["containers"][0]
    api["resources"]["requests"]["memory"] = "512Mi"
    diagnosis = analyze(subject, context)
    resources = containers_of(diagnosis.patch)[0]["resources"]
    assert resources == {"limits": {"memory": "768Mi"}, "requests": {"memory": "768Mi"}}
    assert check_patch(diagnosis.patch or {}, context.workload) == []


def test_oom_without_a_memory_limit_or_without_the_workload_proposes_no_patch() -> None:
    subject, context = scenario("oom-rollout")
    assert context.workload is not None
    del context.workload["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    for pod in context.pods:
        del pod["spec"]["containers"][0]["resources"]["limits"]
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.OOM_KILLED
    assert diagnosis.patch is None
    assert "no memory limit" in diagnosis.root_cause

    subject, context = scenario("oom-rollout")
    context.workload = None
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.OOM_KILLED
    assert diagnosis.patch is None
    assert "Deployment payments/api" in diagnosis.root_cause  # named from the subject


# -- crashes -------------------------------------------------------------------------------
def test_a_python_crash_quotes_the_exception_from_the_previous_log() -> None:
    diagnosis, _ = diagnose("crash-python")
    assert diagnosis.category is Category.APP_CRASH
    assert "exits with code 1" in diagnosis.root_cause
    assert "KeyError: 'DATABASE_URL'" in diagnosis.root_cause
    assert "KeyError: 'DATABASE_URL'" in diagnosis.summary_line
    lines = list(diagnosis.evidence)
    assert "Traceback (most recent call last):" in lines
    assert 'File "/app/checkout/settings.py", line 41, in <module>' in lines
    assert "KeyError: 'DATABASE_URL'" in lines
    assert not any("Booting worker" in line for line in lines)
    assert diagnosis.patch is None


def test_a_crash_without_a_log_says_so_with_lower_confidence() -> None:
    subject, context = scenario("crash-python")
    context.logs = []
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.APP_CRASH
    assert diagnosis.confidence < 0.8
    assert "no log of container checkout was available" in diagnosis.evidence


def test_a_container_that_exits_zero_in_a_restart_loop_is_a_crash_too() -> None:
    subject, context = scenario("crash-python")
    status = context.pods[0]["status"]["containerStatuses"][0]
    status["lastState"]["terminated"].update(exitCode=0, reason="Completed")
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.APP_CRASH
    assert "exits with code 0" in diagnosis.root_cause


def test_running_containers_that_never_crashed_are_not_a_crash() -> None:
    diagnosis, _ = diagnose("healthy")
    assert diagnosis.category is Category.UNKNOWN
    assert diagnosis.confidence <= 0.2
    assert "pod api-7c9d8f6b5-aaaa1: Running, 1/1 containers ready" in diagnosis.evidence


def test_error_lines_keep_panics_exceptions_and_stack_heads() -> None:
    go = [
        "2024/05/14 10:00:01 listening on :8080",
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b1a2c]",
        "",
        "goroutine 1 [running]:",
        "main.(*Server).loadConfig(0x0)",
        "\t/src/server.go:42 +0x2c",
        "main.main()",
        "\t/src/main.go:17 +0x85",
    ]
    assert error_lines(go) == [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "goroutine 1 [running]:",
        "main.(*Server).loadConfig(0x0)",
        "\t/src/server.go:42 +0x2c",
    ]
    assert telling_line(error_lines(go)) == (
        "panic: runtime error: invalid memory address or nil pointer dereference"
    )
    java = [
        "10:00:01.200 [main] INFO  o.s.b.StartupInfoLogger - Starting App",
        'Exception in thread "main" java.lang.IllegalStateException: Failed to load context',
        "\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:343)",
        "\tat com.acme.App.main(App.java:12)",
        "Caused by: java.net.UnknownHostException: postgres.db.svc",
        "\tat java.base/java.net.InetAddress.getAllByName0(InetAddress.java:1534)",
    ]
    picked = error_lines(java)
    assert picked[0].startswith('Exception in thread "main"')
    assert picked[1].startswith("\tat org.springframework")  # the stack head, not every frame
    assert "\tat com.acme.App.main(App.java:12)" not in picked
    assert telling_line(picked) == "Caused by: java.net.UnknownHostException: postgres.db.svc"
    noise = ["INFO processed 10 items, 0 errors", "level=info msg=ok errors=0", "DEBUG fine"]
    assert error_lines(noise) == []
    many = [f"ERROR attempt {n} failed" for n in range(20)]
    assert error_lines(many) == many[-6:]


# -- missing config ------------------------------------------------------------------------
def test_a_missing_secret_is_named_with_where_the_workload_refers_to_it() -> None:
    diagnosis, _ = diagnose("missing-secret")
    assert diagnosis.category is Category.MISSING_CONFIG
    assert diagnosis.root_cause.startswith('Secret "db-creds" does not exist in namespace payments')
    assert "container ledger of Deployment payments/ledger" in diagnosis.root_cause
    assert "container ledger reads env DB_PASSWORD from Secret db-creds" in diagnosis.evidence
    assert diagnosis.patch is None
    assert "CreateContainerConfigError" in evidence(diagnosis)


def test_a_missing_configmap_key_names_the_key() -> None:
    diagnosis, _ = diagnose("missing-configmap-key")
    assert diagnosis.category is Category.MISSING_CONFIG
    assert 'ConfigMap ops/notifier-config has no key "smtp_host"' in diagnosis.root_cause
    assert diagnosis.summary_line == "ops/notifier: missing ConfigMap notifier-config key smtp_host"


def test_a_configmap_volume_that_cannot_mount_is_missing_config() -> None:
    subject, context = scenario("missing-configmap-key")
    pod = context.pods[0]
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    assert context.workload is not None
    context.workload["spec"]["template"]["spec"]["volumes"] = [
        {"name": "templates", "configMap": {"name": "mail-templates"}}
    ]
    context.events[0]["reason"] = "FailedMount"
    context.events[0]["message"] = (
        'MountVolume.SetUp failed for volume "templates" : configmap "mail-templates" not found'
    )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.MISSING_CONFIG
    assert 'ConfigMap "mail-templates" does not exist in namespace ops' in diagnosis.root_cause
    assert "volume templates mounts ConfigMap mail-templates" in diagnosis.evidence


def test_a_create_container_error_that_is_not_about_config_is_not_missing_config() -> None:
    subject, context = scenario("missing-secret")
    waiting = context.pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    waiting.update(
        reason="CreateContainerError", message='failed to reserve container name "ledger"'
    )
    context.events = []
    assert analyze(subject, context).category is not Category.MISSING_CONFIG


# -- image pull ----------------------------------------------------------------------------
def test_an_image_that_does_not_exist_is_told_apart_from_unauthorized() -> None:
    missing, _ = diagnose("image-not-found")
    assert missing.category is Category.IMAGE_PULL
    assert 'image "ghcr.io/acme/web:1.4.3" does not exist in the registry' in missing.root_cause
    assert "image not found" in missing.summary_line
    refused, _ = diagnose("image-unauthorized")
    assert refused.category is Category.IMAGE_PULL
    assert "pull credentials are missing or wrong" in refused.root_cause
    assert "unauthorized" in refused.summary_line
    for diagnosis in (missing, refused):
        assert diagnosis.patch is None
        assert any("never changes an image" in line for line in diagnosis.evidence)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("manifest unknown: manifest unknown", "image not found"),
        ("failed to resolve reference: docker.io/acme/web:1.4.3: not found", "image not found"),
        (
            "pull access denied, repository does not exist or may require authorization: "
            "server message: insufficient_scope: authorization failed",
            "unauthorized",
        ),
        ("unexpected status code [manifests 1.4.3]: 403 Forbidden", "unauthorized"),
        ("no basic auth credentials", "unauthorized"),
        ("authentication required", "unauthorized"),
        ("dial tcp: lookup ghcr.io: no such host", "registry unreachable"),
    ],
)
def test_image_pull_messages_are_classified(message: str, kind: str) -> None:
    subject, context = scenario("image-not-found")
    for event in context.events:
        if event["message"].startswith("Failed to pull image"):
            event["message"] = f'Failed to pull image "ghcr.io/acme/web:1.4.3": {message}'
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.IMAGE_PULL
    assert kind in diagnosis.summary_line


# -- probes --------------------------------------------------------------------------------
def test_a_liveness_probe_killing_a_slow_starter_gets_a_startup_probe() -> None:
    diagnosis, context = diagnose("probe-slow-start")
    assert diagnosis.category is Category.PROBE_FAILURE  # not app_crash, despite exit 137
    assert "still starting" in diagnosis.root_cause
    assert "killed after 38s" in evidence(diagnosis)
    assert "Liveness probe failed" in evidence(diagnosis)
    startup = containers_of(diagnosis.patch)[0]["startupProbe"]
    assert startup == {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "failureThreshold": 12,
    }
    assert check_patch(diagnosis.patch or {}, context.workload) == []


def test_an_existing_startup_probe_that_kills_is_lengthened_within_bounds() -> None:
    subject, context = scenario("probe-slow-start")
    assert context.workload is not None
    search = context.workload["spec"]["template"]["spec"]["containers"][0]
    search["startupProbe"] = {
        "httpGet": {"path": "/healthz", "port": 8080},
        "periodSeconds": 5,
        "failureThreshold": 6,
    }
    for event in context.events:
        event["message"] = (
            event["message"].replace("Liveness", "Startup").replace("liveness", "startup")
        )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PROBE_FAILURE
    assert containers_of(diagnosis.patch)[0]["startupProbe"] == {"failureThreshold": 12}
    assert check_patch(diagnosis.patch or {}, context.workload) == []


def test_a_probe_failing_with_http_500_is_not_a_timing_problem() -> None:
    diagnosis, _ = diagnose("probe-http-500")
    assert diagnosis.category is Category.PROBE_FAILURE
    assert "HTTP 500" in diagnosis.root_cause
    assert diagnosis.patch is None
    assert "not a timing problem" in evidence(diagnosis)


def test_a_container_killed_long_after_startup_gets_no_timing_patch() -> None:
    subject, context = scenario("probe-slow-start")
    last = context.pods[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]
    last["startedAt"] = "2024-05-14T08:00:00Z"
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PROBE_FAILURE
    assert diagnosis.patch is None
    assert "it became unhealthy later" in evidence(diagnosis)


def test_a_slow_starter_whose_log_shows_errors_gets_no_timing_patch() -> None:
    subject, context = scenario("probe-slow-start")
    context.logs[0].lines.append(
        "2024-05-14T10:00:35Z FATAL cannot open shard 7: permission denied"
    )
    diagnosis = analyze(subject, context)
    assert diagnosis.patch is None


def test_readiness_failures_alone_lose_to_a_crash_with_an_exit_code() -> None:
    subject, context = scenario("crash-python")
    unhealthy = copy.deepcopy(context.events[0])
    unhealthy.update(
        reason="Unhealthy",
        message='Readiness probe failed: Get "http://10.1.2.3:8080/ready": '
        "dial tcp 10.1.2.3:8080: connect: connection refused",
    )
    context.events.append(unhealthy)
    assert analyze(subject, context).category is Category.APP_CRASH
    # Without the crash, the readiness probe is the finding, and it proposes nothing.
    context.pods[0]["status"]["containerStatuses"][0]["lastState"] = {}
    context.pods[0]["status"]["containerStatuses"][0]["state"] = {
        "running": {"startedAt": "2024-05-14T10:01:10Z"}
    }
    context.pods[0]["status"]["containerStatuses"][0]["restartCount"] = 0
    context.workload = None
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PROBE_FAILURE
    assert "readiness probe" in diagnosis.root_cause
    assert diagnosis.patch is None


# -- scheduling and storage ----------------------------------------------------------------
def test_insufficient_memory_names_the_request() -> None:
    diagnosis, _ = diagnose("pending-insufficient")
    assert diagnosis.category is Category.UNSCHEDULABLE
    assert (
        "Pod ml-worker-6f5e4d3c2b-aaaaa of Deployment ml/ml-worker cannot be scheduled"
        in diagnosis.root_cause
    )
    assert "3 of 3 nodes lack memory for its request of 24Gi" in diagnosis.root_cause
    assert "0/3 nodes are available: 3 Insufficient memory." in evidence(diagnosis)
    assert diagnosis.patch is None


def test_taints_and_affinity_are_both_reported() -> None:
    diagnosis, _ = diagnose("pending-taint-affinity")
    assert diagnosis.category is Category.UNSCHEDULABLE
    assert "1 of 4 nodes have a taint it does not tolerate" in diagnosis.root_cause
    assert "node-role.kubernetes.io/control-plane" in diagnosis.root_cause
    assert "3 of 4 nodes are excluded by its nodeSelector or node affinity" in diagnosis.root_cause
    assert "nodeSelector: accelerator=nvidia-a100" in diagnosis.evidence


def test_unschedulable_comes_from_events_when_the_pod_condition_is_missing() -> None:
    subject, context = scenario("pending-insufficient")
    context.pods[0]["status"]["conditions"] = []
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.UNSCHEDULABLE
    assert "24Gi" in diagnosis.root_cause


def test_an_unbound_pvc_wins_over_the_scheduler_message_it_causes() -> None:
    diagnosis, _ = diagnose("pvc-pending")
    assert diagnosis.category is Category.PVC_PENDING
    assert "PersistentVolumeClaim db/data-postgres-0 is Pending" in diagnosis.root_cause
    assert 'storageclass.storage.k8s.io "fast-ssd" not found' in diagnosis.root_cause
    assert "storageClassName fast-ssd, 20Gi, ReadWriteOnce" in evidence(diagnosis)


def test_a_claim_without_storage_class_says_so() -> None:
    subject, context = scenario("pvc-pending")
    del context.pvcs[0]["spec"]["storageClassName"]
    context.events[1].update(
        reason="FailedBinding",
        message="no persistent volumes available for this claim and no storage class is set",
    )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PVC_PENDING
    assert "no storage class is set" in diagnosis.root_cause
    assert "no storageClassName" in evidence(diagnosis)


def test_a_claim_waiting_for_its_consumer_yields_to_the_real_scheduling_problem() -> None:
    subject, context = scenario("pending-insufficient")
    context.pvcs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "scratch-ml-worker", "namespace": "ml"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "gp3",
                "resources": {"requests": {"storage": "100Gi"}},
            },
            "status": {"phase": "Pending"},
        }
    ]
    context.events.append(
        {
            "kind": "Event",
            "involvedObject": {
                "kind": "PersistentVolumeClaim",
                "name": "scratch-ml-worker",
                "namespace": "ml",
            },
            "reason": "WaitForFirstConsumer",
            "message": "waiting for first consumer to be created before binding",
            "type": "Normal",
            "count": 3,
        }
    )
    assert analyze(subject, context).category is Category.UNSCHEDULABLE
    context.events = context.events[1:]  # only the claim's event left
    context.pods[0]["status"]["conditions"] = []
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PVC_PENDING
    assert diagnosis.confidence <= 0.5


def test_an_unbound_claim_named_only_by_the_scheduler_is_pvc_pending() -> None:
    subject, context = scenario("pvc-pending")
    context.pvcs = []
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.PVC_PENDING
    assert "data-postgres-0" in diagnosis.root_cause


# -- rollouts, nodes, jobs -----------------------------------------------------------------
def test_a_rollout_blocked_by_quota_is_rollout_stuck_with_the_reason() -> None:
    diagnosis, _ = diagnose("rollout-quota")
    assert diagnosis.category is Category.ROLLOUT_STUCK
    assert "exceeded quota: compute" in diagnosis.root_cause
    assert diagnosis.summary_line == "analytics/reports: rollout stuck (ProgressDeadlineExceeded)"


def test_a_stuck_rollout_without_a_visible_cause_has_lower_confidence() -> None:
    subject, context = scenario("rollout-quota")
    context.events = []
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.ROLLOUT_STUCK
    assert diagnosis.confidence <= 0.6
    assert "no more specific cause" in diagnosis.root_cause


def test_statefulset_and_daemonset_rollouts() -> None:
    subject = Subject(cluster="c", alertname="KubeDaemonSetRolloutStuck", namespace="ops")
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ops"},
        "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "a:1"}]}}},
        "status": {
            "desiredNumberScheduled": 5,
            "currentNumberScheduled": 5,
            "numberReady": 3,
            "updatedNumberScheduled": 5,
            "numberAvailable": 3,
            "numberUnavailable": 2,
            "numberMisscheduled": 0,
        },
    }
    diagnosis = analyze(subject, ClusterContext(cluster="c", reachable=True, workload=daemonset))
    assert diagnosis.category is Category.ROLLOUT_STUCK
    assert "3/5 pods ready" in evidence(diagnosis)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kafka", "namespace": "ops"},
        "spec": {"replicas": 3},
        "status": {
            "replicas": 3,
            "readyReplicas": 3,
            "updatedReplicas": 1,
            "currentRevision": "kafka-5d4",
            "updateRevision": "kafka-7f9",
        },
    }
    diagnosis = analyze(subject, ClusterContext(cluster="c", reachable=True, workload=statefulset))
    assert diagnosis.category is Category.ROLLOUT_STUCK
    assert "update to revision kafka-7f9 not rolled out (1/3 updated)" in evidence(diagnosis)
    healthy = copy.deepcopy(statefulset)
    healthy["status"]["updateRevision"] = "kafka-5d4"
    assert (
        analyze(subject, ClusterContext(cluster="c", reachable=True, workload=healthy)).category
        is Category.UNKNOWN
    )


def test_node_not_ready_and_pressure() -> None:
    down, _ = diagnose("node-not-ready")
    assert down.category is Category.NODE_NOT_READY
    assert down.root_cause == (
        "Node ip-10-0-3-41.eu-west-1.compute.internal is unhealthy (the kubelet stopped reporting)"
    )
    assert "Kubelet stopped posting node status." in evidence(down)
    pressure, _ = diagnose("node-disk-pressure")
    assert pressure.category is Category.NODE_NOT_READY
    assert "DiskPressure" in pressure.root_cause
    assert "MemoryPressure" not in evidence(pressure)


def test_a_healthy_node_is_not_a_finding() -> None:
    subject, context = scenario("node-disk-pressure")
    conditions = context.nodes[0]["status"]["conditions"]
    conditions[1].update(status="False", reason="KubeletHasNoDiskPressure")
    assert analyze(subject, context).category is Category.UNKNOWN


def test_pods_evicted_for_node_pressure_are_node_trouble() -> None:
    subject, context = scenario("healthy")
    context.pods[0]["status"].update(
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: ephemeral-storage. "
        "Threshold quantity: 2126213140, available: 1810928Ki.",
        containerStatuses=[],
    )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.NODE_NOT_READY
    assert "low on resource: ephemeral-storage" in diagnosis.root_cause


def test_a_failed_job_quotes_its_pods_log() -> None:
    diagnosis, _ = diagnose("job-backoff")
    assert diagnosis.category is Category.JOB_FAILED  # not app_crash: the Job is what failed
    assert "Job batch/nightly-report-28597340 failed" in diagnosis.root_cause
    assert "backoffLimit" in diagnosis.root_cause
    assert "password authentication failed" in diagnosis.root_cause
    assert "4 failed pods, backoffLimit 3" in diagnosis.evidence


def test_a_job_past_its_deadline_and_a_job_that_did_not_fail() -> None:
    subject, context = scenario("job-backoff")
    assert context.workload is not None
    failed = context.workload["status"]["conditions"][1]
    failed.update(
        reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    context.workload["spec"]["activeDeadlineSeconds"] = 600
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.JOB_FAILED
    assert "activeDeadlineSeconds" in diagnosis.root_cause
    failed["status"] = "False"
    assert analyze(subject, context).category is Category.APP_CRASH  # its pods still crashed


def test_an_oomkilled_job_pod_is_oom_killed_with_the_job_as_support() -> None:
    subject, context = scenario("job-backoff")
    for pod in context.pods:
        pod["status"]["containerStatuses"][0]["state"]["terminated"].update(
            exitCode=137, reason="OOMKilled"
        )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.OOM_KILLED
    assert "condition Failed BackoffLimitExceeded" in evidence(diagnosis)
    assert diagnosis.patch is not None
    assert diagnosis.patch["kind"] == "Job"
    assert check_patch(diagnosis.patch, context.workload) == []


# -- the alert alone -----------------------------------------------------------------------
def test_an_unreachable_cluster_is_diagnosed_from_the_alert_with_low_confidence() -> None:
    subject, _ = scenario("oom-rollout")
    context = ClusterContext(
        cluster="prod-eu",
        reachable=False,
        notes=["connect timeout to https://10.0.0.1:443 after 5s"],
    )
    diagnosis = analyze(subject, context)
    assert diagnosis.category is Category.APP_CRASH  # the alert's hint
    assert diagnosis.confidence <= 0.3
    assert diagnosis.patch is None
    assert diagnosis.evidence[0] == (
        "cluster prod-eu was not reachable: connect timeout to https://10.0.0.1:443 after 5s"
    )
    assert "alert label pod: api-7c9d8f6b5-x2x7q" in diagnosis.evidence
    assert "from the alert alone" in diagnosis.root_cause
    assert "cluster unreachable" in diagnosis.summary_line


def test_an_unreachable_cluster_ignores_stale_context_and_handles_unknown_alerts() -> None:
    subject, context = scenario("oom-rollout")
    context.reachable = False
    context.notes = []
    diagnosis = analyze(subject, context)  # pods present but not trusted: no patch
    assert diagnosis.patch is None
    assert "no reason recorded" in diagnosis.evidence[0]
    unknown = Subject(
        cluster="default",
        alertname="SomethingOdd",
        workload=WorkloadRef(kind="Alert", name="SomethingOdd/instance=x"),
    )
    diagnosis = analyze(
        unknown, ClusterContext(cluster="default", notes=["no cluster 'default' configured"])
    )
    assert diagnosis.category is Category.UNKNOWN
    assert diagnosis.confidence <= 0.1
    assert "no cluster 'default' configured" in diagnosis.evidence[0]


# -- never raises --------------------------------------------------------------------------
def _mangle(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        return {k: _mangle(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [_mangle(v, rng) for v in value]
    roll = rng.random()
    if roll < 0.08:
        return rng.choice([None, 7, "x", [], {}, True, -1, "2024-13-45T99:99:99Z", [None]])
    return value


@pytest.mark.parametrize("name", ALL)
def test_analyze_never_raises_on_mangled_objects(name: str) -> None:
    rng = random.Random(name)
    for _ in range(25):
        subject, context = scenario(name)
        context.workload = _mangle(context.workload, rng)
        context.pods = _mangle(context.pods, rng)
        context.events = _mangle(context.events, rng)
        context.nodes = _mangle(context.nodes, rng)
        context.pvcs = _mangle(context.pvcs, rng)
        diagnosis = analyze(subject, context)
        assert isinstance(diagnosis, Diagnosis)
        if diagnosis.patch is not None:
            assert check_patch(diagnosis.patch, context.workload) == []


def test_analyze_never_raises_on_objects_of_the_wrong_type() -> None:
    subject = Subject(cluster="c", alertname="KubePodCrashLooping", pod="p")
    context = ClusterContext(
        cluster="c",
        reachable=True,
        workload={"kind": "Deployment", "spec": "nonsense", "status": []},  # type: ignore[dict-item]
        pods=["not a pod", {"status": {"containerStatuses": {"name": "x"}}}],  # type: ignore[list-item]
        events=[None, {"involvedObject": "pod"}],  # type: ignore[list-item]
        nodes=[{"status": {"conditions": "Ready"}}],
        logs=[LogExcerpt(pod="p", container="x", previous=True, lines=[], total_lines=0)],
        metrics=[
            MetricSample(pod="p", container="x", resource="memory", peak=float("nan"), limit=None)
        ],
    )
    diagnosis = analyze(subject, context)
    assert isinstance(diagnosis, Diagnosis)


def test_a_rule_that_trips_is_skipped_and_named_while_the_others_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pitcrew.incidents import analyzers

    def brittle(scene: object) -> list[Any]:
        raise KeyError("status")

    monkeypatch.setattr(analyzers, "RULES", (brittle, *analyzers.RULES))
    diagnosis = analyze(*scenario("oom-rollout"))
    assert diagnosis.category is Category.OOM_KILLED
    assert "rule brittle skipped: KeyError: 'status'" in diagnosis.evidence
