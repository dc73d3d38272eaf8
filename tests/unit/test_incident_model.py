"""The Incident record: its API shape (DESIGN.md), signature, item round trip, bounded
timeline and time-ordered ids. No network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pitcrew.incidents.alerts import parse_webhook, subject_of
from pitcrew.incidents.model import Category, Diagnosis, WorkloadRef
from pitcrew.incidents.store import MAX_TIMELINE, Incident, iso, new_id
from tests.support.events import load_event, load_raw

T0 = datetime(2024, 11, 19, 8, 15, tzinfo=UTC)


def incident(**changes: object) -> Incident:
    (alert,) = parse_webhook(load_raw("alertmanager/firing-oom.json")).alerts
    subject = subject_of(alert)
    assert subject.workload is not None
    record = Incident(
        id=new_id(T0),
        cluster=subject.cluster,
        namespace=subject.namespace,
        workload=subject.workload,
        subject=subject,
        alerts=1,
        first_seen=iso(T0),
        last_seen=iso(T0),
        firing={alert.fingerprint: alert.starts_at},
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def test_the_api_shape_is_designs() -> None:
    shown = incident().as_api()
    sample = load_event("eventbridge/IncidentDiagnosed.json")["detail"]

    assert set(sample) - {"diagnosis"} <= set(shown)
    assert shown["signature"] == "prod-eu/payments/Deployment/api/oom_killed"
    assert shown["workload"] == {"kind": "Deployment", "name": "api"}
    assert shown["status"] == "open"
    assert shown["diagnosis"] is None and shown["pull_request"] is None
    json.dumps(shown)  # plain JSON, as events and the API need


def test_the_signature_follows_the_diagnosis() -> None:
    diagnosed = incident(
        diagnosis=Diagnosis(category=Category.PROBE_FAILURE, root_cause="r", confidence=0.5)
    )
    assert diagnosed.signature.endswith("/Deployment/api/probe_failure")


def test_a_cluster_scoped_subject_has_a_dash_for_its_namespace() -> None:
    node = incident(namespace=None, workload=WorkloadRef("Node", "ip-10-20-3-41"))
    assert node.signature.startswith("prod-eu/-/Node/ip-10-20-3-41/")
    assert node.as_api()["namespace"] is None


def test_the_item_round_trips() -> None:
    record = incident(
        diagnosis=Diagnosis(
            category=Category.OOM_KILLED,
            root_cause="memory limit too low",
            confidence=0.9,
            evidence=("OOMKilled",),
            patch={"spec": {"replicas": 2}},
            summary_line="raise memory",
        ),
        pull_request={"number": 3, "url": "https://github.com/acme/gitops/pull/3"},
        links=["https://github.com/acme/gitops/pull/3"],
        version=4,
    )
    record.note(T0, "diagnosed", "oom")

    item = record.to_item()

    assert (item["pk"], item["sk"], item["list_pk"]) == (
        f"INCIDENT#{record.id}",
        "INCIDENT",
        "STATUS#open",
    )
    assert "expires_at" not in item
    assert Incident.from_item(item) == record


def test_a_resolved_incident_expires_after_retention() -> None:
    resolved = incident(status="resolved", resolved_at=iso(T0))
    item = resolved.to_item()
    assert item["list_pk"] == "STATUS#resolved"
    assert item["expires_at"] == int((T0 + timedelta(days=90)).timestamp())


def test_the_timeline_keeps_the_opening_and_the_latest_entries() -> None:
    record = incident()
    record.note(T0, "opened", "KubeContainerOOMKilled firing")
    for index in range(MAX_TIMELINE + 50):
        record.note(T0 + timedelta(seconds=index), f"event-{index}")

    assert len(record.timeline) == MAX_TIMELINE
    assert record.timeline[0] == {
        "at": "2024-11-19T08:15:00.000Z",
        "event": "opened",
        "detail": "KubeContainerOOMKilled firing",
    }
    assert record.timeline[-1]["event"] == f"event-{MAX_TIMELINE + 49}"
    assert "detail" not in record.timeline[-1]


def test_ids_are_ulids_ordered_by_time() -> None:
    earlier = new_id(T0)
    later = new_id(T0 + timedelta(milliseconds=1))

    assert len(earlier) == 26 and earlier.isalnum() and earlier.isupper()
    assert earlier < later
    assert new_id(T0) != earlier  # random part
    assert new_id(T0, randbits=lambda bits: 0).endswith("0" * 16)


def test_the_timeline_names_the_volume_of_a_volume_alert_not_the_kubelets_node() -> None:
    from pitcrew.incidents.store import _alert_detail

    document = json.loads(load_raw("alertmanager/firing-oom.json"))
    document["alerts"][0]["labels"] = {
        "alertname": "KubePersistentVolumeFillingUp",
        "namespace": "data",
        "persistentvolumeclaim": "data-kafka-0",
        "node": "ip-10-20-1-5.eu-west-1.compute.internal",
        "job": "kubelet",
    }
    (alert,) = parse_webhook(json.dumps(document)).alerts

    assert _alert_detail(alert, subject_of(alert)).startswith(
        "KubePersistentVolumeFillingUp firing on data-kafka-0"
    )
