"""IncidentStore against the IncidentsTable of template.yaml (moto): grouping, resolution,
later changes, listing, concurrent writers, and GET /incidents over the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from pitcrew.api import create_app
from pitcrew.config import load_config
from pitcrew.errors import BadRequestError, ConflictError, NotFoundError
from pitcrew.incidents.alerts import Alert, alert_from_dict, subject_of
from pitcrew.incidents.model import Category, Diagnosis
from pitcrew.incidents.store import Incident, IncidentStore
from pitcrew.local.provision import Stack
from pitcrew.observability import instrument
from tests.support.events import load_event

T0 = datetime(2024, 11, 19, 8, 15, tzinfo=UTC)
OPERATOR_TOKEN = "operator-token-for-incident-tests"


@pytest.fixture
def store(stack: Stack) -> IncidentStore:
    return IncidentStore()


def crashloop(pod: str = "api-7c9d8f6b5-x2x7q", status: str = "firing", **changes: str) -> Alert:
    raw = load_event("alertmanager/firing-crashloop.json")["alerts"][0]
    raw["labels"]["pod"] = pod
    raw["status"] = status
    raw["fingerprint"] = changes.pop("fingerprint", f"fp-{pod}")
    raw.update(changes)
    return alert_from_dict(raw)


def pod(index: int) -> str:
    """A Deployment pod name (suffixes use Kubernetes' safe alphabet, so the owner is known)."""
    safe = "bcdfghjklmnpqrstvwxz2456789"
    return f"api-7c9d8f6b5-x{safe[index // 27 % 27]}{safe[index % 27]}zz"


def record(store: IncidentStore, alert: Alert, at: datetime = T0) -> tuple[Incident, bool]:
    return store.record_alert(subject_of(alert), alert, at)


def resolve(store: IncidentStore, alert: Alert, at: datetime) -> Incident | None:
    resolved = replace(alert, status="resolved")
    return store.record_resolved(subject_of(resolved), resolved, at)


# ------------------------------------------------------------------ grouping


def test_alerts_about_one_workload_are_one_incident(store: IncidentStore) -> None:
    first, opened = record(store, crashloop("api-7c9d8f6b5-x2x7q"))
    second, joined = record(store, crashloop("api-7c9d8f6b5-kq4zt"), T0 + timedelta(minutes=1))

    assert (opened, joined) == (True, False)
    assert second.id == first.id
    stored = store.get(first.id)
    assert stored.alerts == 2
    assert stored.signature == "prod-eu/payments/Deployment/api/app_crash"
    assert (stored.first_seen, stored.last_seen) == (
        "2024-11-19T08:15:00.000Z",
        "2024-11-19T08:16:00.000Z",
    )
    assert [e["event"] for e in stored.timeline] == ["opened", "alert"]


def test_a_redelivered_alert_changes_nothing(store: IncidentStore) -> None:
    alert = crashloop()
    incident, _ = record(store, alert)
    again, opened = record(store, alert, T0 + timedelta(minutes=5))

    assert not opened
    assert store.get(incident.id).alerts == 1
    assert again.version == store.get(incident.id).version


def test_different_workloads_are_different_incidents(store: IncidentStore) -> None:
    api, _ = record(store, crashloop("api-7c9d8f6b5-x2x7q"))
    worker, opened = record(store, crashloop("worker-5d8f7c6b9-bcdfg"))

    assert opened
    assert api.id != worker.id
    assert worker.workload.name == "worker"


def test_open_for_finds_the_open_incident(store: IncidentStore) -> None:
    incident, _ = record(store, crashloop())

    found = store.open_for("prod-eu", "payments", "Deployment", "api")

    assert found is not None and found.id == incident.id
    assert store.open_for("prod-eu", "payments", "Deployment", "other") is None


# ------------------------------------------------------------------ resolution


def test_the_incident_resolves_when_its_last_alert_resolves(store: IncidentStore) -> None:
    one, two = crashloop("api-7c9d8f6b5-x2x7q"), crashloop("api-7c9d8f6b5-kq4zt")
    incident, _ = record(store, one)
    record(store, two)

    half = resolve(store, one, T0 + timedelta(minutes=10))
    done = resolve(store, two, T0 + timedelta(minutes=12))

    assert half is not None and half.status == "open"
    assert done is not None and done.status == "resolved"
    assert done.resolved_at == "2024-11-19T08:27:00.000Z"
    assert done.timeline[-1]["event"] == "resolved"
    assert store.open_for("prod-eu", "payments", "Deployment", "api") is None
    assert store.get(incident.id).to_item()["expires_at"] > int(T0.timestamp())


def test_a_firing_after_resolution_opens_a_new_incident(store: IncidentStore) -> None:
    first_alert = crashloop()
    first, _ = record(store, first_alert)
    resolve(store, first_alert, T0 + timedelta(minutes=10))

    again = crashloop(startsAt="2024-11-19T09:00:00.000Z")
    second, opened = record(store, again, T0 + timedelta(hours=1))

    assert opened
    assert second.id != first.id
    assert second.id > first.id  # time-ordered ids
    assert store.get(first.id).status == "resolved"


def test_a_late_firing_of_a_resolved_alert_is_ignored(store: IncidentStore) -> None:
    alert = crashloop()
    incident, _ = record(store, alert)
    resolve(store, alert, T0 + timedelta(minutes=10))

    late, opened = record(store, alert, T0 + timedelta(minutes=11))

    assert not opened
    assert late.id == incident.id and late.status == "resolved"
    assert store.list("open") == []


def test_a_resolved_alert_of_an_unknown_workload_is_none(store: IncidentStore) -> None:
    assert resolve(store, crashloop(), T0) is None


def test_reopen_and_its_conflict(store: IncidentStore) -> None:
    alert = crashloop()
    first, _ = record(store, alert)
    resolve(store, alert, T0 + timedelta(minutes=10))

    reopened = store.reopen(first.id, T0 + timedelta(hours=2), "the fix did not hold")

    assert reopened.status == "open" and reopened.resolved_at is None
    assert reopened.timeline[-1] == {
        "at": "2024-11-19T10:15:00.000Z",
        "event": "reopened",
        "detail": "the fix did not hold",
    }
    found = store.open_for("prod-eu", "payments", "Deployment", "api")
    assert found is not None and found.id == first.id
    # The next alert joins the reopened incident.
    _, opened = record(store, crashloop(startsAt="2024-11-19T10:20:00.000Z"), T0)
    assert not opened


def test_reopen_refuses_while_another_incident_is_open(store: IncidentStore) -> None:
    alert = crashloop()
    first, _ = record(store, alert)
    resolve(store, alert, T0 + timedelta(minutes=10))
    second, _ = record(store, crashloop(startsAt="2024-11-19T09:00:00.000Z"))

    with pytest.raises(ConflictError, match=second.id):
        store.reopen(first.id, T0, "again")


# ------------------------------------------------------------------ later changes


def test_diagnosis_pull_request_and_timeline(store: IncidentStore) -> None:
    incident, _ = record(store, crashloop())
    diagnosis = Diagnosis(
        category=Category.OOM_KILLED,
        root_cause="the container exceeds its 256Mi memory limit",
        confidence=0.9,
        evidence=("lastState.terminated.reason=OOMKilled",),
        patch={"spec": {"template": {"spec": {"containers": [{"name": "api"}]}}}},
        summary_line="api OOMKilled",
    )

    store.save_diagnosis(incident.id, diagnosis, T0 + timedelta(minutes=1))
    store.set_pull_request(
        incident.id,
        {"number": 7, "url": "https://github.com/acme/gitops/pull/7", "state": "open"},
        T0 + timedelta(minutes=2),
    )
    store.add_timeline(incident.id, "notified", T0 + timedelta(minutes=3), "slack")
    shown = store.get(incident.id).as_api()

    assert shown["signature"] == "prod-eu/payments/Deployment/api/oom_killed"
    assert shown["diagnosis"] == diagnosis.as_dict()
    assert shown["pull_request"]["number"] == 7
    assert shown["links"][-1] == "https://github.com/acme/gitops/pull/7"  # after the alert links
    assert [e["event"] for e in shown["timeline"]] == [
        "opened",
        "diagnosed",
        "pull_request",
        "notified",
    ]


def test_changes_to_an_unknown_incident_are_not_found(store: IncidentStore) -> None:
    with pytest.raises(NotFoundError):
        store.add_timeline("01JDNOSUCHINCIDENT0000000", "x", T0)


# ------------------------------------------------------------------ listing


def test_list_filters_by_status_newest_first(store: IncidentStore) -> None:
    ids = []
    for index, name in enumerate(("alpha", "bravo", "charlie")):
        pod = f"{name}-7c9d8f6b5-x2x7q"
        incident, _ = record(store, crashloop(pod), T0 + timedelta(minutes=index))
        ids.append(incident.id)
    resolve(store, crashloop("bravo-7c9d8f6b5-x2x7q"), T0 + timedelta(hours=1))

    assert [i.id for i in store.list("open")] == [ids[2], ids[0]]
    assert [i.id for i in store.list("resolved")] == [ids[1]]
    assert [i.id for i in store.list("all")] == ids[::-1]
    assert [i.id for i in store.list("all", limit=2)] == [ids[2], ids[1]]


@pytest.mark.parametrize(("status", "limit"), [("closed", 10), ("open", 0), ("open", 5000)])
def test_list_refuses_a_bad_status_or_limit(store: IncidentStore, status: str, limit: int) -> None:
    with pytest.raises(BadRequestError):
        store.list(status, limit)


# ------------------------------------------------------------------ concurrency


@pytest.fixture
def atomic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the emulator's item writes atomic, as DynamoDB's are. moto checks a condition and
    then writes, with the condition's parsing in between, so two threads can both pass a
    check that only one would pass in DynamoDB; the store relies on DynamoDB's guarantee."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("get_item", "put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.mark.usefixtures("atomic_writes")
def test_twenty_concurrent_writers_make_one_incident(store: IncidentStore) -> None:
    alerts = [crashloop(pod(index)) for index in range(20)]
    results: list[tuple[Incident, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(alerts))

    def write(alert: Alert) -> None:
        try:
            start.wait()
            results.append(IncidentStore().record_alert(subject_of(alert), alert, T0))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(alert,)) for alert in alerts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({incident.id for incident, _ in results}) == 1
    assert sum(opened for _, opened in results) == 1
    (incident,) = store.list("all")
    assert incident.alerts == 20
    assert len(incident.firing) == 20


@pytest.mark.usefixtures("atomic_writes")
def test_concurrent_resolutions_resolve_once(store: IncidentStore) -> None:
    alerts = [crashloop(pod(100 + index)) for index in range(8)]
    for alert in alerts:
        record(store, alert)
    start = threading.Barrier(len(alerts))

    def write(alert: Alert) -> None:
        start.wait()
        resolve(IncidentStore(), alert, T0 + timedelta(minutes=5))

    threads = [threading.Thread(target=write, args=(alert,)) for alert in alerts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (incident,) = store.list("all")
    assert incident.status == "resolved"
    assert incident.firing == {}
    assert [e["event"] for e in incident.timeline].count("resolved") == 1


# ------------------------------------------------------------------ the API


@pytest.fixture
def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("PITCREW_API_TOKEN", OPERATOR_TOKEN)
    with Client(create_app(load_config(), instrument("api-test"))) as client:
        yield client


def get(api: Client, path: str, token: str = OPERATOR_TOKEN) -> tuple[int, Any]:
    response = api.http.get(path, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, json.loads(response.body)


def test_the_api_lists_and_shows_incidents(api: Client, store: IncidentStore) -> None:
    incident, _ = record(store, crashloop())

    status, listing = get(api, "/incidents")
    shown_status, shown = get(api, f"/incidents/{incident.id}")

    assert status == 200 and listing["count"] == 1
    assert listing["incidents"][0]["id"] == incident.id
    assert shown_status == 200
    assert {
        "id",
        "signature",
        "cluster",
        "namespace",
        "workload",
        "status",
        "alerts",
        "first_seen",
        "last_seen",
        "diagnosis",
        "pull_request",
        "timeline",
    } <= set(shown)
    assert shown["workload"] == {"kind": "Deployment", "name": "api"}
    assert shown["diagnosis"] is None
    assert get(api, "/incidents?status=resolved")[1]["incidents"] == []
    assert get(api, "/incidents?status=all&limit=1")[1]["count"] == 1


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/incidents?status=closed", 400, "status: expected one of open, resolved, all"),
        ("/incidents?limit=0", 400, "limit: expected an integer"),
        ("/incidents?limit=ten", 400, "limit: expected an integer"),
        ("/incidents?sort=asc", 400, "unknown query parameter(s) sort"),
        ("/incidents/01JDNOSUCHINCIDENT0000000", 404, "no incident"),
    ],
)
def test_the_api_refuses_bad_queries(api: Client, path: str, status: int, message: str) -> None:
    got, body = get(api, path)
    assert got == status
    assert message in body["error"]


def test_the_api_needs_the_operator_token(api: Client) -> None:
    assert get(api, "/incidents", token="wrong")[0] == 401
