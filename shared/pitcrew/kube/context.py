"""What the cluster says about an alert's subject, gathered into a bounded ``ClusterContext``.

From the subject (a pod, a workload guessed at intake, a node or a PVC) the owning workload is
found through ``ownerReferences`` (Pod -> ReplicaSet -> Deployment; StatefulSet; DaemonSet;
Job -> CronJob), then: its pods (failing ones first), Warning events of the workload, its
ReplicaSets, pods, nodes and claims, the logs of the failing containers (the crashed instance's
when a container restarted), the node when it matters, unbound claims of pending pods, and,
with Prometheus configured, memory and CPU against limits.

Nothing here raises for a cluster that is not configured, unreachable or refusing: what could
not be read is said in ``notes``, and ``reachable`` is true only if the API server answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pitcrew.errors import ConfigError, NotFoundError, PitcrewError, ServiceError
from pitcrew.incidents.model import Category, ClusterContext, LogExcerpt, Subject
from pitcrew.kube.api import (
    BUDGET_S,
    BudgetSpentError,
    ClusterUnreachableError,
    KubeReader,
    selector_string,
)
from pitcrew.kube.clusters import cluster_for
from pitcrew.kube.logs import trim_log

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from pitcrew.config import ClusterConfig, Config

MAX_PODS = 20  # pods kept in the context, the most troubled first
MAX_TROUBLED = 5  # pods whose events, nodes and claims are read
MAX_LOGS = 3  # container logs read (one per container name)
MAX_EVENTS_PER_OBJECT = 10
MAX_EVENTS = 40
MAX_NODES = 3
MAX_PVCS = 5
LIST_LIMIT = 500
LOG_TAIL_LINES = 2000

Connect = Callable[[str, "ClusterConfig"], "ApiClient"]

_OWNER_KINDS = ("ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
_NODE_TROUBLE = frozenset({"Evicted", "NodeLost", "NodeAffinity", "Terminated", "Shutdown"})
_HOSTNAME_LABEL = "kubernetes.io/hostname"


def gather(
    subject: Subject,
    config: Config,
    *,
    connect: Connect | None = None,
    budget_s: float = BUDGET_S,
) -> ClusterContext:
    """The cluster context for ``subject``; never raises for a cluster that is not configured
    or cannot be reached (``reachable`` is then false and ``notes`` says why).

    ``connect(name, cluster_config)`` builds the ``ApiClient`` (default:
    ``pitcrew.kube.clusters.connect``); ``budget_s`` bounds the time spent reading.
    """
    context = ClusterContext(cluster=subject.cluster)
    chosen = cluster_for(subject.cluster, config)
    if chosen is None:
        configured = ", ".join(sorted(config.clusters or {})) or "none"
        context.notes.append(
            f"no cluster {subject.cluster!r} is configured (clusters: {configured}): "
            "diagnosed from the alert alone"
        )
    else:
        name, cluster = chosen
        if name != subject.cluster:
            context.notes.append(
                f"no cluster {subject.cluster!r} is configured: reading the {name!r} cluster"
            )
        _gather_from_cluster(subject, context, name, cluster, connect=connect, budget_s=budget_s)
    if config.prometheus is not None:
        _add_metrics(subject, context, config)
    return context


def _gather_from_cluster(
    subject: Subject,
    context: ClusterContext,
    name: str,
    cluster: ClusterConfig,
    *,
    connect: Connect | None,
    budget_s: float,
) -> None:
    if connect is None:
        from pitcrew.kube.clusters import connect as connect_cluster

        connect = connect_cluster
    try:
        api_client = connect(name, cluster)
    except ConfigError as exc:
        context.notes.append(f"cluster {name!r} cannot be used: {'; '.join(exc.problems)}")
        return
    except PitcrewError as exc:
        context.notes.append(f"cluster {name!r} cannot be reached: {exc}")
        return
    try:
        reader = KubeReader(api_client, budget_s=budget_s)
        _Gathering(reader, subject, context).run()
        context.reachable = reader.answered
        if reader.asked == 0 and not context.notes:
            context.notes.append(
                f"the alert names no pod, workload, node or claim: nothing was read from "
                f"cluster {name!r}"
            )
        elif not reader.answered:
            context.notes.append(
                f"cluster {name!r} answered no request: diagnosed from the alert alone"
            )
    finally:
        api_client.close()


class _Gathering:
    """One subject's reads, in order of value; each failure becomes a note."""

    def __init__(self, reader: KubeReader, subject: Subject, context: ClusterContext) -> None:
        self.reader = reader
        self.subject = subject
        self.context = context
        self.namespace = subject.namespace
        self.subject_pod: dict[str, Any] | None = None
        self.job: dict[str, Any] | None = None  # a CronJob's failing Job
        self.replicasets: list[dict[str, Any]] = []
        self.node_names: dict[str, str] = {}  # an address the alert names -> that node's name

    def run(self) -> None:
        steps = (
            self._resolve_node,
            self._resolve,
            self._pods,
            self._replicasets,
            self._nodes,
            self._claims,
            self._events,
            self._logs,
        )
        try:
            for step in steps:
                self._attempt(step)
        except (ClusterUnreachableError, BudgetSpentError) as exc:
            self.context.notes.append(str(exc))

    def _attempt(self, step: Callable[[], None]) -> None:
        try:
            step()
        except (ClusterUnreachableError, BudgetSpentError):
            raise
        except (ServiceError, NotFoundError) as exc:
            self.context.notes.append(str(exc))

    def _get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None with a note (not found, forbidden...)."""
        try:
            found = self.reader.get(kind, name, namespace)
        except (ClusterUnreachableError, BudgetSpentError):
            raise
        except (ServiceError, NotFoundError) as exc:
            self.context.notes.append(str(exc))
            return None
        return _slim(found, kind)

    def _list(self, kind: str, namespace: str | None, **options: Any) -> list[dict[str, Any]]:
        listing = self.reader.list(kind, namespace, limit=LIST_LIMIT, **options)
        if (listing.get("metadata") or {}).get("continue"):
            self.context.notes.append(f"more than {LIST_LIMIT} {kind}s matched; read the first")
        return [_slim(item, kind) for item in listing.get("items") or ()]

    # -- the workload ------------------------------------------------------------------------
    def _resolve(self) -> None:
        subject, namespace = self.subject, self.namespace
        guess = subject.workload
        if namespace and subject.pod:
            pod = self._get("Pod", subject.pod, namespace)
            if pod is not None:
                self.subject_pod = pod
                self._adopt(self._climb(pod))
                return
        if namespace and guess is not None and guess.kind in ("Pod", *_OWNER_KINDS):
            found = self._get(guess.kind, guess.name, namespace)
            if found is not None:
                if guess.kind == "Pod":
                    self.subject_pod = found
                self._adopt(self._climb(found))
                return
        if namespace and subject.pvc:
            claim = self._get("PersistentVolumeClaim", subject.pvc, namespace)
            if claim is not None:
                self.context.pvcs.append(claim)
            users = [pod for pod in self._list("Pod", namespace) if subject.pvc in _claims_of(pod)]
            if users:
                self.subject_pod = max(users, key=pod_trouble)
                self._adopt(self._climb(self.subject_pod))

    def _climb(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The top of ``obj``'s chain of controllers that pitcrew can read."""
        for _ in range(3):
            owner = _controller(obj)
            if owner is None or owner.get("kind") not in _OWNER_KINDS:
                break
            parent = self._get(owner["kind"], owner.get("name", ""), self.namespace)
            if parent is None:
                break
            if obj.get("kind") == "ReplicaSet":
                self.replicasets.append(obj)
            if obj.get("kind") == "Job" and parent.get("kind") == "CronJob":
                self.job = obj
                self._note_job(obj)
            obj = parent
        return obj

    def _adopt(self, workload: dict[str, Any]) -> None:
        self.context.workload = workload
        guess = self.subject.workload
        kind, name = workload.get("kind"), _name(workload)
        about_workload = guess is not None and guess.kind in ("Pod", *_OWNER_KINDS)
        if guess is not None and about_workload and (guess.kind, guess.name) != (kind, name):
            self.context.notes.append(
                f"the alert suggested {guess.kind} {guess.name}; its ownerReferences "
                f"say {kind} {name}"
            )

    def _note_job(self, job: dict[str, Any]) -> None:
        for condition in (job.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                self.context.notes.append(
                    f"Job {_name(job)} failed: {condition.get('reason', '')}: "
                    f"{condition.get('message', '')}".rstrip(": ")
                )

    # -- pods --------------------------------------------------------------------------------
    def _pods(self) -> None:
        workload = self.context.workload
        pods: list[dict[str, Any]] = []
        selector = self._pod_selector(workload)
        if selector and self.namespace:
            pods = self._list("Pod", self.namespace, label_selector=selector)
        if self.subject_pod is not None and _name(self.subject_pod) not in map(_name, pods):
            pods.append(self.subject_pod)
        node = self._subject_node()
        if node and not pods:
            pods = self._list("Pod", None, field_selector=f"spec.nodeName={node}")
        pods.sort(key=lambda pod: (-pod_trouble(pod), _name(pod)))
        if len(pods) > MAX_PODS:
            self.context.notes.append(
                f"{len(pods)} pods matched; kept the {MAX_PODS} most troubled"
            )
        self.context.pods = pods[:MAX_PODS]

    def _pod_selector(self, workload: dict[str, Any] | None) -> str | None:
        if workload is None or workload.get("kind") == "Pod":
            return None
        if workload.get("kind") == "CronJob":
            job = self.job or {}
            return selector_string((job.get("spec") or {}).get("selector"))
        return selector_string((workload.get("spec") or {}).get("selector"))

    def _replicasets(self) -> None:
        """A Deployment's newest ReplicaSets: their events say why pods are not created."""
        workload = self.context.workload
        if workload is None or workload.get("kind") != "Deployment" or not self.namespace:
            return
        selector = selector_string((workload.get("spec") or {}).get("selector"))
        if not selector:
            return
        uid = (workload.get("metadata") or {}).get("uid")
        owned = [
            rs
            for rs in self._list("ReplicaSet", self.namespace, label_selector=selector)
            if any(ref.get("uid") == uid for ref in _owner_refs(rs)) or uid is None
        ]
        owned.sort(key=_revision, reverse=True)
        known = {_name(rs) for rs in self.replicasets}
        self.replicasets += [rs for rs in owned[:2] if _name(rs) not in known]

    # -- nodes and claims --------------------------------------------------------------------
    def _subject_node(self, *, node_alert: bool = False) -> str | None:
        """The node the alert is about: its Node workload, or its ``node`` label when it is
        about no pod or claim (or, with ``node_alert``, whatever it is about); by the node's
        name when the alert gave its address."""
        subject = self.subject
        named: str | None = None
        if subject.workload is not None and subject.workload.kind == "Node":
            named = subject.workload.name
        elif (subject.pod is None and subject.pvc is None) or node_alert:
            named = subject.node
        return self.node_names.get(named, named) if named else None

    def _resolve_node(self) -> None:
        """A node the alert names by an IP address (a node-exporter series' ``instance``
        where the scrape config does not relabel it to the node's name, as kube-prometheus
        does): the node with that address, unless a node is named so."""
        named = self._subject_node(node_alert=self.subject.category_hint == Category.NODE_NOT_READY)
        if not named or not _is_ip_address(named):
            return
        try:
            self.reader.get("Node", named)
            return  # some clusters do name their nodes by IP
        except NotFoundError:
            pass
        for node in self._list("Node", None):
            addresses = (node.get("status") or {}).get("addresses") or ()
            if any(isinstance(a, dict) and a.get("address") == named for a in addresses):
                self.node_names[named] = _name(node)
                self.context.notes.append(f"node {named} is {_name(node)} (by its address)")
                return
        self.context.notes.append(f"no node has the address {named}")

    def _nodes(self) -> None:
        node_alert = self.subject.category_hint == Category.NODE_NOT_READY
        # The alert's own node when it is about a node; a pod alert's `node` label alone is
        # not worth a node's JSON.
        subject_node = self._subject_node(node_alert=node_alert)
        names = [subject_node] if subject_node else []
        for pod in self._troubled():
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            node = (
                spec.get("nodeName")
                or status.get("nominatedNodeName")
                or (spec.get("nodeSelector") or {}).get(_HOSTNAME_LABEL)
            )
            pending = status.get("phase") in ("Pending", "Unknown")
            if node and (pending or node_alert or status.get("reason") in _NODE_TROUBLE):
                names.append(node)
        for name in list(dict.fromkeys(names))[:MAX_NODES]:
            node = self._get("Node", name)
            if node is not None:
                self.context.nodes.append(node)

    def _claims(self) -> None:
        if not self.namespace:
            return
        known = {_name(claim) for claim in self.context.pvcs}
        wanted: list[str] = []
        for pod in self._troubled():
            if (pod.get("status") or {}).get("phase") == "Pending":
                wanted += [claim for claim in _claims_of(pod) if claim not in known]
        for name in list(dict.fromkeys(wanted))[:MAX_PVCS]:
            claim = self._get("PersistentVolumeClaim", name, self.namespace)
            if claim is not None and (claim.get("status") or {}).get("phase") != "Bound":
                self.context.pvcs.append(claim)

    # -- events ------------------------------------------------------------------------------
    def _events(self) -> None:
        seen: set[str] = set()
        events: list[dict[str, Any]] = []
        for kind, name, namespace in self._event_subjects():
            selector = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
            try:
                found = self._list("Event", namespace, field_selector=selector)
            except (ClusterUnreachableError, BudgetSpentError):
                raise
            except (ServiceError, NotFoundError) as exc:
                self.context.notes.append(str(exc))
                continue
            found.sort(key=_event_time, reverse=True)
            for item in found[:MAX_EVENTS_PER_OBJECT]:
                key = (item.get("metadata") or {}).get("uid") or _name(item)
                if key not in seen:
                    seen.add(key)
                    events.append(item)
        events.sort(key=_event_time, reverse=True)
        if len(events) > MAX_EVENTS:
            self.context.notes.append(f"{len(events)} Warning events; kept the latest {MAX_EVENTS}")
        self.context.events = events[:MAX_EVENTS]

    def _event_subjects(self) -> Iterator[tuple[str, str, str | None]]:
        namespace = self.namespace
        objects: list[dict[str, Any]] = []
        if self.context.workload is not None:
            objects.append(self.context.workload)
        if self.job is not None:
            objects.append(self.job)
        objects += self.replicasets
        objects += [pod for pod in self._troubled() if pod is not self.context.workload]
        objects += self.context.pvcs
        done: set[tuple[str, str]] = set()
        for obj in objects:
            kind, name = obj.get("kind", ""), _name(obj)
            if kind and name and (kind, name) not in done:
                done.add((kind, name))
                yield kind, name, namespace
        for node in self.context.nodes:
            # Node events are recorded in the "default" namespace: ask across namespaces.
            yield "Node", _name(node), None

    # -- logs --------------------------------------------------------------------------------
    def _logs(self) -> None:
        if not self.namespace:
            return
        wanted = self.subject.container
        candidates = [
            (pod, container, previous)
            for pod in self._troubled()
            for container, previous in failing_containers(pod)
        ]
        # The alert's container first, then the most troubled pods' containers.
        candidates.sort(key=lambda c: c[1] != wanted)
        logged: set[str] = set()
        for pod, container, previous in candidates:
            if len(logged) >= MAX_LOGS:
                break
            if container in logged:
                continue
            excerpt = self._read_log(_name(pod), container, previous)
            if excerpt is not None:
                logged.add(container)
                self.context.logs.append(excerpt)

    def _read_log(self, pod: str, container: str, previous: bool) -> LogExcerpt | None:
        namespace = self.namespace or ""
        try:
            text = self.reader.log(
                namespace, pod, container, previous=previous, tail_lines=LOG_TAIL_LINES
            )
        except (ClusterUnreachableError, BudgetSpentError):
            raise
        except (ServiceError, NotFoundError) as exc:
            if not previous:
                self.context.notes.append(str(exc))
                return None
            # No previous instance any more (or it cannot be read): the current one's, then.
            return self._read_log(pod, container, previous=False)
        lines, total = trim_log(text)
        return LogExcerpt(
            pod=pod, container=container, previous=previous, lines=lines, total_lines=total
        )

    def _troubled(self) -> list[dict[str, Any]]:
        """The pods worth a closer look (already sorted, most troubled first)."""
        troubled = [pod for pod in self.context.pods if pod_trouble(pod) > 0]
        if self.subject_pod is not None and all(
            _name(pod) != _name(self.subject_pod) for pod in troubled
        ):
            troubled.insert(0, self.subject_pod)
        return troubled[:MAX_TROUBLED]


# --- reading API objects --------------------------------------------------------------------

_KIND_VERSIONS = {
    "Pod": "v1",
    "Event": "v1",
    "Node": "v1",
    "PersistentVolumeClaim": "v1",
    "ReplicaSet": "apps/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}


def _is_ip_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _slim(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The object without what only costs tokens (managed fields, the last-applied copy of
    itself, a node's image list), with ``kind`` and ``apiVersion`` even when it came from a
    list (list items carry neither)."""
    obj.setdefault("kind", kind)
    obj.setdefault("apiVersion", _KIND_VERSIONS.get(kind, "v1"))
    metadata = obj.get("metadata") or {}
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if kind == "Node":
        (obj.get("status") or {}).pop("images", None)
    return obj


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _owner_refs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or ())


def _controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = _owner_refs(obj)
    return next((ref for ref in refs if ref.get("controller")), refs[0] if refs else None)


def _revision(rs: dict[str, Any]) -> int:
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get("deployment.kubernetes.io/revision", 0))
    except ValueError:
        return 0


def _event_time(event: dict[str, Any]) -> str:
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
    return str(stamp)[:19]  # seconds: eventTime has microseconds, lastTimestamp none


def _claims_of(pod: dict[str, Any]) -> list[str]:
    return [
        volume["persistentVolumeClaim"]["claimName"]
        for volume in (pod.get("spec") or {}).get("volumes") or ()
        if (volume.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def _statuses(pod: dict[str, Any]) -> Iterable[dict[str, Any]]:
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or ()
    yield from status.get("containerStatuses") or ()


def pod_trouble(pod: dict[str, Any]) -> int:
    """How troubled a pod looks (0: healthy): phase, waiting and failed containers,
    restarts, readiness, eviction."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    score = {"Failed": 50, "Unknown": 50, "Pending": 40}.get(phase or "", 0)
    if status.get("reason") in _NODE_TROUBLE:
        score += 40
    for container in _statuses(pod):
        state = container.get("state") or {}
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in _STARTING:
            score += 30
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            score += 30
        if phase == "Running" and not container.get("ready") and "running" in state:
            score += 10
        score += min(int(container.get("restartCount") or 0), 20)
    return score


def failing_containers(pod: dict[str, Any]) -> list[tuple[str, bool]]:
    """``(container, previous)`` for each container whose log should explain a failure:
    the crashed instance's (``previous``) when it restarted, else the current one's when it
    failed or is running unready. Containers that never started have no log."""
    found: list[tuple[str, bool]] = []
    for container in _statuses(pod):
        name = container.get("name")
        if not name:
            continue
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated")
        terminated = state.get("terminated")
        crashed = terminated is not None and terminated.get("exitCode", 0) != 0
        unready = "running" in state and not container.get("ready")
        if int(container.get("restartCount") or 0) > 0 and last:
            found.append((name, True))
        elif crashed or unready:
            found.append((name, False))
    return found


# --- metrics ----------------------------------------------------------------------------------


def _add_metrics(subject: Subject, context: ClusterContext, config: Config) -> None:
    from pitcrew.prometheus import container_usage

    namespace = subject.namespace
    pods = context.pods or []
    names = [_name(pod) for pod in pods] or ([subject.pod] if subject.pod else [])
    if not namespace or not names or config.prometheus is None:
        return
    samples, notes = container_usage(config.prometheus, namespace, names, pods=pods)
    context.metrics += samples
    context.notes += notes
