"""Promotions end to end: template.yaml's state machine (the real ASL) on moto's executor
through the local runtime, ``promotion_steps`` in-process, the fake GitHub API holding the
GitOps repository, and fake health endpoints and a fake Prometheus.

One runtime serves the module; each test promotes its own app, so tests do not meet.
Timeouts come from the configuration: polls of 0 s, health timeouts of 1.5 s, approvals 9 s
(room for a loaded machine to approve in time in the happy path).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pitcrew.local.runtime import LocalRuntime
from pitcrew.local.template import default_template_path
from tests.support.fakegithub import FakeGitHub
from tests.support.fakehttp import FakeService, Reply, Request
from tests.support.local import local_runtime, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-runtime")]

REPO = "acme/platform-gitops"
TOKEN = "promotion-test-operator-token"
APPS = ("payments-api", "orders-api", "billing-api", "search-api", "cart-api", "users-api")


def kustomization(tag: str) -> str:
    images = "".join(f"  - name: ghcr.io/acme/{app}  # {app}\n    newTag: {tag}\n" for app in APPS)
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - ../base\nimages:\n{images}"
    )


def deployments(tag: str) -> str:
    docs = []
    for app in APPS:
        docs.append(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
            f"  name: {app}\nspec:\n  template:\n    spec:\n      containers:\n"
            f"        - name: app\n          image: ghcr.io/acme/{app}:{tag}  # pinned\n"
        )
    return "---\n".join(docs)


class Health:
    """Fake health endpoints and Prometheus: per environment and app, what they answer."""

    def __init__(self) -> None:
        self.service = FakeService("health")
        self.status: dict[str, int] = {}  # "<env>" -> health status
        self.error_rate: dict[str, float] = {}  # "<env>" -> Prometheus value
        self.lock = threading.Lock()

        @self.service.route("GET", "/{env}/healthz")
        def healthz(request: Request) -> Reply:
            with self.lock:
                status = self.status.get(request.params["env"], 200)
            return Reply(status, {"status": "ok" if status < 300 else "down"})

        @self.service.route("GET", "/{env}/smoke/{app}")
        def smoke(request: Request) -> Reply:
            return Reply(200, f"{request.params['app']} ready")

        @self.service.route("GET", "/api/v1/query")
        def query(request: Request) -> Reply:
            text = request.query["query"][0]
            env = text.split('env="', 1)[1].split('"', 1)[0]
            with self.lock:
                value = self.error_rate.get(env, 0.0)
            return Reply(
                200,
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {"env": env}, "value": [time.time(), str(value)]}],
                    },
                },
            )


def config_text(health_url: str, github_url: str) -> str:
    def env(name: str, extra: str) -> str:
        return (
            f"  - name: {name}\n"
            f"    path: envs/{name}\n"
            f"    health_url: {health_url}/{name}/healthz\n"
            "    poll_seconds: 0\n"
            "    timeout_minutes: 0.025\n"
            f"{extra}"
        )

    return (
        f"api: {{token: {TOKEN}}}\n"
        f"github: {{api_url: '{github_url}', token: ghp_fake_token}}\n"
        f"gitops: {{repo: {REPO}, branch: main, safe_mode: false}}\n"
        f"prometheus: {{url: '{health_url}'}}\n"
        "environments:\n"
        + env(
            "dev",
            "    auto_promote: true\n"
            "    checks:\n"
            f"      - {{type: http, url: '{health_url}/dev/smoke/${{app}}', contains: ready}}\n",
        )
        + env(
            "staging",
            "    auto_promote: true\n"
            "    checks:\n"
            "      - type: prometheus\n"
            '        query: \'error_rate{env="staging",app="${app}"}\'\n'
            "        max: 0.05\n",
        )
        + env(
            "prod",
            "    auto_promote: true\n    approval: required\n    approval_timeout_minutes: 0.15\n",
        )
    )


@pytest.fixture(scope="module")
def health() -> Iterator[Health]:
    fake = Health()
    fake.service.start()
    yield fake
    fake.service.stop()


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    fake.add_repo(
        REPO,
        {
            "envs/base/kustomization.yaml": "resources: []\n",
            "envs/dev/kustomization.yaml": kustomization("v1.0.0"),
            "envs/staging/kustomization.yaml": kustomization("v1.0.0"),
            "envs/prod/deployments.yaml": deployments("v1.0.0"),
        },
    )
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory, health: Health, github: FakeGitHub
) -> Iterator[LocalRuntime]:
    config = tmp_path_factory.mktemp("promotion") / "pitcrew.yaml"
    config.write_text(config_text(health.service.url, github.url), encoding="utf-8")
    with local_runtime(Path(default_template_path()), config=config) as started:
        yield started


def api(runtime: LocalRuntime, method: str, path: str, body: Any = None) -> httpx.Response:
    assert runtime.api_url is not None
    return httpx.request(
        method,
        f"{runtime.api_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=15,
    )


def promotion(runtime: LocalRuntime, promotion_id: str) -> dict[str, Any]:
    answer = api(runtime, "GET", f"/promotions/{promotion_id}")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def ended(runtime: LocalRuntime, promotion_id: str, timeout: float = 30) -> dict[str, Any]:
    sfn = runtime.client("stepfunctions")
    found = promotion(runtime, promotion_id)
    wait_for(
        lambda: sfn.describe_execution(executionArn=found["execution"])["status"] != "RUNNING",
        timeout=timeout,
    )
    return promotion(runtime, promotion_id)


def status_is(runtime: LocalRuntime, promotion_id: str, status: str) -> dict[str, Any] | None:
    found = promotion(runtime, promotion_id)
    return found if found["status"] == status else None


def execution_status(runtime: LocalRuntime, found: dict[str, Any]) -> str:
    sfn = runtime.client("stepfunctions")
    return str(sfn.describe_execution(executionArn=found["execution"])["status"])


def tags(github: FakeGitHub, env: str, app: str) -> str:
    files = github.files(REPO)
    if env == "prod":
        text = files["envs/prod/deployments.yaml"]
        return text.split(f"ghcr.io/acme/{app}:", 1)[1].split()[0]
    document = yaml.safe_load(files[f"envs/{env}/kustomization.yaml"])
    return str(next(i["newTag"] for i in document["images"] if i["name"].endswith(f"/{app}")))


def versions(runtime: LocalRuntime, app: str) -> dict[str, dict[str, Any]]:
    answer = api(runtime, "GET", "/environments")
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[str, Any]] = {}
    for env in answer.json()["environments"]:
        for entry in env["apps"]:
            if entry["app"] == app:
                found[env["name"]] = entry
    return found


def test_happy_path_dev_staging_prod_with_one_approval(
    runtime: LocalRuntime, github: FakeGitHub
) -> None:
    app = "payments-api"
    started = api(
        runtime, "POST", "/promotions", {"app": app, "version": "v1.1.0", "requested_by": "ci"}
    )
    assert started.status_code == 202, started.text
    promotion_id = started.json()["id"]
    assert started.json()["plan"] == ["dev", "staging", "prod"]

    waiting = wait_for(lambda: status_is(runtime, promotion_id, "awaiting_approval"), timeout=20)
    # dev and staging are done and merged; prod's pull request is open, unmerged.
    assert waiting["done"] == ["dev", "staging"]
    assert (tags(github, "dev", app), tags(github, "staging", app)) == ("v1.1.0", "v1.1.0")
    assert tags(github, "prod", app) == "v1.0.0"
    prod_pull = next(p for p in waiting["pull_requests"] if p["environment"] == "prod")
    assert prod_pull["state"] == "open"
    body = next(p for p in github.pulls(REPO) if p["number"] == prod_pull["number"])["body"]
    assert f"pitcrew:promotion={promotion_id}" in body
    assert "token" not in json.dumps(waiting).lower()

    approved = api(runtime, "POST", f"/promotions/{promotion_id}/approve", {"by": "marco"})
    assert approved.status_code == 200, approved.text
    again = api(runtime, "POST", f"/promotions/{promotion_id}/approve", {"by": "marco"})
    assert again.status_code == 409

    final = ended(runtime, promotion_id)
    assert final["status"] == "succeeded", final
    assert execution_status(runtime, final) == "SUCCEEDED"
    assert final["approval"]["decided_by"] == "marco"
    assert tags(github, "prod", app) == "v1.1.0"
    recorded = versions(runtime, app)
    assert {env: v["current"] for env, v in recorded.items()} == {
        "dev": "v1.1.0",
        "staging": "v1.1.0",
        "prod": "v1.1.0",
    }
    # previous: the version each update replaced in the manifests
    assert {env: v["previous"] for env, v in recorded.items()} == {
        "dev": "v1.0.0",
        "staging": "v1.0.0",
        "prod": "v1.0.0",
    }
    steps = [(s["environment"], s["step"], s["outcome"]) for s in final["steps"]]
    dev_update = next(
        s for s in final["steps"] if (s["environment"], s["step"]) == ("dev", "update")
    )
    assert (dev_update["outcome"], dev_update["detail"].split()[-1]) == ("merged", "merged")
    assert ("prod", "approval", "approved") in steps
    assert ("staging", "verify", "passed") in steps
    assert all(s.get("started_at") and s.get("ended_at") for s in final["steps"])


def test_verification_failing_in_staging_rolls_back_and_leaves_prod_untouched(
    runtime: LocalRuntime, github: FakeGitHub, health: Health
) -> None:
    app = "orders-api"
    with health.lock:
        health.error_rate["staging"] = 0.2
    try:
        started = api(runtime, "POST", "/promotions", {"app": app, "version": "v2.0.0"})
        assert started.status_code == 202, started.text
        final = ended(runtime, started.json()["id"])
    finally:
        with health.lock:
            health.error_rate.pop("staging")

    assert final["status"] == "rolled_back", final
    assert "verify failed in staging" in final["reason"]
    assert "above the maximum 0.05" in final["reason"]
    assert tags(github, "dev", app) == "v2.0.0"
    assert tags(github, "staging", app) == "v1.0.0"  # rolled back by a merged pull request
    assert tags(github, "prod", app) == "v1.0.0"
    purposes = [(p["environment"], p["purpose"], p["state"]) for p in final["pull_requests"]]
    assert ("staging", "rollback", "merged") in purposes
    assert not any(env == "prod" for env, _, _ in purposes)
    recorded = versions(runtime, app)
    assert recorded["staging"]["current"] == "v1.0.0"
    assert "prod" not in recorded


def test_an_approval_that_times_out_fails_and_promotes_nothing(
    runtime: LocalRuntime, github: FakeGitHub
) -> None:
    app = "billing-api"
    started = api(runtime, "POST", "/promotions", {"app": app, "version": "v3.0.0"})
    promotion_id = started.json()["id"]
    wait_for(lambda: status_is(runtime, promotion_id, "awaiting_approval"), timeout=20)

    final = ended(runtime, promotion_id, timeout=30)

    assert final["status"] == "failed", final
    assert "timed out" in final["reason"]
    assert tags(github, "prod", app) == "v1.0.0"
    prod_pull = next(p for p in final["pull_requests"] if p["environment"] == "prod")
    assert prod_pull["state"] == "closed"
    assert "prod" not in versions(runtime, app)
    late = api(runtime, "POST", f"/promotions/{promotion_id}/approve", {})
    assert late.status_code == 409


def test_an_unverified_version_is_refused_into_prod_with_a_reason(
    runtime: LocalRuntime, github: FakeGitHub
) -> None:
    app = "search-api"
    direct = api(
        runtime,
        "POST",
        "/promotions",
        {"app": app, "version": "v9.9.9", "to": "prod", "only": True},
    )
    assert direct.status_code == 409
    assert "not verified in staging" in direct.json()["error"]

    # Around the API, straight to the state machine: the gate refuses it too.
    from pitcrew.promotions.store import Promotion, PromotionStore, iso, new_id

    assert runtime.stack is not None
    from pitcrew.stores import Table

    store = PromotionStore(Table(runtime.stack.refs["PromotionsTable"], runtime.client("dynamodb")))
    record = Promotion(
        id=new_id(),
        app=app,
        version="v9.9.9",
        target="prod",
        plan=["prod"],
        created_at=iso(time.time()),
    )
    store.create(record)
    machine = runtime.stack.refs["PromotionStateMachine"]
    runtime.client("stepfunctions").start_execution(
        stateMachineArn=machine, name=record.id, input=json.dumps({"promotion": record.ref()})
    )
    store.change(
        record.id,
        lambda p: setattr(
            p, "execution", f"{machine.replace(':stateMachine:', ':execution:')}:{record.id}"
        ),
    )

    final = ended(runtime, record.id)
    assert final["status"] == "refused", final
    assert "was not verified in staging" in final["reason"]
    assert final["pull_requests"] == []
    assert tags(github, "prod", app) == "v1.0.0"


def test_two_concurrent_starts_for_one_app_and_environment_run_one(
    runtime: LocalRuntime, health: Health
) -> None:
    app = "cart-api"
    with health.lock:
        health.status["dev"] = 503  # the first one holds dev while it waits for health
    try:
        answers: list[httpx.Response] = []

        def start(version: str) -> None:
            answers.append(
                api(runtime, "POST", "/promotions", {"app": app, "version": version, "to": "dev"})
            )

        threads = [threading.Thread(target=start, args=(v,)) for v in ("v5.0.0", "v5.0.1")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [a.json()["id"] for a in answers if a.status_code == 202]
        refused_at_once = [a for a in answers if a.status_code == 409]
        finals = {i: ended(runtime, i) for i in ids}
    finally:
        with health.lock:
            health.status.pop("dev")

    outcomes = sorted(f["status"] for f in finals.values())
    # Either the API refused the second start, or both started and the gate's lock let one run.
    if refused_at_once:
        assert len(ids) == 1
        assert "already promoting" in refused_at_once[0].json()["error"]
    else:
        refused = [f for f in finals.values() if f["status"] == "refused"]
        assert len(refused) == 1, outcomes
        assert "already promoting cart-api into dev" in refused[0]["reason"]
        assert refused[0]["pull_requests"] == []
    # The one that ran got as far as dev's health (503 until its timeout), then failed.
    ran = [f for f in finals.values() if f["status"] != "refused"]
    assert len(ran) == 1
    assert ran[0]["status"] in ("failed", "rolled_back")
    assert "dev did not become healthy" in ran[0]["reason"]


def test_pitcrew_rollback_returns_an_environment_to_the_stable_version_before(
    runtime: LocalRuntime,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pitcrew.cli import main

    app = "users-api"
    for version in ("v7.0.0", "v7.1.0"):
        started = api(runtime, "POST", "/promotions", {"app": app, "version": version, "to": "dev"})
        assert started.status_code == 202, started.text
        assert ended(runtime, started.json()["id"])["status"] == "succeeded"
    dev = versions(runtime, app)["dev"]
    assert (dev["current"], dev["stable"], dev["previous_stable"]) == ("v7.1.0", "v7.1.0", "v7.0.0")

    monkeypatch.setenv("PITCREW_API_TOKEN", TOKEN)
    assert runtime.api_url is not None
    assert main(["rollback", app, "--env", "dev", "--api", runtime.api_url]) == 0
    assert "users-api v7.0.0 -> dev" in capsys.readouterr().out
    (rollback,) = api(runtime, "GET", f"/promotions?app={app}&limit=1").json()["promotions"]
    final = ended(runtime, rollback["id"])

    assert (final["kind"], final["status"]) == ("rollback", "succeeded"), final
    assert tags(github, "dev", app) == "v7.0.0"
    dev = versions(runtime, app)["dev"]
    assert (dev["current"], dev["stable"], dev["previous_stable"]) == ("v7.0.0", "v7.0.0", None)
    # Going back does not make the abandoned version somewhere to return to.
    with pytest.raises(SystemExit) as refused:
        main(["rollback", app, "--env", "dev", "--api", runtime.api_url])
    assert refused.value.code == 1
    assert "no stable version before it" in capsys.readouterr().err
