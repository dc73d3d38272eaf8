"""A fake Kubernetes API server on 127.0.0.1, built on ``FakeService``, and builders of the
objects it serves, shaped like a real cluster's.

It answers GETs the way the real API server does: single objects with ``kind`` and
``apiVersion``; ``<Kind>List`` documents (``metadata.resourceVersion``, items without kind and
apiVersion, ``limit`` and ``continue``); ``labelSelector`` (equality and set-based) and
``fieldSelector`` filtering; ``pods/{name}/log`` as text/plain with ``container``,
``previous``, ``tailLines`` and ``limitBytes``; and ``Status`` objects for 400, 401, 403 and
404 with the real messages. Point the kubernetes client at it with ``kubeconfig()``.

    with FakeKube(token="t0ken") as kube:
        kube.add(deployment("api", "payments"))
        kube.set_log("payments", "api-7c9d8f6b5-x2x7q", "api", "boom", previous=True)
        kube.forbid("pods/log")
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.fakehttp import FakeService, Reply, Request

IDENTITY = "system:serviceaccount:pitcrew:diagnose"
CREATED = "2024-06-12T09:00:00Z"

# kind -> (path prefix, resource, namespaced, API group for messages, list kind)
RESOURCES: dict[str, tuple[str, str, bool, str]] = {
    "Pod": ("/api/v1", "pods", True, ""),
    "Event": ("/api/v1", "events", True, ""),
    "Node": ("/api/v1", "nodes", False, ""),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True, ""),
    "Deployment": ("/apis/apps/v1", "deployments", True, "apps"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True, "apps"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True, "apps"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True, "apps"),
    "Job": ("/apis/batch/v1", "jobs", True, "batch"),
    "CronJob": ("/apis/batch/v1", "cronjobs", True, "batch"),
}
_BY_RESOURCE = {(prefix, resource): kind for kind, (prefix, resource, _, _) in RESOURCES.items()}
_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/(?:apps|batch)/v1)"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)


def status(
    code: int, reason: str, message: str, *, name: str | None = None, kind: str | None = None
) -> Reply:
    """A ``Status`` object, as the API server sends with every error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name is not None or kind is not None:
        details: dict[str, Any] = {"kind": kind}
        if name is not None:
            details["name"] = name
        group = next((g for _, r, _, g in RESOURCES.values() if r == kind and g), None)
        if group:
            details["group"] = group
        body["details"] = details
    return Reply(code, body)


class FakeKube:
    """The fake API server: objects added with ``add``, logs with ``set_log``; ``forbid``
    answers 403 for a resource; ``token`` (if set) must come as a bearer token."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.service = FakeService("kubernetes")
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.forbidden: set[str] = set()
        self._versions = itertools.count(1000)
        self.service.route("GET", r"^/.*$")(self._handle)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeKube:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def requests(self) -> list[Request]:
        return self.service.requests

    def kubeconfig(self, path: Path, *, token: str | None = None, context: str = "fake") -> Path:
        """Write a kubeconfig for this server (bearer token auth) and return its path."""
        document = kubeconfig_document(self.url, token or self.token or "none", context=context)
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path

    # -- content ---------------------------------------------------------------------------
    def add(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            kind = obj["kind"]
            _, _, namespaced, _ = RESOURCES[kind]
            metadata = obj.setdefault("metadata", {})
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", CREATED)
            metadata["resourceVersion"] = str(next(self._versions))
            namespace = metadata.get("namespace") if namespaced else None
            self.objects[(kind, namespace, metadata["name"])] = obj

    def set_log(
        self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False
    ) -> None:
        self.logs[(namespace, pod, container, previous)] = text

    def forbid(self, resource: str) -> None:
        """Answer 403 for ``resource`` (``pods``, ``pods/log``, ``events``, ``nodes``...)."""
        self.forbidden.add(resource)

    def log_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/log")]

    # -- serving ---------------------------------------------------------------------------
    def _handle(self, request: Request) -> Reply:
        if self.token is not None and request.header("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(request.path)
        kind = match and _BY_RESOURCE.get((match["prefix"], match["resource"]))
        if match is None or kind is None:
            return status(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match["namespace"], match["name"]
        resource = RESOURCES[kind][1]
        sub = f"{resource}/log" if match["log"] else resource
        if sub in self.forbidden:
            return self._forbidden("get" if name else "list", sub, namespace, name)
        if match["log"]:
            return self._log(request, namespace or "", name or "")
        if name:
            return self._get(kind, namespace, name)
        return self._list(request, kind, namespace)

    def _get(self, kind: str, namespace: str | None, name: str) -> Reply:
        _, resource, namespaced, _ = RESOURCES[kind]
        found = self.objects.get((kind, namespace if namespaced else None, name))
        if found is None:
            message = f'{_qualified(kind)} "{name}" not found'
            return status(404, "NotFound", message, name=name, kind=resource)
        return Reply(200, found)

    def _forbidden(
        self, verb: str, resource: str, namespace: str | None, name: str | None
    ) -> Reply:
        base = resource.split("/", maxsplit=1)[0]
        group = next(g for _, r, _, g in RESOURCES.values() if r == base)
        who = f'{base} "{name}"' if name else base
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        message = (
            f'{who} is forbidden: User "{IDENTITY}" cannot {verb} resource "{resource}" '
            f'in API group "{group}"{where}'
        )
        return status(403, "Forbidden", message, name=name, kind=base)

    def _list(self, request: Request, kind: str, namespace: str | None) -> Reply:
        labels = _one(request, "labelSelector")
        fields = _one(request, "fieldSelector")
        items = [
            obj
            for (k, ns, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
            if k == kind
            and (namespace is None or ns == namespace)
            and (labels is None or label_selector_matches(labels, _labels(obj)))
            and (fields is None or field_selector_matches(fields, obj))
        ]
        start = int(_one(request, "continue") or 0)
        limit = int(_one(request, "limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        metadata: dict[str, Any] = {"resourceVersion": str(next(self._versions))}
        if limit and start + limit < len(items):
            metadata["continue"] = str(start + limit)
            metadata["remainingItemCount"] = len(items) - start - limit
        _, _, _, group = RESOURCES[kind]
        return Reply(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": f"{group}/v1" if group else "v1",
                "metadata": metadata,
                # Items of a typed list carry neither kind nor apiVersion.
                "items": [
                    {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                    for obj in page
                ],
            },
        )

    def _log(self, request: Request, namespace: str, name: str) -> Reply:
        pod = self.objects.get(("Pod", namespace, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        names = [
            c["name"] for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
        ]
        container = _one(request, "container")
        if container is None:
            if len(names) > 1:
                return status(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            return status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = _one(request, "previous") == "true"
        text = self.logs.get((namespace, name, container, previous))
        if text is None and previous:
            return status(
                400,
                "BadRequest",
                f'previous terminated container "{container}" in pod "{name}" not found',
            )
        lines = (text or "").splitlines(keepends=True)
        tail = _one(request, "tailLines")
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) else []
        body = "".join(lines).encode()
        limit_bytes = _one(request, "limitBytes")
        if limit_bytes is not None:
            body = body[: int(limit_bytes)]
        return Reply(200, body, headers={"Content-Type": "text/plain"})


def _qualified(kind: str) -> str:
    _, resource, _, group = RESOURCES[kind]
    return f"{resource}.{group}" if group else resource


def _one(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


# --- selectors, as the API server reads them -------------------------------------------------

_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Terms separated by commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in _split_terms(selector):
        if match := _SET_TERM.match(term):
            key, operator, values = match.groups()
            allowed = {v.strip() for v in values.split(",")}
            inside = key in labels and labels[key] in allowed
            if inside != (operator == "in"):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_selector_matches(selector: str, obj: Mapping[str, Any]) -> bool:
    for term in _split_terms(selector):
        negate = "!=" in term
        path, value = term.replace("==", "=").replace("!=", "=").split("=", 1)
        if (_field(obj, path.strip()) == value.strip()) == negate:
            return False
    return True


# --- kubeconfig -------------------------------------------------------------------------------


def kubeconfig_document(server: str, token: str, *, context: str = "fake") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": f"{context}-user", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-user"}}],
        "current-context": context,
    }


# --- builders of API objects ------------------------------------------------------------------


def _meta(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str] | None = None,
    owner: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": CREATED,
        "labels": dict(labels or {}),
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def container(
    name: str,
    image: str = "registry.example.com/app:1.4.2",
    *,
    memory: str | None = "256Mi",
    cpu: str | None = "500m",
    liveness: bool = False,
) -> dict[str, Any]:
    limits = {k: v for k, v in (("memory", memory), ("cpu", cpu)) if v}
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"limits": limits, "requests": dict(limits)},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if liveness:
        spec["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
            "successThreshold": 1,
        }
    return spec


def _template(labels: Mapping[str, str], containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
    }


def deployment(
    name: str,
    namespace: str,
    *,
    replicas: int = 2,
    containers: list[dict[str, Any]] | None = None,
    available: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    ready = replicas if available is None else available
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": _meta(
            name,
            namespace,
            labels,
            annotations={
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"apps/v1"}',
            },
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": _template(labels, containers or [container(name)]),
            "strategy": {"type": "RollingUpdate"},
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 3,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas - ready,
            "conditions": conditions
            or [
                {
                    "type": "Available",
                    "status": "True" if ready == replicas else "False",
                    "reason": "MinimumReplicasAvailable"
                    if ready == replicas
                    else "MinimumReplicasUnavailable",
                },
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    }


def replicaset(owner: Mapping[str, Any], pod_hash: str, *, revision: int = 3) -> dict[str, Any]:
    labels = {**owner["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    replicas = owner["spec"]["replicas"]
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": _meta(
            f"{owner['metadata']['name']}-{pod_hash}",
            owner["metadata"]["namespace"],
            labels,
            owner,
            annotations={"deployment.kubernetes.io/revision": str(revision)},
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": _template(labels, owner["spec"]["template"]["spec"]["containers"]),
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


def statefulset(
    name: str, namespace: str, *, replicas: int = 1, claim: str | None = "data"
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": labels},
        "template": _template(labels, [container(name, "postgres:16.3", memory="1Gi")]),
    }
    if claim:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "10Gi"}},
                    "storageClassName": "gp3",
                },
            }
        ]
    return {
        "kind": "StatefulSet",
        "apiVersion": "apps/v1",
        "metadata": _meta(name, namespace, labels),
        "spec": spec,
        "status": {"replicas": replicas, "readyReplicas": 0, "currentReplicas": replicas},
    }


def cronjob(name: str, namespace: str) -> dict[str, Any]:
    return {
        "kind": "CronJob",
        "apiVersion": "batch/v1",
        "metadata": _meta(name, namespace, {"app.kubernetes.io/name": name}),
        "spec": {
            "schedule": "0 2 * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "spec": {
                            "containers": [container(name, "registry.example.com/backup:2.0")],
                            "restartPolicy": "Never",
                        }
                    },
                }
            },
        },
        "status": {"lastScheduleTime": "2024-06-12T02:00:00Z"},
    }


def job(
    name: str, namespace: str, *, owner: Mapping[str, Any] | None = None, failed: bool = True
) -> dict[str, Any]:
    meta = _meta(name, namespace, {"job-name": name}, owner)
    uid = meta["uid"]
    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name}
    meta["labels"].update(labels)
    conditions = (
        [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2024-06-12T02:04:00Z",
            }
        ]
        if failed
        else []
    )
    return {
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
            "template": _template(labels, [container(name.rsplit("-", 1)[0])]),
        },
        "status": {"failed": 3 if failed else 0, "conditions": conditions},
    }


def running(started: str = "2024-06-12T09:10:00Z") -> dict[str, Any]:
    return {"running": {"startedAt": started}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def terminated(reason: str = "Error", exit_code: int = 1) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": "2024-06-12T09:58:00Z",
            "finishedAt": "2024-06-12T09:58:07Z",
            "containerID": "containerd://" + uuid.uuid4().hex,
        }
    }


def container_status(
    name: str,
    state: dict[str, Any],
    *,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    ready: bool | None = None,
    image: str = "registry.example.com/app:1.4.2",
) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "lastState": last_state or {},
        "ready": ("running" in state) if ready is None else ready,
        "restartCount": restarts,
        "image": image,
        "imageID": "registry.example.com/app@sha256:" + "ab" * 32,
        "started": "running" in state,
    }


def pod(
    name: str,
    namespace: str,
    *,
    owner: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
    statuses: Iterable[dict[str, Any]] = (),
    containers: list[dict[str, Any]] | None = None,
    node: str | None = "node-1",
    claims: Iterable[str] = (),
    node_selector: Mapping[str, str] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    if labels is None and owner is not None:
        labels = owner["spec"]["selector"]["matchLabels"]
    if containers is None:
        template = (owner or {}).get("spec", {}).get("template", {}).get("spec", {})
        containers = template.get("containers") or [container("app")]
    statuses = list(statuses)
    spec: dict[str, Any] = {
        "containers": containers,
        "volumes": [
            {"name": claim, "persistentVolumeClaim": {"claimName": claim}} for claim in claims
        ],
        "restartPolicy": "Always",
        "serviceAccountName": "default",
    }
    if node:
        spec["nodeName"] = node
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    ready = bool(statuses) and all(s["ready"] for s in statuses)
    pod_status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        or [
            {"type": "PodScheduled", "status": "True" if node else "False"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
        "containerStatuses": statuses,
        "qosClass": "Guaranteed",
        "startTime": "2024-06-12T09:00:00Z",
    }
    if reason:
        pod_status["reason"] = reason
    if node:
        pod_status["hostIP"] = "10.0.1.17"
        pod_status["podIP"] = "10.0.1.42"
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": _meta(name, namespace, labels, owner),
        "spec": spec,
        "status": pod_status,
    }


def node(
    name: str,
    *,
    ready: str = "True",
    taints: list[dict[str, Any]] | None = None,
    pressure: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """A Node as the API returns it; ``address`` is its InternalIP (default: one made from
    its name)."""
    internal_ip = address or f"10.0.1.{sum(map(ord, name)) % 250 + 1}"
    conditions = [
        {
            "type": kind,
            "status": "True" if kind == pressure else "False",
            "reason": f"KubeletHas{'Insufficient' if kind == pressure else 'Sufficient'}"
            f"{kind.removesuffix('Pressure')}",
        }
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
            "message": "kubelet is posting ready status"
            if ready == "True"
            else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": "2024-06-12T09:51:00Z",
        }
    )
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": _meta(
            name,
            None,
            {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m6i.large"},
        ),
        "spec": {"taints": taints or [], "providerID": f"aws:///eu-west-1a/i-0{name[-1]}abc"},
        "status": {
            "capacity": {"cpu": "2", "memory": "8023704Ki", "pods": "29"},
            "allocatable": {"cpu": "1930m", "memory": "7372952Ki", "pods": "29"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {"kubeletVersion": "v1.30.2-eks-1552ad0", "osImage": "Amazon Linux 2023"},
            "images": [
                {"names": [f"registry.example.com/image-{i}:latest"], "sizeBytes": 10_000_000}
                for i in range(50)
            ],
        },
    }


def pvc(
    name: str, namespace: str, *, phase: str = "Pending", storage_class: str = "gp3"
) -> dict[str, Any]:
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "metadata": _meta(name, namespace, {"app.kubernetes.io/name": name}),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": storage_class,
            "volumeMode": "Filesystem",
        },
        "status": {"phase": phase},
    }


_event_names = itertools.count(1)


def event(
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    type: str = "Warning",
    count: int = 1,
    last: str = "2024-06-12T09:59:00Z",
    source: str = "kubelet",
) -> dict[str, Any]:
    """A core/v1 Event about ``involved``; node events live in the default namespace."""
    metadata = involved["metadata"]
    namespace = metadata.get("namespace") or "default"
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": f"{metadata['name']}.{next(_event_names):016x}",
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": last,
        },
        "involvedObject": {
            "kind": involved["kind"],
            "namespace": metadata.get("namespace", ""),
            "name": metadata["name"],
            "uid": metadata["uid"],
            "apiVersion": involved["apiVersion"],
        },
        "reason": reason,
        "message": message,
        "source": {"component": source},
        "firstTimestamp": "2024-06-12T09:30:00Z",
        "lastTimestamp": last,
        "count": count,
        "type": type,
        "reportingComponent": source,
        "reportingInstance": "",
    }
