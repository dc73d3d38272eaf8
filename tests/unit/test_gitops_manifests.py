"""Finding a workload's manifest: manifest_paths templates, a search of the repository by
kind, name and namespace, and Kustomize overlays (the file that sets the field, or a new
patch file listed in the overlay's kustomization)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pitcrew.errors import NotFoundError
from pitcrew.gitops import WorkloadId, find_manifest, render_change

API = WorkloadId(cluster="prod-eu", namespace="payments", kind="Deployment", name="api")


class Files:
    """A repository at one commit, in memory (a ManifestSource); counts reads."""

    def __init__(self, files: dict[str, str]) -> None:
        self.content = files
        self.reads: list[str] = []

    def files(self) -> tuple[str, ...]:
        return tuple(sorted(self.content))

    def read(self, path: str) -> str | None:
        self.reads.append(path)
        return self.content.get(path)


def deployment(name: str = "api", namespace: str | None = "payments", memory: str = "512Mi") -> str:
    metadata = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n{metadata}spec:\n  template:\n"
        f"    spec:\n      containers:\n        - name: {name}\n          image: acme/{name}:1\n"
        f"          resources:\n            limits:\n              memory: {memory}\n"
    )


PATCH: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "payments"},
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "api", "resources": {"limits": {"memory": "768Mi"}}}]}
        }
    },
}
TEMPLATES = ("apps/{namespace}/{workload}.yaml", "clusters/{cluster}/{namespace}/{workload}")


def test_a_manifest_paths_template_is_tried_first() -> None:
    source = Files(
        {"apps/payments/api.yaml": "# api\n---\n" + deployment(), "z/api.yaml": deployment()}
    )
    target = find_manifest(source, API, TEMPLATES, PATCH)
    assert (target.path, target.document) == ("apps/payments/api.yaml", 1)
    assert "template" in target.how
    assert source.reads == ["apps/payments/api.yaml"]


def test_kind_placeholder_is_lower_case() -> None:
    source = Files({"deploy/api/deployment.yaml": deployment()})
    target = find_manifest(source, API, ["deploy/{workload}/{kind}.yaml"], PATCH)
    assert target.path == "deploy/api/deployment.yaml"


def test_the_search_prefers_the_right_namespace_and_cluster() -> None:
    source = Files(
        {
            "envs/staging/api.yaml": deployment(namespace="payments-staging"),
            "envs/prod-eu/other.yaml": deployment(name="worker"),
            "envs/prod-eu/payments.yaml": "kind: Service\nmetadata: {name: api}\n---\n"
            + deployment(),
            "README.md": "not yaml",
        }
    )
    target = find_manifest(source, API, TEMPLATES, PATCH)
    assert (target.path, target.document) == ("envs/prod-eu/payments.yaml", 1)
    assert "README.md" not in source.reads


def test_nothing_found_says_what_was_tried() -> None:
    source = Files({"apps/payments/worker.yaml": deployment(name="worker")})
    with pytest.raises(NotFoundError) as caught:
        find_manifest(source, API, TEMPLATES, PATCH)
    message = str(caught.value)
    assert "Deployment payments/api" in message
    assert "apps/payments/api.yaml" in message and "clusters/prod-eu/payments/api" in message


BASE = {
    "base/api/kustomization.yaml": "resources:\n  - deployment.yaml\n",
    "base/api/deployment.yaml": deployment(namespace=None),
}


def test_an_overlay_patch_file_that_sets_the_field_is_the_one_changed() -> None:
    overlay = "clusters/prod-eu/payments/api"
    patch_file = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  template:\n"
        "    spec:\n      containers:\n        - name: api\n          resources:\n"
        "            limits:\n              memory: 640Mi  # prod is bigger\n"
    )
    source = Files(
        {
            **BASE,
            f"{overlay}/kustomization.yaml": (
                "resources:\n  - ../../../../base/api\npatches:\n  - path: memory.yaml\n"
            ),
            f"{overlay}/memory.yaml": patch_file,
        }
    )
    target = find_manifest(source, API, TEMPLATES, PATCH)
    assert target.path == f"{overlay}/memory.yaml"
    change = render_change(target, PATCH)
    assert list(change.files) == [f"{overlay}/memory.yaml"]
    assert "memory: 768Mi  # prod is bigger" in change.files[f"{overlay}/memory.yaml"]
    assert target.workload["metadata"]["name"] == "api"  # the base, for the allowlist


def test_an_object_only_in_a_shared_base_gets_a_patch_file_in_the_overlay() -> None:
    overlay = "clusters/prod-eu/payments/api"
    kustomization = (
        "# prod overlay\nnamespace: payments\nresources:\n  - ../../../../base/api  # shared\n"
    )
    source = Files({**BASE, f"{overlay}/kustomization.yaml": kustomization})

    target = find_manifest(source, API, TEMPLATES, PATCH)
    change = render_change(target, PATCH)

    new_file = f"{overlay}/pitcrew-deployment-api.yaml"
    assert set(change.files) == {new_file, f"{overlay}/kustomization.yaml"}
    assert "base/api/deployment.yaml" not in change.files  # other overlays stay as they are
    written = yaml.safe_load(change.files[new_file])
    assert written["kind"] == "Deployment" and written["metadata"] == {"name": "api"}
    assert written["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "768Mi"
    }
    updated = change.files[f"{overlay}/kustomization.yaml"]
    assert updated.startswith(kustomization)  # comments and entries kept, the patch appended
    assert yaml.safe_load(updated)["patches"] == [{"path": "pitcrew-deployment-api.yaml"}]
    assert "+++ b/clusters/prod-eu/payments/api/pitcrew-deployment-api.yaml" in change.diff


def overlay_of_base(namespace: str = "payments") -> str:
    return f"namespace: {namespace}\nresources:\n  - ../../../../base/api\n"


def test_a_base_found_by_search_is_patched_through_the_workloads_own_overlay() -> None:
    files = {
        **BASE,
        "clusters/prod-eu/payments/api/kustomization.yaml": overlay_of_base(),
        "clusters/prod-us/payments/api/kustomization.yaml": overlay_of_base(),
        "clusters/prod-eu/kustomization.yaml": "resources:\n  - payments/api\n",
    }
    target = find_manifest(Files(files), API, (), PATCH)  # no template: found by the search
    change = render_change(target, PATCH)

    overlay = "clusters/prod-eu/payments/api"
    assert set(change.files) == {
        f"{overlay}/pitcrew-deployment-api.yaml",
        f"{overlay}/kustomization.yaml",
    }
    assert "base/api/deployment.yaml" not in change.files  # prod-us stays as it is
    assert target.how.endswith("found by a search in base/api/deployment.yaml")


def test_a_base_no_overlay_of_which_is_the_workloads_is_patched_saying_what_it_reaches() -> None:
    files = {
        **BASE,
        "clusters/staging/payments/api/kustomization.yaml": overlay_of_base(),
        "clusters/prod-us/payments/api/kustomization.yaml": overlay_of_base(),
    }

    target = find_manifest(Files(files), API, (), PATCH)  # API runs in prod-eu: no overlay
    change = render_change(target, PATCH)

    assert set(change.files) == {"base/api/deployment.yaml"}
    assert "the change reaches every overlay of it" in target.how
    assert "clusters/staging/payments/api" in target.how and "clusters/prod-us/payments/api" in (
        target.how
    )


def test_an_overlay_whose_path_only_contains_the_cluster_name_is_not_its_own() -> None:
    prod = WorkloadId(cluster="prod", namespace="payments", kind="Deployment", name="api")
    files = {
        **BASE,
        "clusters/preprod/payments/api/kustomization.yaml": overlay_of_base(),
        "clusters/staging/payments/api/kustomization.yaml": overlay_of_base(),
    }

    target = find_manifest(Files(files), prod, (), PATCH)

    # preprod is another environment: its overlay must not get prod's fix.
    assert set(render_change(target, PATCH).files) == {"base/api/deployment.yaml"}
    assert "the change reaches every overlay of it" in target.how


def test_an_overlay_that_puts_the_object_in_another_namespace_is_not_its_own() -> None:
    files = {
        **BASE,
        "clusters/prod-eu/checkout/api/kustomization.yaml": overlay_of_base("checkout"),
        "clusters/prod-eu/kustomization.yaml": "resources:\n  - checkout/api\n",
    }

    target = find_manifest(Files(files), API, (), PATCH)  # API runs in payments

    assert set(render_change(target, PATCH).files) == {"base/api/deployment.yaml"}


def test_a_resource_inside_the_overlay_is_patched_in_place() -> None:
    overlay = "clusters/prod-eu/payments/api"
    source = Files(
        {
            f"{overlay}/kustomization.yaml": "resources:\n  - deployment.yaml\n",
            f"{overlay}/deployment.yaml": deployment(),
        }
    )
    target = find_manifest(source, API, TEMPLATES, PATCH)
    assert target.path == f"{overlay}/deployment.yaml"
    assert list(render_change(target, PATCH).files) == [f"{overlay}/deployment.yaml"]


def test_a_patch_already_in_git_is_no_change() -> None:
    source = Files({"apps/payments/api.yaml": deployment(memory="768Mi")})
    change = render_change(find_manifest(source, API, TEMPLATES, PATCH), PATCH)
    assert change.empty and change.diff == ""


def test_a_patches_strategic_merge_file_that_sets_the_field_is_the_one_changed() -> None:
    overlay = "clusters/prod-eu/payments/api"
    replicas = "kind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n"
    memory = deployment(namespace=None, memory="600Mi")
    source = Files(
        {
            **BASE,
            f"{overlay}/kustomization.yaml": (
                "resources:\n- ../../../../base/api\npatchesStrategicMerge:\n- patches.yaml\n"
            ),
            f"{overlay}/patches.yaml": replicas + "---\n" + memory,  # the second sets memory
        }
    )
    target = find_manifest(source, API, TEMPLATES, PATCH)
    assert (target.path, target.document) == (f"{overlay}/patches.yaml", 1)
    change = render_change(target, PATCH)
    assert change.files == {
        f"{overlay}/patches.yaml": replicas + "---\n" + memory.replace("600Mi", "768Mi")
    }


@pytest.mark.parametrize(
    ("kustomization", "expected"),
    [
        (  # CRLF line endings stay CRLF
            "resources:\r\n- ../../../../base/api\r\npatchesStrategicMerge:\r\n- replicas.yaml\r\n",
            "resources:\r\n- ../../../../base/api\r\npatchesStrategicMerge:\r\n- replicas.yaml\r\n"
            "patches:\r\n- path: pitcrew-deployment-api.yaml\r\n",
        ),
        (  # a flow list of patches (a JSON 6902 one): the new entry is a mapping, braces kept
            "resources: [../../../../base/api]\n"
            "patches: [{path: ops.yaml, target: {kind: Deployment, name: api}}]\n",
            "resources: [../../../../base/api]\npatches:\n"
            "  - {path: ops.yaml, target: {kind: Deployment, name: api}}\n"
            "  - path: pitcrew-deployment-api.yaml\n",
        ),
    ],
)
def test_the_new_patch_file_is_listed_in_the_kustomization_as_written(
    kustomization: str, expected: str
) -> None:
    overlay = "clusters/prod-eu/payments/api"
    source = Files(
        {
            **BASE,
            f"{overlay}/kustomization.yaml": kustomization,
            f"{overlay}/replicas.yaml": "kind: Deployment\nmetadata:\n  name: api\n",
            f"{overlay}/ops.yaml": "- op: replace\n  path: /spec/replicas\n  value: 3\n",
        }
    )
    change = render_change(find_manifest(source, API, TEMPLATES, PATCH), PATCH)
    assert change.files[f"{overlay}/kustomization.yaml"] == expected
    assert yaml.safe_load(expected)["patches"][-1] == {"path": "pitcrew-deployment-api.yaml"}


@pytest.mark.parametrize(
    "listed_as", ["patches:\n  - path: memory.yaml\n", "patchesStrategicMerge: [memory.yaml]\n"]
)
def test_the_allowlist_sees_the_object_as_the_overlay_makes_it(listed_as: str) -> None:
    from pitcrew.incidents.patches import check_patch, find_container

    overlay = "clusters/prod-eu/payments/api"
    base = {
        "base/api/kustomization.yaml": "resources:\n  - deployment.yaml\n",
        "base/api/deployment.yaml": deployment(namespace=None, memory="4Gi"),
    }
    source = Files(
        {
            **base,
            f"{overlay}/kustomization.yaml": "resources:\n  - ../../../../base/api\n" + listed_as,
            # This overlay runs api small: 256Mi, whatever the base says.
            f"{overlay}/memory.yaml": deployment(namespace=None, memory="256Mi"),
        }
    )
    container = {"name": "api", "resources": {"limits": {"memory": "3Gi"}}}
    three_gi = {**PATCH, "spec": {"template": {"spec": {"containers": [container]}}}}

    workload = find_manifest(source, API, TEMPLATES, three_gi).workload

    found = find_container(workload, "api")
    assert found is not None and found["resources"]["limits"]["memory"] == "256Mi"
    assert workload["metadata"]["name"] == "api" and workload["kind"] == "Deployment"
    assert check_patch(three_gi, workload)  # 256Mi -> 3Gi is 12x: refused
