"""Choosing and connecting to clusters (kubeconfig, Secrets Manager, EKS tokens), and the
kubernetes library's errors turned into pitcrew's. No network: STS URLs are only signed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import boto3
import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from pitcrew.config import ClusterConfig, EksCluster, parse_config_text
from pitcrew.errors import ConfigError, NotFoundError, ServiceError, TransientServiceError
from pitcrew.kube.api import (
    ClusterUnreachableError,
    ForbiddenError,
    selector_string,
    translate,
)
from pitcrew.kube.clusters import (
    EKS_ID_HEADER,
    cluster_for,
    connect,
    eks_configuration,
    eks_token,
    reset_eks_cache,
)
from pitcrew.kube.context import failing_containers, pod_trouble
from pitcrew.prometheus import parse_quantity

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAV\n"
    "-----END CERTIFICATE-----\n"
)


@pytest.fixture
def sts() -> Any:
    session = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=SECRET_KEY,
        region_name="eu-west-1",
    )
    return session.client("sts", region_name="eu-west-1")


@pytest.fixture(autouse=True)
def _fresh_eks_cache() -> Iterator[None]:
    reset_eks_cache()
    yield
    reset_eks_cache()


def decode_token(token: str) -> str:
    prefix, _, encoded = token.partition(".")
    assert prefix == "k8s-aws-v1"
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded  # base64url, no pad
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


# --- EKS ----------------------------------------------------------------------------------------


def test_eks_token_is_a_presigned_get_caller_identity_url_for_the_cluster(sts: Any) -> None:
    token = eks_token("prod-eu", "eu-west-1", sts=sts)

    url = urlsplit(decode_token(token))
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc, url.path) == ("https", "sts.eu-west-1.amazonaws.com", "/")
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith("AKIAIOSFODNN7EXAMPLE/")
    assert query["X-Amz-Credential"].endswith("/eu-west-1/sts/aws4_request")
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"].split(";") == ["host", EKS_ID_HEADER]
    assert len(query["X-Amz-Signature"]) == 64


def sigv4_query_signature(url: str, headers: dict[str, str], secret_key: str) -> str:
    """The SigV4 signature of a presigned GET ``url`` with these signed headers, computed
    from the specification (an empty payload), independently of botocore."""
    parts = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k != "X-Amz-Signature"]
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))
    signed = {"host": parts.netloc, **headers}
    canonical = "\n".join(
        [
            "GET",
            parts.path,
            query,
            *(f"{name}:{signed[name]}" for name in sorted(signed)),
            "",
            ";".join(sorted(signed)),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    values = dict(params)
    scope = values["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            values["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_signature_covers_the_cluster_name_header(sts: Any) -> None:
    url = decode_token(eks_token("prod-eu", "eu-west-1", sts=sts))
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]

    assert sigv4_query_signature(url, {EKS_ID_HEADER: "prod-eu"}, SECRET_KEY) == signature
    assert sigv4_query_signature(url, {EKS_ID_HEADER: "prod-us"}, SECRET_KEY) != signature


def test_the_sts_client_is_unchanged_for_other_calls(sts: Any) -> None:
    eks_token("prod-eu", "eu-west-1", sts=sts)
    eks_token("prod-eu", "eu-west-1", sts=sts)  # hooks registered once, not twice
    plain = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60)
    assert parse_qs(urlsplit(plain).query)["X-Amz-SignedHeaders"] == ["host"]


class FakeEks:
    """Stands in for the EKS client: answers DescribeCluster like the real API."""

    def __init__(self, **cluster: Any) -> None:
        self.cluster = cluster
        self.calls = 0

    def describe_cluster(self, *, name: str) -> dict[str, Any]:
        self.calls += 1
        return {"cluster": {"name": name, "status": "ACTIVE", **self.cluster}}


def test_eks_configuration_has_the_endpoint_the_ca_and_a_bearer_token(sts: Any) -> None:
    eks = FakeEks(
        endpoint="https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com",
        certificateAuthority={"data": base64.b64encode(CA_PEM.encode()).decode()},
    )

    configuration = eks_configuration("prod-eu", "eu-west-1", eks=eks, sts=sts)
    eks_configuration("prod-eu", "eu-west-1", eks=eks, sts=sts)

    assert configuration.host == "https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com"
    assert configuration.ca_cert_data == CA_PEM
    header = configuration.auth_settings()["BearerToken"]
    assert header["key"] == "authorization"
    assert str(header["value"]).startswith("Bearer k8s-aws-v1.")
    assert eks.calls == 1  # endpoint and CA described once per process


def test_eks_cluster_still_creating_is_a_config_error(sts: Any) -> None:
    with pytest.raises(ConfigError, match="has no endpoint yet \\(status CREATING\\)"):
        eks_configuration("new", "eu-west-1", eks=FakeEks(status="CREATING"), sts=sts)


def test_eks_cluster_that_does_not_exist_is_not_found(aws: None) -> None:
    cluster = ClusterConfig(eks=EksCluster(name="nowhere", region="eu-west-1"))
    with pytest.raises(NotFoundError, match="eks"):
        connect("prod", cluster)


def test_eks_token_through_the_shared_sts_client(aws: None) -> None:
    url = urlsplit(decode_token(eks_token("prod-eu", "eu-west-1")))
    query = parse_qs(url.query)
    assert url.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["X-Amz-Credential"][0].endswith("/eu-west-1/sts/aws4_request")
    assert len(query["X-Amz-Signature"][0]) == 64
    assert query["X-Amz-SignedHeaders"] == [f"host;{EKS_ID_HEADER}"]


# --- choosing and loading -------------------------------------------------------------------


def test_cluster_for_picks_by_name_then_a_lone_default() -> None:
    config = parse_config_text(
        "clusters: {default: {kubeconfig: /k/default}, prod-eu: {eks: {name: p, region: r}}}"
    )
    assert cluster_for("prod-eu", config) == ("prod-eu", config.clusters["prod-eu"])  # type: ignore[index]
    # Several clusters: one that is not configured is never read from another.
    assert cluster_for("staging", config) is None
    lone = parse_config_text("clusters: {default: {kubeconfig: /k/default}}")
    assert cluster_for("staging", lone) == ("default", lone.clusters["default"])  # type: ignore[index]
    only_eks = parse_config_text("clusters: {prod-eu: {eks: {name: p, region: r}}}")
    assert cluster_for("staging", only_eks) is None
    assert cluster_for("default", parse_config_text("")) is None


def test_kubeconfig_secret_that_is_not_a_kubeconfig_names_the_key() -> None:
    from pitcrew.config import Resolver

    resolver = Resolver(secret=lambda name: "just a token", register=lambda value: None)
    config = parse_config_text(
        "clusters: {prod: {kubeconfig_secret: secret:kube/prod}}", resolver=resolver
    )
    with pytest.raises(ConfigError, match=r"clusters\.prod\.kubeconfig_secret: the secret is not"):
        connect("prod", config.clusters["prod"])  # type: ignore[index]


def test_kubeconfig_context_that_does_not_exist_names_the_key(tmp_path: Any) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters: [{name: a, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: a, user: {token: t}}]\n"
        "contexts: [{name: a, context: {cluster: a, user: a}}]\n"
    )
    cluster = ClusterConfig(kubeconfig=str(path), context="missing")
    with pytest.raises(ConfigError, match=r"clusters\.dev\.kubeconfig: cannot use the kubeconfig"):
        connect("dev", cluster)
    client = connect("dev", ClusterConfig(kubeconfig=str(path)))
    assert client.configuration.host == "https://127.0.0.1:6443"
    client.close()


# --- the library's errors ------------------------------------------------------------------------


class FakeResponse:
    """What ApiException reads from an HTTP response."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(status, "")
        self.data = body
        self.headers: dict[str, str] = {}


def api_exception(status: int, message: str) -> ApiException:
    status_object = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": status,
    }
    body = json.dumps(status_object).encode()
    return ApiException(http_resp=FakeResponse(status, body))


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, ClusterUnreachableError, "rejected pitcrew's credentials (401 Unauthorized)"),
        (403, ForbiddenError, 'forbidden (403): pods "api-1" is forbidden: User'),
        (404, NotFoundError, 'not found: pods "api-1" is forbidden: User'),
        (429, TransientServiceError, "HTTP 429"),
        (503, TransientServiceError, "HTTP 503"),
        (422, ServiceError, "HTTP 422"),
    ],
)
def test_api_errors_become_pitcrew_errors(status: int, error: type, text: str) -> None:
    exc = api_exception(status, 'pods "api-1" is forbidden: User "x" cannot get resource')
    translated = translate(exc, "get Pod payments/api-1")
    assert type(translated) is error
    assert "get Pod payments/api-1" in str(translated) and text in str(translated)


class FakeConnection:
    host = "kube.example.internal"
    port = 6443


def test_connection_failures_say_why_in_plain_words() -> None:
    refused = NewConnectionError(FakeConnection(), "Failed to establish a new connection")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    wrapped = MaxRetryError(None, "/api/v1/pods", refused)  # type: ignore[arg-type]
    error = translate(wrapped, "get Pod a/b")
    assert isinstance(error, ClusterUnreachableError)
    assert "connection refused by the API server at kube.example.internal:6443" in str(error)

    dns = NameResolutionError("kube.example.internal", FakeConnection(), OSError("no name"))  # type: ignore[arg-type]
    error = translate(MaxRetryError(None, "/", dns), "get Pod a/b")  # type: ignore[arg-type]
    assert "cannot resolve the API server's host name kube.example.internal" in str(error)


# --- reading API objects -------------------------------------------------------------------


def test_selector_string_covers_labels_and_expressions() -> None:
    selector = {
        "matchLabels": {"app": "api"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["web", "api"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
        ],
    }
    assert selector_string(selector) == "app=api,tier in (web,api),!canary,team,env notin (dev)"
    assert selector_string({}) is None and selector_string(None) is None


def status_of(*containers: dict[str, Any], phase: str = "Running") -> dict[str, Any]:
    return {"status": {"phase": phase, "containerStatuses": list(containers)}}


def test_failing_containers_read_the_crashed_instance_when_it_restarted() -> None:
    crashed = {
        "name": "api",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        "restartCount": 3,
        "ready": False,
    }
    unready = {"name": "sidecar", "state": {"running": {}}, "ready": False, "restartCount": 0}
    pulling = {"name": "init", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    healthy = {"name": "proxy", "state": {"running": {}}, "ready": True, "restartCount": 0}
    pod = status_of(crashed, unready, pulling, healthy)
    assert failing_containers(pod) == [("api", True), ("sidecar", False)]
    assert pod_trouble(pod) > pod_trouble(status_of(healthy)) == 0
    assert pod_trouble(status_of(phase="Pending")) > 0


def test_quantities() -> None:
    assert parse_quantity("512Mi") == 512 * 2**20
    assert parse_quantity("500m") == 0.5
    assert parse_quantity("2") == 2.0
    assert parse_quantity("1G") == 1e9
    assert parse_quantity("1.5Gi") == 1.5 * 2**30
    assert parse_quantity("lots") is None
