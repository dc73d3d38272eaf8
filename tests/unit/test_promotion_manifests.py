"""The version bump in a GitOps folder: Kustomize images[].newTag first, else the workload
container running the app's image; the rest of each file kept as it was."""

from __future__ import annotations

import pytest

from pitcrew.promotions.manifests import ManifestNotFoundError, bump_version, split_image

KUSTOMIZATION = """\
# staging overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base   # shared
images:
  - name: ghcr.io/acme/payments-api
    newTag: v1.0.0
  - name: ghcr.io/acme/orders-api
    newTag: "v2.0.0"
"""

DEPLOYMENT = """\
apiVersion: v1
kind: Service
metadata: {name: payments-api}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api   # the API
spec:
  template:
    spec:
      containers:
        - name: sidecar
          image: envoyproxy/envoy:v1.30
        - name: app
          image: ghcr.io/acme/payments-api:v1.0.0
"""


def test_the_kustomize_image_tag_is_bumped_and_nothing_else_changes() -> None:
    bump = bump_version(
        {"envs/staging/kustomization.yaml": KUSTOMIZATION}, "envs/staging", "payments-api", "v1.1.0"
    )

    assert bump.path == "envs/staging/kustomization.yaml"
    assert bump.previous == "v1.0.0"
    assert bump.new == KUSTOMIZATION.replace("newTag: v1.0.0", "newTag: v1.1.0")


def test_the_deployment_image_is_bumped_when_there_is_no_kustomization() -> None:
    files = {"envs/prod/app.yaml": DEPLOYMENT, "envs/dev/app.yaml": DEPLOYMENT}

    bump = bump_version(files, "envs/prod", "payments-api", "v1.1.0")

    assert bump.path == "envs/prod/app.yaml"
    assert bump.previous == "v1.0.0"
    assert bump.new == DEPLOYMENT.replace("payments-api:v1.0.0", "payments-api:v1.1.0")


def test_a_configured_image_name_is_matched_exactly() -> None:
    files = {"envs/prod/app.yaml": DEPLOYMENT}

    with pytest.raises(ManifestNotFoundError, match=r"runs registry\.example/payments"):
        bump_version(files, "envs/prod", "payments-api", "v2", image="registry.example/payments")
    bump = bump_version(files, "envs/prod", "envoy", "v1.31", image="envoyproxy/envoy")
    assert "envoyproxy/envoy:v1.31" in bump.new and bump.previous == "v1.30"


def test_the_same_version_is_no_change() -> None:
    bump = bump_version({"k/kustomization.yaml": KUSTOMIZATION}, "k", "orders-api", "v2.0.0")

    assert not bump.changed
    assert bump.previous == "v2.0.0"


def test_an_app_that_no_file_runs_is_an_error_naming_the_folder() -> None:
    with pytest.raises(ManifestNotFoundError, match="in envs/qa runs"):
        bump_version({"envs/prod/app.yaml": DEPLOYMENT}, "envs/qa", "payments-api", "v2")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ghcr.io/acme/api:v1", ("ghcr.io/acme/api", "v1")),
        ("localhost:5000/api", ("localhost:5000/api", None)),
        ("api@sha256:abc", ("api", None)),
    ],
)
def test_split_image(reference: str, expected: tuple[str, str | None]) -> None:
    assert split_image(reference) == expected
