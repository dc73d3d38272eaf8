"""Which cluster an alert is about, and an API client for it: from a kubeconfig file, from a
kubeconfig kept in Secrets Manager, or for EKS by name, with a bearer token presigned from
STS ``GetCallerIdentity`` exactly as ``aws-iam-authenticator`` and ``aws eks get-token`` make
it (so no kubeconfig and no ``aws`` CLI are needed in Lambda).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pitcrew.errors import ConfigError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, Configuration

    from pitcrew.config import ClusterConfig, Config

DEFAULT_CLUSTER = "default"
EKS_TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the format's name, not a secret
EKS_ID_HEADER = "x-k8s-aws-id"
EKS_URL_EXPIRY_S = 60  # what aws-iam-authenticator signs; EKS accepts the token for 15 min

Connect = Callable[[str, "ClusterConfig"], "ApiClient"]


def cluster_for(name: str, config: Config) -> tuple[str, ClusterConfig] | None:
    """The configured cluster called ``name``; else the ``default`` one when it is the only
    cluster configured; else None.

    One ``default`` cluster is a single-cluster setup whose Prometheus labels alerts with its
    own name for the cluster. With several clusters configured, an alert about one that is
    not is never read from another: a workload of the same name there would be the wrong
    evidence, and its fix would go to the wrong manifest.
    """
    clusters: Mapping[str, ClusterConfig] = config.clusters or {}
    if name in clusters:
        return name, clusters[name]
    if set(clusters) == {DEFAULT_CLUSTER}:
        return DEFAULT_CLUSTER, clusters[DEFAULT_CLUSTER]
    return None


def connect(name: str, cluster: ClusterConfig) -> ApiClient:
    """An ``ApiClient`` for the cluster configured as ``clusters.<name>``.

    Raises ``ConfigError`` (naming the key) when the kubeconfig cannot be read or used, and
    pitcrew's AWS errors when EKS cannot be described.
    """
    from kubernetes.client import ApiClient, Configuration

    if cluster.eks is not None:
        configuration = eks_configuration(cluster.eks.name, cluster.eks.region)
    else:
        configuration = Configuration()
        _load_kubeconfig(name, cluster, configuration)
    # One quick retry of a failed connect (a stale pooled connection); never of a read, so a
    # slow API server costs one timeout, not four.
    from urllib3.util.retry import Retry

    configuration.retries = Retry(total=1, connect=1, read=0, status=0, redirect=0)
    return ApiClient(configuration)


def _load_kubeconfig(name: str, cluster: ClusterConfig, configuration: Configuration) -> None:
    import yaml
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import load_kube_config, load_kube_config_from_dict

    if cluster.kubeconfig_secret is not None:
        key = f"clusters.{name}.kubeconfig_secret"
        text = cluster.kubeconfig_secret.get()  # ReferenceError_ (a ConfigError) names the key
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"{key}: the secret is not a YAML kubeconfig"]) from exc
        if not isinstance(document, dict):
            raise ConfigError([f"{key}: the secret is not a kubeconfig (a YAML mapping)"])
        load: Callable[..., None] = load_kube_config_from_dict
        source: Any = document
    else:
        key = f"clusters.{name}.kubeconfig"
        if not cluster.kubeconfig or not os.path.isfile(cluster.kubeconfig):
            raise ConfigError([f"{key}: file not found: {cluster.kubeconfig}"])
        load, source = load_kube_config, cluster.kubeconfig
    context = f" (context {cluster.context})" if cluster.context else ""
    try:
        load(
            source,
            context=cluster.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except FileNotFoundError as exc:
        raise ConfigError([f"{key}: file not found: {cluster.kubeconfig}"]) from exc
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError([f"{key}: cannot use the kubeconfig{context}: {exc}"]) from exc


# --- EKS --------------------------------------------------------------------------------------

_endpoints: dict[tuple[str, str], tuple[str, str]] = {}
_endpoints_lock = threading.Lock()


def eks_endpoint(cluster_name: str, region: str, *, eks: Any | None = None) -> tuple[str, str]:
    """The cluster's API endpoint and CA certificate (PEM), from ``eks:DescribeCluster``,
    asked once per process (neither changes for a cluster's life)."""
    from pitcrew.aws import aws_errors, client

    key = (cluster_name, region)
    with _endpoints_lock:
        found = _endpoints.get(key)
    if found is not None:
        return found
    with aws_errors("eks"):
        described = (eks or client("eks", region)).describe_cluster(name=cluster_name)["cluster"]
    endpoint = described.get("endpoint")
    ca_data = (described.get("certificateAuthority") or {}).get("data")
    if not endpoint or not ca_data:
        status = described.get("status", "unknown")
        raise ConfigError(
            [f"EKS cluster {cluster_name} in {region} has no endpoint yet (status {status})"]
        )
    try:
        ca_pem = base64.b64decode(ca_data, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [f"EKS cluster {cluster_name}: certificateAuthority.data is not a base64 PEM"]
        ) from exc
    found = (endpoint, ca_pem)
    with _endpoints_lock:
        _endpoints[key] = found
    return found


def reset_eks_cache() -> None:
    """Forget described EKS endpoints (tests; a cluster re-created under the same name)."""
    with _endpoints_lock:
        _endpoints.clear()


def eks_configuration(
    cluster_name: str, region: str, *, eks: Any | None = None, sts: Any | None = None
) -> Configuration:
    """A client configuration for an EKS cluster: its endpoint, its CA, an IAM bearer token."""
    from kubernetes.client import Configuration

    endpoint, ca_pem = eks_endpoint(cluster_name, region, eks=eks)
    return Configuration(
        host=endpoint,
        ca_cert_data=ca_pem,
        api_key={"BearerToken": eks_token(cluster_name, region, sts=sts)},
        api_key_prefix={"BearerToken": "Bearer"},
    )


def eks_token(cluster_name: str, region: str, *, sts: Any | None = None) -> str:
    """A bearer token for EKS: ``k8s-aws-v1.`` and the URL-safe base64 (unpadded) of an STS
    ``GetCallerIdentity`` URL presigned for 60 s with ``x-k8s-aws-id: <cluster>`` among its
    signed headers. The API server calls that URL to learn who pitcrew is."""
    from pitcrew.aws import aws_errors, client

    sts = sts or client("sts", region)
    _register_id_header(sts)
    with aws_errors("sts"):
        url = sts.generate_presigned_url(
            "get_caller_identity",
            Params={EKS_ID_HEADER: cluster_name},
            ExpiresIn=EKS_URL_EXPIRY_S,
            HttpMethod="GET",
        )
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return EKS_TOKEN_PREFIX + encoded


# Like awscli's `eks get-token`: the cluster name rides in the call's parameters (popped
# before validation) into the request context, and becomes a header just before signing. The
# hooks act only on calls that carry it, so the shared STS client is otherwise unchanged.


def _retrieve_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if EKS_ID_HEADER in params:
        context[EKS_ID_HEADER] = params.pop(EKS_ID_HEADER)


def _inject_cluster_id(request: Any, **_: Any) -> None:
    if EKS_ID_HEADER in request.context:
        request.headers[EKS_ID_HEADER] = request.context[EKS_ID_HEADER]


def _register_id_header(sts: Any) -> None:
    events = sts.meta.events
    events.register(
        "provide-client-params.sts.GetCallerIdentity",
        _retrieve_cluster_id,
        unique_id="pitcrew-eks-id-params",
    )
    events.register(
        "before-sign.sts.GetCallerIdentity",
        _inject_cluster_id,
        unique_id="pitcrew-eks-id-header",
    )
