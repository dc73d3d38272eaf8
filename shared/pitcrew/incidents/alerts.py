"""Alertmanager's webhook payload (version 4), read strictly, and what each alert is about.

``parse_webhook`` turns a request body into a ``Webhook`` or raises ``BadRequestError`` naming
the first problem (``alerts[3].labels.pod: expected a string``). ``subject_of`` maps the labels
of the kube-prometheus / kubernetes-mixin rules (and of any rule that uses the same label
names) to the Kubernetes object the alert is about and the category its name suggests. The
owner of a pod is guessed from the pod's name; ``pitcrew.kube`` confirms it from
``ownerReferences``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from pitcrew.errors import BadRequestError
from pitcrew.incidents.model import Category, Subject, WorkloadRef
from pitcrew.records import frozen

WEBHOOK_VERSION = "4"
STATUSES = ("firing", "resolved")
DEFAULT_CLUSTER = "default"

# RFC 3339 as Go writes it: up to nine fractional digits, "Z" or an offset.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


@frozen
class Alert:
    """One alert of a notification, as Alertmanager sent it."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str
    generator_url: str

    @property
    def key(self) -> str:
        """What makes a delivery of this alert the same as another: Alertmanager resends a
        group every ``group_interval`` with the same fingerprint, start and status."""
        return f"{self.fingerprint}/{self.starts_at}/{self.status}"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def as_dict(self) -> dict[str, Any]:
        """The alert in Alertmanager's own JSON shape (what is enqueued for diagnosis)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@frozen
class Webhook:
    """One Alertmanager notification: a group of alerts sent to one receiver."""

    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_key: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    truncated_alerts: int

    def group(self) -> dict[str, Any]:
        """Everything about the notification but its alerts, in Alertmanager's JSON names."""
        return {
            "receiver": self.receiver,
            "status": self.status,
            "externalURL": self.external_url,
            "groupKey": self.group_key,
            "groupLabels": dict(self.group_labels),
            "commonLabels": dict(self.common_labels),
            "commonAnnotations": dict(self.common_annotations),
            "truncatedAlerts": self.truncated_alerts,
        }


# ------------------------------------------------------------------ parsing


def parse_webhook(body: bytes | str) -> Webhook:
    """A webhook body as a ``Webhook``; ``BadRequestError`` naming the problem otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequestError("the body is not an Alertmanager webhook: nested too deeply") from exc
    return webhook_from_json(document)


def webhook_from_json(document: Any) -> Webhook:
    """A decoded webhook document as a ``Webhook`` (the same checks as ``parse_webhook``)."""
    if not isinstance(document, dict):
        raise BadRequestError(
            f"expected an Alertmanager webhook object, got a JSON {_json_type(document)}"
        )
    version = document.get("version")
    if version != WEBHOOK_VERSION:
        raise BadRequestError(
            f"version: expected Alertmanager webhook version {WEBHOOK_VERSION!r}, got {version!r}"
        )
    raw_alerts = _field(document, "alerts", list, "a list")
    truncated = _field(document, "truncatedAlerts", int, "an integer")
    if isinstance(truncated, bool) or truncated < 0:
        raise BadRequestError("truncatedAlerts: expected a non-negative integer")
    return Webhook(
        receiver=_field(document, "receiver", str, "a string"),
        status=_status(document, "status"),
        alerts=tuple(_alert(raw, f"alerts[{i}]") for i, raw in enumerate(raw_alerts)),
        group_key=_field(document, "groupKey", str, "a string"),
        group_labels=_labels(document, "groupLabels"),
        common_labels=_labels(document, "commonLabels"),
        common_annotations=_labels(document, "commonAnnotations"),
        external_url=_field(document, "externalURL", str, "a string"),
        truncated_alerts=truncated,
    )


def alert_from_dict(raw: Any, path: str = "alert") -> Alert:
    """One alert in Alertmanager's JSON shape (as enqueued) as an ``Alert``."""
    return _alert(raw, path)


def _alert(raw: Any, path: str) -> Alert:
    if not isinstance(raw, dict):
        raise BadRequestError(f"{path}: expected an object, got a JSON {_json_type(raw)}")
    labels = _labels(raw, "labels", path)
    if not labels:
        raise BadRequestError(f"{path}.labels: an alert needs at least one label")
    fingerprint = _field(raw, "fingerprint", str, "a string", path)
    if not fingerprint:
        raise BadRequestError(f"{path}.fingerprint: must not be empty")
    return Alert(
        status=_status(raw, "status", path),
        labels=labels,
        annotations=_labels(raw, "annotations", path),
        starts_at=_timestamp(raw, "startsAt", path),
        ends_at=_timestamp(raw, "endsAt", path),
        fingerprint=fingerprint,
        generator_url=_field(raw, "generatorURL", str, "a string", path),
    )


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field(document: dict[str, Any], key: str, kind: type, what: str, path: str = "") -> Any:
    if key not in document:
        raise BadRequestError(f"{_where(path, key)}: missing (required in webhook version 4)")
    value = document[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequestError(
            f"{_where(path, key)}: expected {what}, got a JSON {_json_type(value)}"
        )
    return value


def _status(document: dict[str, Any], key: str, path: str = "") -> str:
    value = _field(document, key, str, "a string", path)
    if value not in STATUSES:
        raise BadRequestError(
            f"{_where(path, key)}: expected 'firing' or 'resolved', got {value!r}"
        )
    return str(value)


def _timestamp(document: dict[str, Any], key: str, path: str) -> str:
    value = _field(document, key, str, "a string", path)
    if not _TIMESTAMP.fullmatch(value):
        raise BadRequestError(f"{_where(path, key)}: expected an RFC 3339 time, got {value!r}")
    return str(value)


def _labels(document: dict[str, Any], key: str, path: str = "") -> dict[str, str]:
    value = _field(document, key, dict, "an object", path)
    for name, item in value.items():
        if not isinstance(item, str):
            raise BadRequestError(
                f"{_where(path, key)}.{name}: expected a string, got a JSON {_json_type(item)}"
            )
    return dict(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ------------------------------------------------------------------ subjects

# The category each well-known alert suggests before any evidence is seen.
ALERT_CATEGORIES: Mapping[str, Category] = {
    "KubePodCrashLooping": Category.APP_CRASH,
    # kubernetes-mixin's expression counts pods in phase Pending/Unknown/Failed: most often a
    # pod the scheduler cannot place.
    "KubePodNotReady": Category.UNSCHEDULABLE,
    "KubeDeploymentReplicasMismatch": Category.ROLLOUT_STUCK,
    "KubeDeploymentRolloutStuck": Category.ROLLOUT_STUCK,
    "KubeDeploymentGenerationMismatch": Category.ROLLOUT_STUCK,
    "KubeStatefulSetReplicasMismatch": Category.ROLLOUT_STUCK,
    "KubeStatefulSetGenerationMismatch": Category.ROLLOUT_STUCK,
    "KubeStatefulSetUpdateNotRolledOut": Category.ROLLOUT_STUCK,
    "KubeDaemonSetRolloutStuck": Category.ROLLOUT_STUCK,
    "KubeDaemonSetNotScheduled": Category.ROLLOUT_STUCK,
    "KubeDaemonSetMisScheduled": Category.ROLLOUT_STUCK,
    "KubeHpaReplicasMismatch": Category.ROLLOUT_STUCK,
    "KubeJobFailed": Category.JOB_FAILED,
    "KubeJobNotCompleted": Category.JOB_FAILED,
    "KubeJobCompletion": Category.JOB_FAILED,
    "KubeNodeNotReady": Category.NODE_NOT_READY,
    "KubeNodeUnreachable": Category.NODE_NOT_READY,
    "KubeNodeReadinessFlapping": Category.NODE_NOT_READY,
    "KubeNodePressure": Category.NODE_NOT_READY,
    "KubeletDown": Category.NODE_NOT_READY,
    "KubeletTooManyPods": Category.NODE_NOT_READY,
    "KubeletPlegDurationHigh": Category.NODE_NOT_READY,
    "KubePersistentVolumeErrors": Category.PVC_PENDING,
}

# A container's waiting/terminated reason (the ``reason`` label of kube-state-metrics series)
# says more than the alert's name.
REASON_CATEGORIES: Mapping[str, Category] = {
    "CrashLoopBackOff": Category.APP_CRASH,
    "Error": Category.APP_CRASH,
    "OOMKilled": Category.OOM_KILLED,
    "ImagePullBackOff": Category.IMAGE_PULL,
    "ErrImagePull": Category.IMAGE_PULL,
    "InvalidImageName": Category.IMAGE_PULL,
    "ErrImageNeverPull": Category.IMAGE_PULL,
    "CreateContainerConfigError": Category.MISSING_CONFIG,
    "CreateContainerError": Category.MISSING_CONFIG,
}

# Alerts about a node's health, whatever namespace label the exporter's series carried.
_NODE_ALERTS = frozenset(
    name for name, category in ALERT_CATEGORIES.items() if category is Category.NODE_NOT_READY
)

# node-exporter-mixin alerts (NodeFilesystemSpaceFillingUp, NodeMemoryHighUtilization...) are
# about the host their series came from, not about the node-exporter pod that scraped it.
_NODE_EXPORTER_PRESSURE = re.compile(r"^Node(Filesystem|Memory|Disk|CPU|SystemSaturation)")


def node_of_exporter_alert(alert: Alert) -> str | None:
    """The node a node-exporter alert is about (``node``/``nodename``, else ``instance``
    without its port: kube-prometheus sets it to the node's name), or None."""
    labels = alert.labels
    name = alert.name
    if not name.startswith("Node") or name in ALERT_CATEGORIES:
        return None
    if "node-exporter" not in labels.get("job", "") and "node-exporter" not in labels.get(
        "pod", ""
    ):
        return None
    node = labels.get("node") or labels.get("nodename") or labels.get("instance", "")
    host = node.rsplit(":", 1)[0] if node.count(":") == 1 else node
    return host or None


# Labels that say where a series was scraped or who is paged, not what the alert is about.
_NOISE_LABELS = frozenset(
    {
        "alertname",
        "cluster",
        "namespace",
        "prometheus",
        "severity",
        "job",
        "instance",
        "endpoint",
        "service",
        "uid",
        "team",
        "receiver",
        "priority",
        "container",
    }
)
_MAX_ALERT_NAME = 200
# Kubernetes cuts the base of a generated name (generateName) to 58 characters.
_MAX_GENERATED_BASE = 58

_WORKLOAD_LABELS = (
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("cronjob", "CronJob"),
)

# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no 0/1/3. Generated name suffixes
# and pod-template-hash values use only these, which tells them apart from words.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_DEPLOYMENT_POD = re.compile(rf"(?P<owner>.+)-[{_SAFE}]{{6,10}}-[{_SAFE}]{{5}}")
_STATEFULSET_POD = re.compile(r"(?P<owner>.+)-(?P<ordinal>\d+)")
_GENERATED_POD = re.compile(rf"(?P<owner>.+)-[{_SAFE}]{{5}}")
# A CronJob names each Job "<cronjob>-<scheduled time in minutes since the epoch>".
_CRONJOB_JOB = re.compile(r"(?P<owner>.+)-\d{8,}")


def is_oom_alert(name: str) -> bool:
    """Container OOM alerts of the common rule sets: KubeContainerOOMKilled,
    ContainerOOMKilled, KubernetesContainerOomKiller, PodOOMKilled, ..."""
    lowered = name.lower()
    return "oom" in lowered


def owner_of_pod(pod: str) -> WorkloadRef:
    """The workload a pod's name suggests (the namespace is left for the caller).

    ``api-7c9d8f6b5-x2x7q`` -> Deployment ``api`` (ReplicaSet hash, then a random suffix);
    ``db-0`` -> StatefulSet ``db``; ``backup-28391234-x7k2p`` -> CronJob ``backup``;
    ``node-exporter-x7k2p`` -> DaemonSet ``node-exporter`` (a Job's pods look the same: the
    kube part confirms); anything else is the Pod itself.
    """
    if match := _DEPLOYMENT_POD.fullmatch(pod):
        return WorkloadRef("Deployment", match["owner"])
    if match := _STATEFULSET_POD.fullmatch(pod):
        return WorkloadRef("StatefulSet", match["owner"])
    if match := _GENERATED_POD.fullmatch(pod):
        if cron := _CRONJOB_JOB.fullmatch(match["owner"]):
            return WorkloadRef("CronJob", cron["owner"])
        return WorkloadRef("DaemonSet", match["owner"])
    return WorkloadRef("Pod", pod)


def owner_of_job(job: str) -> WorkloadRef:
    """A Job created by a CronJob belongs to the CronJob (each run is a new Job name)."""
    if cron := _CRONJOB_JOB.fullmatch(job):
        return WorkloadRef("CronJob", cron["owner"])
    return WorkloadRef("Job", job)


def category_hint(alert: Alert) -> Category:
    """What the alert's name (or its ``reason`` label) suggests the cause is."""
    reason = alert.labels.get("reason", "")
    if reason in REASON_CATEGORIES:
        return REASON_CATEGORIES[reason]
    if is_oom_alert(alert.name):
        return Category.OOM_KILLED
    if node_of_exporter_alert(alert) and _NODE_EXPORTER_PRESSURE.match(alert.name):
        return Category.NODE_NOT_READY
    return ALERT_CATEGORIES.get(alert.name, Category.UNKNOWN)


def subject_of(alert: Alert) -> Subject:
    """What ``alert`` is about, from its labels: the object, the pod and container when the
    alert names them, the cluster (the ``cluster`` label, else ``default``) and a category
    hint. An alert about no object pitcrew knows is keyed by its identifying labels
    (``kind="Alert"``)."""
    labels = alert.labels
    cluster = labels.get("cluster") or DEFAULT_CLUSTER
    namespace = labels.get("namespace") or None
    pod = labels.get("pod") or None
    node = labels.get("node") or node_of_exporter_alert(alert)
    pvc = labels.get("persistentvolumeclaim") or None
    workload = _workload(alert, namespace, pod, node, pvc)
    if pod and not _pod_of(workload, pod):
        # The scrape target's pod (kube-state-metrics' own, on KubeJobFailed, KubeNodeNotReady,
        # KubeDeploymentReplicasMismatch...), not one of the object's.
        pod = None
    # Without a pod, a `container` label is the exporter's own (kube-state-metrics).
    container = (labels.get("container") or None) if pod else None
    if workload.kind in ("Node", "PersistentVolume"):
        # Cluster-scoped: the namespace label is where the exporter runs.
        namespace = None
    return Subject(
        cluster=cluster,
        alertname=alert.name,
        namespace=namespace,
        workload=WorkloadRef(workload.kind, workload.name, namespace),
        pod=pod,
        container=container,
        node=node,
        pvc=pvc,
        category_hint=category_hint(alert),
    )


def _pod_of(workload: WorkloadRef, pod: str) -> bool:
    """Whether ``pod`` can be one of ``workload``'s pods: a controller's pods are named after
    it (the name cut to ``_MAX_GENERATED_BASE`` characters for a long one); a cluster-scoped
    object has none."""
    if workload.kind in ("Node", "PersistentVolume"):
        return False
    if workload.kind in ("Pod", "Alert", "PersistentVolumeClaim"):
        return True
    return pod.startswith(workload.name[:_MAX_GENERATED_BASE])


def _workload(
    alert: Alert, namespace: str | None, pod: str | None, node: str | None, pvc: str | None
) -> WorkloadRef:
    if node and (alert.name in _NODE_ALERTS or node_of_exporter_alert(alert)):
        return WorkloadRef("Node", node)
    if alert.labels.get("persistentvolume") and not pvc:
        # Before the pod: kube_persistentvolume_* series carry the exporter's pod label.
        return WorkloadRef("PersistentVolume", alert.labels["persistentvolume"])
    namespaced = _namespaced_object(alert.labels, pod, pvc) if namespace else None
    if namespaced is not None:
        return namespaced
    if alert.labels.get("persistentvolume"):
        return WorkloadRef("PersistentVolume", alert.labels["persistentvolume"])
    if node:
        return WorkloadRef("Node", node)
    return WorkloadRef("Alert", alert_identity(alert))


def _namespaced_object(
    labels: Mapping[str, str], pod: str | None, pvc: str | None
) -> WorkloadRef | None:
    """The object of an alert with a namespace: a workload label first (it names the owner
    itself), then the pod's owner guessed from its name, then a PVC."""
    for label, kind in _WORKLOAD_LABELS:
        if labels.get(label):
            return WorkloadRef(kind, labels[label])
    if labels.get("job_name"):
        return owner_of_job(labels["job_name"])
    if pod:
        return owner_of_pod(pod)
    if pvc:
        return WorkloadRef("PersistentVolumeClaim", pvc)
    return None


def alert_identity(alert: Alert) -> str:
    """The name of an incident about an alert pitcrew cannot map to an object: the alert's
    name and its identifying labels, ``SettlementBacklogGrowing{topic="settlements.v2"}``."""
    identifying = {k: v for k, v in alert.labels.items() if k not in _NOISE_LABELS}
    if not identifying:
        return alert.name or "unnamed"
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(identifying.items()))
    name = f"{alert.name}{{{inner}}}"
    if len(name) <= _MAX_ALERT_NAME:
        return name
    digest = hashlib.sha256(inner.encode()).hexdigest()[:12]
    return f"{alert.name}{{{digest}}}"
