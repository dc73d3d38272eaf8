"""Whether a promoted version is rolled out in its environment's cluster: the app's
Deployment runs the version in its pod template and finished rolling it out, and the Argo CD
``Application`` or Flux ``Kustomization`` that deploys it (if there is one) is synced and
healthy. Read as raw JSON through ``pitcrew.kube.api.KubeReader``.

A rollout that cannot complete by waiting (``ProgressDeadlineExceeded``, an Argo CD
``Degraded`` health) is ``failed``: the promotion rolls back at once instead of at its
timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pitcrew.errors import NotFoundError
from pitcrew.kube.api import ForbiddenError, KubeReader, json_object
from pitcrew.records import frozen

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from pitcrew.config import ArgoCdApplication, FluxKustomization

ARGOCD = ("argoproj.io", "v1alpha1", "applications")
FLUX = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
DEFAULT_ARGOCD_NAMESPACE = "argocd"
DEFAULT_FLUX_NAMESPACE = "flux-system"


@frozen
class Rollout:
    """``done``: rolled out; ``failed``: it will not be by waiting; ``detail`` says why."""

    done: bool
    detail: str
    failed: bool = False


class RolloutReader(KubeReader):
    """``KubeReader`` (its timeouts, budget and errors) plus custom resources, as JSON."""

    def __init__(self, api_client: ApiClient, **options: Any) -> None:
        super().__init__(api_client, **options)
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)

    def custom(self, resource: tuple[str, str, str], name: str, namespace: str) -> dict[str, Any]:
        group, version, plural = resource
        what = f"get {plural}.{group} {namespace}/{name}"
        body = self._call(
            what, self._custom.get_namespaced_custom_object, group, version, namespace, plural, name
        )
        return json_object(body, what)


def split_image(reference: str) -> tuple[str, str | None]:
    """``registry:5000/team/app:v1@sha256:..`` -> (``registry:5000/team/app``, ``v1``)."""
    name = reference.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    if head and "/" not in tail:
        return head, tail
    return name, None


def runs_version(
    deployment: dict[str, Any], app: str, version: str, image: str | None
) -> tuple[bool, str]:
    """Whether the pod template runs ``version`` of the app's image (``image``, or the image
    whose last path segment is the app; any container's when none is named so)."""
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    images = [split_image(str(c.get("image") or "")) for c in template.get("containers") or ()]
    ours = [
        (name, tag)
        for name, tag in images
        if (name == image if image else name.rsplit("/", 1)[-1] == app)
    ]
    pool = ours or images
    if any(tag == version for _, tag in pool):
        return True, f"runs {version}"
    shown = ", ".join(f"{n}:{t}" if t else n for n, t in pool) or "no container"
    return False, f"its pod template runs {shown}, not {version} yet"


def deployment_rollout(
    deployment: dict[str, Any], app: str, version: str, image: str | None
) -> Rollout:
    """What ``kubectl rollout status`` would say, after checking the template's version."""
    meta = deployment.get("metadata") or {}
    where = f"Deployment {meta.get('namespace')}/{meta.get('name')}"
    runs, said = runs_version(deployment, app, version, image)
    if not runs:
        return Rollout(False, f"{where}: {said}")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return Rollout(False, f"{where}: the controller has not seen the new template yet")
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            message = condition.get("message") or "progress deadline exceeded"
            return Rollout(False, f"{where}: ProgressDeadlineExceeded: {message}", failed=True)
    problem = _replicas_problem(spec, status)
    if problem:
        return Rollout(False, f"{where}: {problem}")
    return Rollout(True, f"{where} rolled out {version}")


def _replicas_problem(spec: dict[str, Any], status: dict[str, Any]) -> str | None:
    desired = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if updated < desired:
        return f"{updated} of {desired} replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < desired:
        return f"{available} of {desired} updated replicas available"
    return None


def argocd_state(application: dict[str, Any]) -> Rollout:
    meta = application.get("metadata") or {}
    where = f"Argo CD Application {meta.get('namespace')}/{meta.get('name')}"
    status = application.get("status") or {}
    sync = (status.get("sync") or {}).get("status") or "Unknown"
    health = status.get("health") or {}
    state = health.get("status") or "Unknown"
    if state == "Degraded":
        message = health.get("message") or "no message"
        return Rollout(False, f"{where} is Degraded: {message}", failed=True)
    if sync == "Synced" and state == "Healthy":
        return Rollout(True, f"{where} is Synced and Healthy")
    return Rollout(False, f"{where} is {sync} and {state}")


def flux_state(kustomization: dict[str, Any], applied: Callable[[str], bool]) -> Rollout:
    """Ready, and ``applied(lastAppliedRevision)`` (the revision holds the promotion's merge)."""
    meta = kustomization.get("metadata") or {}
    where = f"Flux Kustomization {meta.get('namespace')}/{meta.get('name')}"
    status = kustomization.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        said = (ready or {}).get("message") or (ready or {}).get("reason") or "not reconciled yet"
        return Rollout(False, f"{where} is not Ready: {said}")
    revision = str(status.get("lastAppliedRevision") or "")
    if not revision or not applied(revision):
        return Rollout(False, f"{where} has applied {revision or 'nothing'}, not the merge yet")
    return Rollout(True, f"{where} is Ready at {revision}")


def revision_sha(revision: str) -> str:
    """The commit of a Flux revision: ``main@sha1:abc``, ``main/abc`` or ``abc``."""
    return revision.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def check_rollout(
    reader: RolloutReader,
    *,
    app: str,
    version: str,
    namespace: str,
    image: str | None = None,
    argocd: ArgoCdApplication | None = None,
    flux: FluxKustomization | None = None,
    applied: Callable[[str], bool] = lambda _revision: True,
) -> Rollout:
    """The app's rollout of ``version`` in ``namespace``. An Argo CD Application or Flux
    Kustomization named in the configuration must exist; one looked for by the app's name
    (the default) is skipped when there is none (or pitcrew may not read it)."""
    try:
        deployment = reader.get("Deployment", app, namespace)
    except NotFoundError:
        return Rollout(False, f"no Deployment {namespace}/{app} yet")
    rollout = deployment_rollout(deployment, app, version, image)
    if not rollout.done:
        return rollout
    found: list[Rollout] = [rollout]
    argo_ns = argocd.namespace if argocd else DEFAULT_ARGOCD_NAMESPACE
    argo_name = (argocd.application if argocd else None) or app
    application = _find(reader, ARGOCD, argo_name, argo_ns, required=argocd is not None)
    if isinstance(application, Rollout):
        return application
    if application is not None:
        found.append(argocd_state(application))
    flux_ns = flux.namespace if flux else DEFAULT_FLUX_NAMESPACE
    flux_name = (flux.kustomization if flux else None) or app
    kustomization = _find(reader, FLUX, flux_name, flux_ns, required=flux is not None)
    if isinstance(kustomization, Rollout):
        return kustomization
    if kustomization is not None:
        found.append(flux_state(kustomization, applied))
    failed = [r for r in found if r.failed]
    waiting = [r for r in found if not r.done]
    if failed or waiting:
        return Rollout(False, "; ".join(r.detail for r in failed or waiting), failed=bool(failed))
    return Rollout(True, "; ".join(r.detail for r in found))


def _find(
    reader: RolloutReader,
    resource: tuple[str, str, str],
    name: str,
    namespace: str,
    *,
    required: bool,
) -> dict[str, Any] | Rollout | None:
    """The custom resource; None when it is not there and not required; a waiting
    ``Rollout`` when a configured one is missing."""
    try:
        return reader.custom(resource, name, namespace)
    except (NotFoundError, ForbiddenError) as exc:
        if not required:
            return None
        kind = "Argo CD Application" if resource is ARGOCD else "Flux Kustomization"
        return Rollout(False, f"cannot read the {kind} {namespace}/{name}: {exc}")
