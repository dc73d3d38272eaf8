"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) sends its webhooks,
with a bearer token, to the local stack (what ``make run`` starts): the alerts posted to
Alertmanager become an incident in ``GET /incidents``, diagnosed when the template has the
``diagnose`` function, and resolved when Alertmanager sends their resolution."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pitcrew.local.template import load_template
from tests.e2e.conftest import REPO, LocalStack, free_port, start_local_stack
from tests.support.events import load_event

pytestmark = pytest.mark.e2e

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
CATEGORIES = {
    "oom_killed",
    "app_crash",
    "missing_config",
    "image_pull",
    "probe_failure",
    "unschedulable",
    "pvc_pending",
    "rollout_stuck",
    "node_not_ready",
    "job_failed",
    "unknown",
}
WAIT_S = 90.0


@contextmanager
def running_alertmanager(tmp_path: Path, webhook_url: str, token: str) -> Iterator[str]:
    """Alertmanager on a free port of 127.0.0.1, no clustering, its webhook receiver pointed
    at ``webhook_url`` with ``token`` as bearer credentials; yields its base URL."""
    assert ALERTMANAGER is not None
    config = {
        "route": {
            "receiver": "pitcrew",
            "group_by": ["cluster", "namespace"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "pitcrew",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": token}},
                    }
                ],
            }
        ],
    }
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited {process.returncode}: {_log(tmp_path)}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"alertmanager not ready within 30 s: {_log(tmp_path)}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _log(tmp_path: Path) -> str:
    path = tmp_path / "alertmanager.log"
    return path.read_text(encoding="utf-8")[-4000:] if path.exists() else ""


def crashloop_alerts(ends_at: datetime | None = None) -> list[dict[str, Any]]:
    """The sample's two crash-looping pods, as a Prometheus server posts them to Alertmanager
    (API v2): labels, annotations, start and, once resolved, end."""
    started = datetime.now(UTC) - timedelta(minutes=5)
    alerts = []
    for sample in load_event("alertmanager/firing-crashloop.json")["alerts"]:
        alert: dict[str, Any] = {
            "labels": sample["labels"],
            "annotations": sample["annotations"],
            "generatorURL": sample["generatorURL"],
            "startsAt": started.isoformat(),
        }
        if ends_at is not None:
            alert["endsAt"] = ends_at.isoformat()
        alerts.append(alert)
    return alerts


def wait_for(what: str, check: Any, tmp_path: Path) -> Any:
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what} within {WAIT_S:.0f} s; last seen: {last}\nalertmanager: {_log(tmp_path)}")


def incidents(stack: LocalStack, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{stack.api_url}/incidents",
        params={"status": "all"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["incidents"])


@pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="prometheus-alertmanager is not installed (make system-deps installs it)",
)
def test_alertmanager_alerts_become_an_incident_that_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator_token = secrets.token_urlsafe(24)
    monkeypatch.setenv("PITCREW_API_TOKEN", operator_token)
    diagnosing = "DiagnoseFunction" in load_template().resources

    with start_local_stack() as stack:
        secret = stack.client("secretsmanager").get_secret_value(SecretId="pitcrew/alertmanager")
        webhook = f"{stack.api_url}/webhooks/alertmanager"
        with running_alertmanager(tmp_path, webhook, secret["SecretString"]) as alertmanager:
            posted = httpx.post(f"{alertmanager}/api/v2/alerts", json=crashloop_alerts())
            assert posted.status_code == 200, posted.text

            def about_api() -> dict[str, Any] | None:
                for incident in incidents(stack, operator_token):
                    if incident["workload"] == {"kind": "Deployment", "name": "api"} and (
                        incident["alerts"] == 2
                        and (incident["diagnosis"] is not None or not diagnosing)
                    ):
                        return incident
                return None

            incident = wait_for("an incident about Deployment api", about_api, tmp_path)

            assert incident["cluster"] == "prod-eu"
            assert incident["namespace"] == "payments"
            assert incident["status"] == "open"
            assert incident["signature"].startswith("prod-eu/payments/Deployment/api/")
            if diagnosing:
                assert incident["diagnosis"]["category"] in CATEGORIES
                assert incident["diagnosis"]["root_cause"]
            shown = httpx.get(
                f"{stack.api_url}/incidents/{incident['id']}",
                headers={"Authorization": f"Bearer {operator_token}"},
                timeout=10,
            )
            assert shown.status_code == 200
            assert shown.json()["id"] == incident["id"]

            ended = datetime.now(UTC) - timedelta(seconds=1)
            resolved = httpx.post(f"{alertmanager}/api/v2/alerts", json=crashloop_alerts(ended))
            assert resolved.status_code == 200, resolved.text

            def resolved_incident() -> dict[str, Any] | None:
                for found in incidents(stack, operator_token):
                    if found["id"] == incident["id"] and found["status"] == "resolved":
                        return found
                return None

            closed = wait_for("the incident resolved", resolved_incident, tmp_path)
            every = incidents(stack, operator_token)

    assert closed["resolved_at"]
    assert [e["event"] for e in closed["timeline"]][-1] == "resolved"
    # Two pods, a firing and a resolved delivery: still one incident about the workload.
    assert [i["id"] for i in every if i["workload"]["name"] == "api"] == [incident["id"]]


@pytest.mark.skipif(AMTOOL is None, reason="amtool (from prometheus-alertmanager) is not installed")
def test_the_example_alertmanager_configuration_is_valid() -> None:
    assert AMTOOL is not None
    checked = subprocess.run(
        [AMTOOL, "check-config", str(REPO / "infra" / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
