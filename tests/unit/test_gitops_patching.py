"""Round-trip patching: a manifest with comments, quoting styles, flow mappings and several
documents comes back with only the patched lines changed."""

from __future__ import annotations

from typing import Any

import pytest

from pitcrew.errors import BadRequestError
from pitcrew.gitops.patching import apply_patch, documents, split_documents, unified_diff

MANIFEST = """\
# Rendered by hand; keep the comments.
apiVersion: v1
kind: ConfigMap
metadata: {name: api-config, namespace: payments}
data:
  motd: |
    hello
    ---
    not a document marker: it is indented
---   # the workload
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: payments
  annotations:
    note: 'single quoted'
    other: "double quoted"
spec:
  replicas: 2 # scaled by hand
  template:
    spec:
      containers:
      - name: api
        image: "ghcr.io/acme/api:1.4.2"   # pinned
        env:
        - {name: MODE, value: prod}
        resources:
          limits:
            memory: "512Mi"   # measured in October
          requests: {memory: 384Mi, cpu: 100m}
      - name: sidecar
        image: envoyproxy/envoy:v1.31.0
...
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  ports: [{port: 80}]
"""


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), unified_diff("m.yaml", before, after)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def deployment_patch(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "payments"},
        "spec": {**spec, "template": {"spec": {"containers": [{"name": "api", **container}]}}},
    }


def test_splitting_keeps_every_byte() -> None:
    chunks = split_documents(MANIFEST)
    assert "".join(chunks) == MANIFEST
    assert [d.value["kind"] for d in documents(MANIFEST)] == ["ConfigMap", "Deployment", "Service"]


def test_only_the_patched_lines_change() -> None:
    patch = deployment_patch(
        {"resources": {"limits": {"memory": "768Mi"}, "requests": {"memory": "512Mi"}}},
        replicas=3,
    )
    patched = apply_patch(MANIFEST, 1, patch)

    assert changed_lines(MANIFEST, patched) == [
        ("  replicas: 2 # scaled by hand", "  replicas: 3 # scaled by hand"),
        (
            '            memory: "512Mi"   # measured in October',
            '            memory: "768Mi"   # measured in October',
        ),
        (
            "          requests: {memory: 384Mi, cpu: 100m}",
            "          requests: {memory: 512Mi, cpu: 100m}",
        ),
    ]
    before, after = split_documents(MANIFEST), split_documents(patched)
    assert before[0] == after[0] and before[2] == after[2]  # other documents, byte for byte


def test_new_keys_and_env_entries_are_added_in_place_with_the_files_indentation() -> None:
    patch = deployment_patch(
        {
            "env": [{"name": "GOMEMLIMIT", "value": "700MiB"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        }
    )
    patched = apply_patch(MANIFEST, 1, patch)
    diff = unified_diff("m.yaml", MANIFEST, patched)
    added = [
        line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    removed = [
        line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")
    ]
    assert removed == []
    assert "+        - {name: GOMEMLIMIT, value: 700MiB}" in added or (
        "+        - name: GOMEMLIMIT" in added
    )
    assert "+        readinessProbe:" in added
    assert "+            path: /ready" in added
    value = documents(patched)[1].value
    container = value["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["MODE", "GOMEMLIMIT"]
    assert value["spec"]["template"]["spec"]["containers"][1]["name"] == "sidecar"


def test_null_deletes_a_key_and_an_unchanged_patch_changes_nothing() -> None:
    same = deployment_patch({"resources": {"limits": {"memory": "512Mi"}}}, replicas=2)
    assert apply_patch(MANIFEST, 1, same) == MANIFEST
    dropped = apply_patch(MANIFEST, 1, deployment_patch({"resources": {"requests": None}}))
    assert "requests:" not in split_documents(dropped)[1]


def test_patch_directives_are_refused() -> None:
    with pytest.raises(BadRequestError, match=r"\$patch"):
        apply_patch(MANIFEST, 1, deployment_patch({"$patch": "replace"}))


def test_a_two_space_sequence_style_file_keeps_its_style() -> None:
    text = (
        "kind: Deployment\nmetadata:\n  name: api\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - name: api\n          resources:\n"
        "            limits:\n              cpu: 500m\n"
    )
    patched = apply_patch(text, 0, deployment_patch({"resources": {"limits": {"cpu": "1"}}}))
    assert changed_lines(text, patched) == [
        ("              cpu: 500m", '              cpu: "1"'),
    ]


CRLF_MANIFEST = (
    "apiVersion: apps/v1\r\nkind: Deployment\r\nmetadata:\r\n  name: api # the API\r\n"
    "spec:\r\n  template:\r\n    spec:\r\n      containers:\r\n      - name: api\r\n"
    "        resources:\r\n          limits:\r\n            memory: 512Mi\r\n"
    "---\r\napiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: api\r\n"
)


def test_a_crlf_file_keeps_its_line_endings() -> None:
    patch = deployment_patch({"resources": {"limits": {"memory": "1Gi"}}})
    patched = apply_patch(CRLF_MANIFEST, 0, patch)
    assert patched == CRLF_MANIFEST.replace("memory: 512Mi", "memory: 1Gi")


def test_a_byte_order_mark_is_kept() -> None:
    text = "\ufeff" + CRLF_MANIFEST.replace("\r\n", "\n")
    patched = apply_patch(text, 0, deployment_patch({"resources": {"limits": {"memory": "1Gi"}}}))
    assert patched == text.replace("memory: 512Mi", "memory: 1Gi")


ANCHORED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
x-limits: &limits
  memory: 512Mi
spec:
  template:
    spec:
      containers:
      - &api
        name: api
        resources:
          limits: *limits
          requests: *limits
      - <<: *api
        name: worker
"""


@pytest.mark.parametrize(
    "container",
    [
        {"resources": {"limits": {"memory": "1Gi"}}},  # limits is an alias of requests too
        {"env": [{"name": "GOMEMLIMIT", "value": "900MiB"}]},  # the worker merges <<: *api
    ],
)
def test_a_patch_through_a_shared_anchor_is_refused(container: dict[str, Any]) -> None:
    # Writing through an anchor would change every place that aliases it as well.
    with pytest.raises(BadRequestError, match="anchor"):
        apply_patch(ANCHORED, 0, deployment_patch(container))


def test_an_anchor_nobody_aliases_is_patched() -> None:
    text = ANCHORED.replace("*limits", "{memory: 512Mi}").replace("      - <<: *api\n", "")
    text = text.replace("        name: worker\n", "")
    patched = apply_patch(text, 0, deployment_patch({"resources": {"limits": {"memory": "1Gi"}}}))
    assert changed_lines(text, patched) == [
        ("          limits: {memory: 512Mi}", "          limits: {memory: 1Gi}"),
    ]
