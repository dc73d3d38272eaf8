""" "Wait healthy" in an environment with a cluster: the promotion step reads the app's
Deployment, Argo CD Application and Flux Kustomization with the real kubernetes client from
the fake API server (custom resources served by a route added here), over a kubeconfig, and
its health URL from a fake; the promotions table is template.yaml's, in moto.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pitcrew.config import Config, parse_config_text
from pitcrew.errors import ConfigError
from pitcrew.promotions.gitops import GitopsRepo
from pitcrew.promotions.steps import PromotionSteps, PromotionUnhealthy
from pitcrew.promotions.store import Promotion, PromotionStore, iso, new_id
from tests.support.fakehttp import FakeService, Reply, Request
from tests.support.fakekube import FakeKube, container, deployment, status

pytestmark = pytest.mark.integration

TOKEN = "kube-t0ken"
CUSTOM = (
    r"^/apis/(?P<group>[a-z.]+)/(?P<version>v[0-9a-z]+)/namespaces/(?P<namespace>[^/]+)"
    r"/(?P<plural>applications|kustomizations)/(?P<name>[^/]+)$"
)


class Cluster:
    """FakeKube plus the Argo CD and Flux custom resources it does not serve itself."""

    def __init__(self) -> None:
        self.kube = FakeKube(token=TOKEN)
        self.custom: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.kube.service.route("GET", CUSTOM)(self._custom)

    def _custom(self, request: Request) -> Reply:
        if request.header("Authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized", "Unauthorized")
        p = request.params
        found = self.custom.get((p["group"], p["plural"], p["namespace"], p["name"]))
        if found is None:
            message = f'{p["plural"]}.{p["group"]} "{p["name"]}" not found'
            return status(404, "NotFound", message, name=p["name"], kind=p["plural"])
        return Reply(200, found)

    def application(self, name: str, namespace: str, sync: str, health: str) -> None:
        self.custom[("argoproj.io", "applications", namespace, name)] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "status": {
                "sync": {"status": sync, "revision": "abc"},
                "health": {"status": health, "message": f"{health} for a reason"},
            },
        }

    def kustomization(self, name: str, namespace: str, revision: str) -> None:
        self.custom[("kustomize.toolkit.fluxcd.io", "kustomizations", namespace, name)] = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded"}],
                "lastAppliedRevision": revision,
            },
        }

    def deploy(self, app: str, tag: str, **status_fields: Any) -> None:
        found = deployment(app, "shop", containers=[container(app, f"ghcr.io/acme/{app}:{tag}")])
        found["metadata"]["generation"] = 3
        found["status"].update(status_fields)
        self.kube.add(found)


class Gitops(GitopsRepo):
    """The GitOps repository as the Flux check asks it: merge commits and the branch head."""

    def __init__(self) -> None:
        self.merges: dict[int, str] = {}
        self.branch_head = "f00d"

    def merge_commit(self, number: int) -> str | None:
        return self.merges.get(number)

    def head(self) -> str:
        return self.branch_head


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    fake = Cluster()
    fake.kube.start()
    yield fake
    fake.kube.stop()


@pytest.fixture(scope="module")
def health() -> Iterator[FakeService]:
    service = FakeService("health")
    service.reply("GET", "/healthz", Reply(200, {"status": "ok"}))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def config(cluster: Cluster, health: FakeService, tmp_path: Path) -> Config:
    kubeconfig = cluster.kube.kubeconfig(tmp_path / "kubeconfig")

    def env(name: str, extra: str = "") -> str:
        return (
            f"  - name: {name}\n    path: envs/{name}\n    health_url: {health.url}/healthz\n"
            f"    cluster: main\n    namespace: shop\n    timeout_minutes: 10\n{extra}"
        )

    return parse_config_text(
        f"clusters: {{main: {{kubeconfig: '{kubeconfig}'}}}}\n"
        "environments:\n"
        + env("staging")
        + env("prod", "    argocd: {namespace: gitops, application: shop-prod}\n")
        + env("edge", "    flux: {kustomization: shop}\n")
        + "  - {name: lost, path: x, health_url: 'http://h', cluster: elsewhere}\n"
    )


def promotion(store: PromotionStore, app: str, env: str, **extra: Any) -> Promotion:
    found = Promotion(
        id=new_id(),
        app=app,
        version="v2",
        target=env,
        plan=[env],
        created_at=iso(time.time()),
        environment=env,
        **extra,
    )
    store.create(found)
    return found


def check(steps: PromotionSteps, found: Promotion) -> dict[str, Any]:
    return steps.handle({"step": "check_health", "promotion": found.ref()})


def last_step(store: PromotionStore, found: Promotion) -> dict[str, Any]:
    step: dict[str, Any] = store.get(found.id).steps[-1]
    return step


@pytest.mark.usefixtures("stack")
def test_healthy_only_once_the_deployment_runs_the_version_and_argo_cd_agrees(
    cluster: Cluster, config: Config
) -> None:
    store = PromotionStore()
    steps = PromotionSteps(config, store=store)
    found = promotion(store, "cart", "staging")

    cluster.deploy("cart", "v1")
    waiting = check(steps, found)
    assert waiting["healthy"] is False
    assert "Deployment shop/cart: its pod template runs ghcr.io/acme/cart:v1" in waiting["detail"]

    cluster.deploy("cart", "v2", updatedReplicas=1)
    assert "1 of 2 replicas updated" in check(steps, found)["detail"]

    cluster.deploy("cart", "v2")
    cluster.application("cart", "argocd", "OutOfSync", "Progressing")
    assert "Argo CD Application argocd/cart is OutOfSync" in check(steps, found)["detail"]

    cluster.application("cart", "argocd", "Synced", "Healthy")
    assert check(steps, found) == {"healthy": True}
    step = last_step(store, found)
    assert (step["step"], step["outcome"]) == ("wait healthy", "healthy")
    assert "rolled out v2" in step["detail"] and "Synced and Healthy" in step["detail"]


@pytest.mark.usefixtures("stack")
def test_without_argo_cd_or_flux_objects_the_deployment_decides(
    cluster: Cluster, config: Config
) -> None:
    store = PromotionStore()
    cluster.deploy("search", "v2")
    found = promotion(store, "search", "staging")
    assert check(PromotionSteps(config, store=store), found) == {"healthy": True}


@pytest.mark.usefixtures("stack")
def test_a_progress_deadline_fails_at_once_not_at_the_timeout(
    cluster: Cluster, config: Config
) -> None:
    store = PromotionStore()
    cluster.deploy(
        "billing",
        "v2",
        updatedReplicas=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "billing-5d8" has timed out progressing.',
            }
        ],
    )
    found = promotion(store, "billing", "staging")

    started = time.monotonic()
    with pytest.raises(PromotionUnhealthy, match=r"staging cannot become healthy.*timed out"):
        check(PromotionSteps(config, store=store), found)

    assert time.monotonic() - started < 10  # the timeout is ten minutes
    assert last_step(store, found)["outcome"] == "failed"


@pytest.mark.usefixtures("stack")
def test_a_configured_argo_cd_application_degraded_fails_at_once(
    cluster: Cluster, config: Config
) -> None:
    store = PromotionStore()
    steps = PromotionSteps(config, store=store)
    cluster.deploy("orders", "v2")
    found = promotion(store, "orders", "prod")

    # Named in the configuration, the Application must be there.
    assert "cannot read the Argo CD Application gitops/shop-prod" in check(steps, found)["detail"]

    cluster.application("shop-prod", "gitops", "Synced", "Degraded")
    with pytest.raises(PromotionUnhealthy, match="gitops/shop-prod is Degraded"):
        check(steps, found)


@pytest.mark.usefixtures("stack")
def test_flux_must_have_applied_the_merged_pull_request(cluster: Cluster, config: Config) -> None:
    store = PromotionStore()
    gitops = Gitops()
    steps = PromotionSteps(config, store=store, gitops=lambda: gitops)
    cluster.deploy("users", "v2")
    pull = {"environment": "edge", "purpose": "update", "number": 7, "state": "merged"}
    found = promotion(store, "users", "edge", pull_requests=[pull])

    cluster.kustomization("shop", "flux-system", "main@sha1:0ld")
    gitops.merges[7] = "m3rge"
    assert "has applied main@sha1:0ld, not the merge yet" in check(steps, found)["detail"]

    cluster.kustomization("shop", "flux-system", "main@sha1:m3rge")
    assert check(steps, found) == {"healthy": True}
    # A later commit on the branch holds the merge too.
    cluster.kustomization("shop", "flux-system", "main@sha1:f00d")
    assert check(steps, found) == {"healthy": True}


@pytest.mark.usefixtures("stack")
def test_rolling_back_waits_for_the_replaced_version(cluster: Cluster, config: Config) -> None:
    store = PromotionStore()
    cluster.deploy("payments", "v2")
    found = promotion(
        store,
        "payments",
        "staging",
        replaced={"staging": "v1"},
        settings={"phase:staging": "rollback"},
    )
    steps = PromotionSteps(config, store=store)
    assert "runs ghcr.io/acme/payments:v2, not v1 yet" in check(steps, found)["detail"]
    cluster.deploy("payments", "v1")
    assert check(steps, found) == {"healthy": True}


@pytest.mark.usefixtures("stack")
def test_an_environment_naming_an_unknown_cluster_is_a_config_error(config: Config) -> None:
    store = PromotionStore()
    found = promotion(store, "cart", "lost")
    with pytest.raises(ConfigError, match=r"environments\.lost\.cluster: no cluster 'elsewhere'"):
        check(PromotionSteps(config, store=store), found)
