"""pitcrew's configuration: one YAML document, loaded once per cold start into a frozen typed
``Config`` and validated with problems that name the key path.

Where the document comes from, first match wins:

1. the ``source`` argument of ``load_config`` (a file path or ``ssm:/name``);
2. the ``PITCREW_CONFIG`` environment variable (``ssm:/pitcrew/config`` in AWS);
3. ``infra/local/pitcrew.yaml`` in the repository (the directory holding ``template.yaml``,
   searched upwards from the working directory, else the one this package sits in).

Every section is optional; an omitted section is ``None`` and its features are off. Strings
that are credentials, URLs or tokens are ``Value`` objects: a literal, or a reference ``env:NAME``,
``secret:NAME_OR_ARN[#json_key]`` (Secrets Manager) or ``ssm:/path`` (SSM, decrypted),
resolved only when ``Value.get()`` is called and then cached for the life of the process.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from string import Formatter
from types import MappingProxyType, UnionType
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from pitcrew.errors import ConfigError, ReferenceError_
from pitcrew.records import frozen

LOCAL_CONFIG = Path("infra/local/pitcrew.yaml")

# The domain events of the ``pitcrew`` bus (DESIGN.md), the names notifications may select.
DOMAIN_EVENTS: tuple[str, ...] = (
    "IncidentOpened",
    "IncidentDiagnosed",
    "IncidentResolved",
    "FixPullRequestOpened",
    "FixPullRequestMerged",
    "FixPullRequestFailed",
    "CostAnomalyDetected",
    "BudgetThresholdCrossed",
    "SecretRotated",
    "SecretRotationFailed",
    "PromotionStarted",
    "PromotionAwaitingApproval",
    "PromotionSucceeded",
    "PromotionFailed",
    "PromotionRolledBack",
    "EnvironmentDegraded",
)

# The dimensions Cost Explorer's GetCostAndUsage accepts in GroupBy (besides TAG and
# COST_CATEGORY, which take a name).
COST_EXPLORER_DIMENSIONS: tuple[str, ...] = (
    "SERVICE",
    "LINKED_ACCOUNT",
    "REGION",
    "AZ",
    "USAGE_TYPE",
    "INSTANCE_TYPE",
    "OPERATION",
    "PURCHASE_TYPE",
    "PLATFORM",
    "TENANCY",
    "RECORD_TYPE",
    "LEGAL_ENTITY_NAME",
    "INVOICING_ENTITY",
)

# How serious an event is, lowest first: a notification's ``severity`` is the lowest it sends.
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

# Placeholders a gitops manifest path may use; fix_pr fills them from the incident.
MANIFEST_PLACEHOLDERS = frozenset({"cluster", "namespace", "kind", "workload"})

_REFERENCE_PREFIXES = ("env:", "secret:", "ssm:")
_REFERENCE_HINT = "a reference (env:NAME, secret:NAME, ssm:/path)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:")


# --- references ------------------------------------------------------------------------------


def _register_for_redaction(value: str) -> None:
    from pitcrew.observability import register_secret

    register_secret(value)


class Resolver:
    """Turns ``env:`` / ``secret:`` / ``ssm:`` references into their values, each fetched once.

    The three lookups and the redaction hook are injectable (tests pass plain functions); by
    default ``env`` reads ``os.environ`` and ``ssm`` / ``secret`` use Powertools Parameters
    with clients from ``pitcrew.aws.client``, built on first use.
    """

    def __init__(
        self,
        *,
        env: Callable[[str], str | None] | None = None,
        ssm: Callable[[str], str] | None = None,
        secret: Callable[[str], str] | None = None,
        register: Callable[[str], None] | None = None,
    ) -> None:
        self._env = env if env is not None else os.environ.get
        self._ssm = ssm if ssm is not None else self._ssm_from_aws
        self._secret = secret if secret is not None else self._secret_from_aws
        self._register = register if register is not None else _register_for_redaction
        self._cache: dict[str, str] = {}
        self._registered: set[str] = set()
        self._providers: dict[tuple[str, str | None], Any] = {}

    def resolve(self, key: str, text: str, *, secret: bool = False, url: bool = False) -> str:
        """The value of ``text`` (a literal or a reference) for the key path ``key``.

        Secrets (``secret`` fields and everything from Secrets Manager) are registered for log
        redaction. Failures raise ``ReferenceError_`` naming the key, never the value.
        """
        if not is_reference(text):
            value = text
        else:
            cached = self._cache.get(text)
            value = cached if cached is not None else self._fetch(key, text)
            self._cache[text] = value
            if url and _http_url_problem(value):
                raise ReferenceError_(key, text, "the value is not an http(s) URL")
        if (secret or text.startswith("secret:")) and value not in self._registered:
            self._register(value)
            self._registered.add(value)
        return value

    def _fetch(self, key: str, reference: str) -> str:
        kind, _, target = reference.partition(":")
        problem = reference_problem(reference)
        if problem:
            raise ReferenceError_(key, reference, problem)
        try:
            if kind == "env":
                value = self._env(target)
                if not value:
                    state = "is not set" if value is None else "is empty"
                    raise ReferenceError_(key, reference, f"environment variable {target} {state}")
                return value
            if kind == "ssm":
                return self._ssm(target)
            name, _, json_key = target.partition("#")
            text = self._secret(name)
            return _pick_json_key(text, json_key) if json_key else text
        except ReferenceError_:
            raise
        except Exception as exc:  # whatever the lookup raised, the caller needs the key named
            raise ReferenceError_(key, reference, str(exc) or type(exc).__name__) from exc

    def _provider(self, service: str, region: str | None) -> Any:
        provider = self._providers.get((service, region))
        if provider is None:
            from aws_lambda_powertools.utilities import parameters

            from pitcrew.aws import client

            factory = parameters.SSMProvider if service == "ssm" else parameters.SecretsProvider
            provider = factory(boto3_client=client(service, region))
            self._providers[(service, region)] = provider
        return provider

    def _ssm_from_aws(self, name: str) -> str:
        return _text(self._provider("ssm", None).get(name, decrypt=True))

    def _secret_from_aws(self, name: str) -> str:
        # A secret given by ARN lives in the ARN's region, which may not be ours.
        region = (name.split(":")[3] or None) if name.startswith("arn:") else None
        return _text(self._provider("secretsmanager", region).get(name))


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("the value is not text (a binary secret has no SecretString)")


def _pick_json_key(text: str, json_key: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ValueError(f"the secret is not a JSON object, so #{json_key} cannot be picked")
    if json_key not in document:
        keys = ", ".join(sorted(document)) or "none"
        raise ValueError(f"the secret has no key {json_key!r} (its keys: {keys})")
    picked = document[json_key]
    return picked if isinstance(picked, str) else json.dumps(picked)


def is_reference(text: str) -> bool:
    """True when ``text`` is an ``env:`` / ``secret:`` / ``ssm:`` reference, not a literal."""
    return text.startswith(_REFERENCE_PREFIXES)


def reference_problem(reference: str) -> str | None:
    """What is wrong with a reference's syntax, or None. Checks offline, resolves nothing."""
    kind, _, target = reference.partition(":")
    name, has_key, json_key = target.partition("#")
    if kind == "env" and not _ENV_NAME.fullmatch(target):
        expected = "env: needs an environment variable name (e.g. env:API_TOKEN)"
    elif kind == "ssm" and not (target.startswith("/") and len(target) > 1):
        expected = "ssm: needs a parameter path starting with '/' (e.g. ssm:/app/key)"
    elif kind == "secret" and not name:
        expected = "secret: needs a secret name or ARN (e.g. secret:app/token)"
    elif kind == "secret" and has_key and not json_key:
        expected = "secret:NAME#KEY needs a key after '#'"
    else:
        return None
    return f"{expected}, got {reference!r}"


_default_resolver: Resolver | None = None


def default_resolver() -> Resolver:
    """The process-wide resolver every ``Value`` without its own uses (built on first use)."""
    global _default_resolver  # noqa: PLW0603 - one cache per cold start is the point
    if _default_resolver is None:
        _default_resolver = Resolver()
    return _default_resolver


class Value:
    """A configuration string that may be a literal or a reference, resolved by ``get()``.

    ``repr`` and ``str`` show the reference, or ``'***'`` for a literal secret, never a
    resolved value, so a ``Config`` can be logged whole.
    """

    __slots__ = ("_resolver", "_text", "key", "secret", "url")

    def __init__(
        self,
        text: str,
        key: str,
        *,
        secret: bool = False,
        url: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        self._text = text
        self.key = key
        self.secret = secret
        self.url = url
        self._resolver = resolver

    @property
    def reference(self) -> str | None:
        """The reference (``env:...``, ``secret:...``, ``ssm:...``), or None for a literal."""
        return self._text if is_reference(self._text) else None

    def get(self) -> str:
        """The value: the literal, or the reference resolved (once per process)."""
        resolver = self._resolver or default_resolver()
        return resolver.resolve(self.key, self._text, secret=self.secret, url=self.url)

    def __str__(self) -> str:
        if self.secret and not is_reference(self._text):
            return "***"
        return self._text

    def __repr__(self) -> str:
        return f"Value({str(self)!r})"


# --- the typed configuration -----------------------------------------------------------------

_OPENAI_URL = Value("https://api.openai.com/v1", "llm.base_url", url=True)
_GITHUB_URL = Value("https://api.github.com", "github.api_url", url=True)
_SLACK_API_URL = Value("https://slack.com/api", "notifications[].api_url", url=True)


@frozen
class ApiConfig:
    """The operator API. Without ``token`` only IAM auth (in AWS) reaches it."""

    token: Value | None = None


@frozen
class AlertmanagerConfig:
    """The Alertmanager webhook: the token it sends (bearer or basic) and the body limit."""

    token: Value
    max_body_bytes: int = 1_048_576


@frozen
class EksCluster:
    name: str
    region: str


@frozen
class ClusterConfig:
    """How to reach one cluster: a kubeconfig file (``~`` expanded) or a kubeconfig kept in
    Secrets Manager (``kubeconfig_secret``, the YAML text), each with an optional context; or
    EKS by name and region, with a token presigned from the function's IAM role."""

    kubeconfig: str | None = None
    context: str | None = None
    eks: EksCluster | None = None
    kubeconfig_secret: Value | None = None


@frozen
class PrometheusConfig:
    url: Value


@frozen
class LlmConfig:
    """The LLM behind diagnosis; ``provider: none`` means rule-based analyzers only.

    ``retries`` is how many times a call is retried after a 429, a 5xx or a timeout (so at
    most ``retries + 1`` attempts); ``cache_ttl_s`` is how long an answer is reused for the
    same failure (0: never cached); ``region`` is Bedrock's (default: the function's).
    """

    provider: Literal["none", "openai", "bedrock"] = "none"
    base_url: Value = _OPENAI_URL
    model: str | None = None
    api_key: Value | None = None
    max_prompt_tokens: int = 4000
    timeout_s: float = 30.0
    max_completion_tokens: int = 1024
    retries: int = 2
    cache_ttl_s: int = 86400
    region: str | None = None


@frozen
class GithubApp:
    app_id: int
    private_key: Value
    installation_id: int


@frozen
class GithubConfig:
    """GitHub access: exactly one of ``token`` and ``app``."""

    api_url: Value = _GITHUB_URL
    token: Value | None = None
    app: GithubApp | None = None
    webhook_secret: Value | None = None


@frozen
class GitopsConfig:
    """The GitOps repository fixes and promotions go to. ``max_fix_attempts`` is per workload
    per 24 h; ``safe_mode`` comments on a tracking issue instead of opening a PR."""

    repo: str
    branch: str = "main"
    manifest_paths: tuple[str, ...] = (
        "apps/{namespace}/{workload}.yaml",
        "deploy/{workload}/deployment.yaml",
    )
    safe_mode: bool = True
    max_fix_attempts: int = 3


@frozen
class AnomalyConfig:
    """A day is an anomaly when it exceeds its baseline by both ``min_delta_usd`` and
    ``min_ratio`` times, and by ``min_score`` robust deviations (MAD) of its group's noise.
    AWS Cost Anomaly Detection, when a monitor exists, is asked every ``aws_every_days``
    (each ``GetAnomalies`` request costs $0.01; every other day keeps a run at two requests
    at most, and AWS itself reports an anomaly a day or so after it starts)."""

    min_delta_usd: float = 20.0
    min_ratio: float = 1.5
    min_score: float = 3.5
    aws_every_days: int = 2


# Cost Explorer metrics GetCostAndUsage accepts.
COST_METRICS: tuple[str, ...] = (
    "UnblendedCost",
    "BlendedCost",
    "AmortizedCost",
    "NetUnblendedCost",
    "NetAmortizedCost",
)


_AZURE_LOGIN_URL = Value(
    "https://login.microsoftonline.com", "costs.providers.azure.login_url", url=True
)
_AZURE_MANAGEMENT_URL = Value(
    "https://management.azure.com", "costs.providers.azure.management_url", url=True
)
_BIGQUERY_URL = Value("https://bigquery.googleapis.com", "costs.providers.gcp.api_url", url=True)
_GOOGLE_TOKEN_URL = Value(
    "https://oauth2.googleapis.com/token", "costs.providers.gcp.token_url", url=True
)


@frozen
class AzureCosts:
    """Azure Cost Management Query API for ``scope`` (``/subscriptions/<id>``, a resource
    group or a billing account), with an app registration's client credentials."""

    tenant_id: str
    client_id: str
    client_secret: Value
    scope: str
    login_url: Value = _AZURE_LOGIN_URL
    management_url: Value = _AZURE_MANAGEMENT_URL


@frozen
class GcpCosts:
    """A BigQuery billing export table, queried with jobs.query in ``project``; credentials
    are a service-account JSON key, or an OAuth2 ``access_token``."""

    project: str
    dataset: str
    table: str
    credentials: Value | None = None
    access_token: Value | None = None
    api_url: Value = _BIGQUERY_URL
    token_url: Value = _GOOGLE_TOKEN_URL


@frozen
class CostProviders:
    """Which clouds' costs are tracked: AWS (Cost Explorer) unless ``aws: false``."""

    aws: bool = True
    azure: AzureCosts | None = None
    gcp: GcpCosts | None = None


@frozen
class CostsConfig:
    """Cost tracking. ``budgets`` maps a name to USD per month: ``monthly_total`` is the whole
    account; any other name is a value of the first ``group_by`` key (e.g. a service).
    ``backfill_days`` is the history the first run fetches (at most 13 months);
    ``settle_days`` the recent days refetched on every run because they still change;
    ``forecast_refresh_days`` how often Cost Explorer's month-end forecast is requested."""

    group_by: tuple[str, ...] = ("SERVICE",)
    budgets: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    anomaly: AnomalyConfig = AnomalyConfig()
    metric: str = "UnblendedCost"
    backfill_days: int = 90
    settle_days: int = 3
    forecast_refresh_days: int = 7
    providers: CostProviders = CostProviders()

    def group_by_definitions(self) -> list[dict[str, str]]:
        """``group_by`` as Cost Explorer ``GroupBy`` entries."""
        definitions = []
        for key in self.group_by:
            kind, sep, name = key.partition(":")
            if sep:
                definitions.append({"Type": kind, "Key": name})
            else:
                definitions.append({"Type": "DIMENSION", "Key": key})
        return definitions


@frozen
class EnvironmentCheck:
    """A verification of a promoted version: ``http`` (``url`` answers ``expect_status``,
    its body containing ``contains`` when given) or ``prometheus`` (the first value of
    ``query`` at most ``max`` and at least ``min``). ``${app}``, ``${version}``,
    ``${environment}`` and ``${namespace}`` in ``url`` and ``query`` are filled in."""

    type: Literal["http", "prometheus"]
    name: str | None = None
    url: str | None = None
    expect_status: int = 200
    contains: str | None = None
    query: str | None = None
    max: float | None = None
    min: float | None = None


@frozen
class ArgoCdApplication:
    """The Argo CD ``Application`` that deploys an environment's apps (``application``,
    default: named like the app) in ``namespace``."""

    namespace: str = "argocd"
    application: str | None = None


@frozen
class FluxKustomization:
    """The Flux ``Kustomization`` that applies an environment (``kustomization``, default:
    named like the app) in ``namespace``."""

    namespace: str = "flux-system"
    kustomization: str | None = None


@frozen
class EnvironmentConfig:
    """One promotion stage. ``auto_promote``: pitcrew merges the version bump itself (else it
    waits for a human to merge it); ``approval: required`` makes promotion into this
    environment wait for one. ``timeout_minutes`` bounds waiting for health, polled every
    ``poll_seconds``; ``checks`` verify the version once healthy. ``images`` maps an app to
    its image name in the manifests (default: an image whose last path segment is the app).
    ``cluster``/``namespace`` say where the app runs: its incidents, and, with a cluster,
    "healthy" also means its Deployment rolled out the version and its Argo CD Application
    or Flux Kustomization (``argocd``/``flux``; by default one named like the app, if any)
    is synced and healthy. ``degraded_after`` consecutive failed health checks publish
    ``EnvironmentDegraded``."""

    name: str
    path: str
    health_url: Value
    auto_promote: bool = False
    approval: Literal["required", "none"] = "none"
    timeout_minutes: float = 10.0
    poll_seconds: int = 15
    approval_timeout_minutes: float = 1440.0
    merge_timeout_minutes: float = 1440.0
    checks: tuple[EnvironmentCheck, ...] = ()
    images: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cluster: str | None = None
    namespace: str | None = None
    degraded_after: int = 3
    argocd: ArgoCdApplication | None = None
    flux: FluxKustomization | None = None


@frozen
class VaultAuth:
    """``aws_iam`` logs in with the function's IAM role as Vault ``role``; ``token`` uses one."""

    method: Literal["aws_iam", "token"]
    role: str | None = None
    token: Value | None = None


@frozen
class VaultRotation:
    """One KV v2 secret ``rotate_vault`` renews: ``key`` of its data gets a new random value
    of ``length`` characters once the current version is ``every_days`` old."""

    path: str
    every_days: int = 30
    length: int = 32
    key: str = "value"


@frozen
class VaultConfig:
    url: Value
    auth: VaultAuth
    kv_mount: str = "secret"
    rotate: tuple[VaultRotation, ...] = ()


@frozen
class PasswordPolicy:
    """Secrets Manager ``GetRandomPassword`` options: the defaults of the ``password``, ``http``
    and ``postgres`` rotation strategies (a secret's ``pitcrew:*`` tags override each one)."""

    length: int = 32
    exclude_characters: str = "\"'\\/@:`"
    exclude_punctuation: bool = False
    exclude_numbers: bool = False
    exclude_uppercase: bool = False
    exclude_lowercase: bool = False
    include_space: bool = False
    require_each_included_type: bool = True


@frozen
class RotationEndpoint:
    """A service the ``http`` rotation strategy calls: ``set_url`` receives the new value in
    setSecret, ``test_url`` checks it in testSecret (POST, JSON; ``token`` as a bearer)."""

    set_url: Value
    test_url: Value
    token: Value | None = None
    timeout_s: float = 10.0


@frozen
class PostgresRotation:
    """How the ``postgres`` strategy reaches its servers. ``tls``: ``prefer`` tries TLS, then
    a plain connection (as AWS's rotation templates do); ``require`` never connects without
    TLS. ``ca_bundle``: the PEM certificates TLS verifies the server against (RDS's
    ``global-bundle.pem``, usually an ``ssm:`` reference), instead of the system's."""

    tls: Literal["prefer", "require"] = "prefer"
    ca_bundle: Value | None = None


@frozen
class RotationConfig:
    """Secrets Manager rotation (``rotate_secret``): the password policy, the ``http``
    endpoints, by name (a secret's ``pitcrew:endpoint`` tag picks one), and how the
    ``postgres`` strategy connects."""

    password: PasswordPolicy = PasswordPolicy()
    endpoints: Mapping[str, RotationEndpoint] = field(default_factory=lambda: MappingProxyType({}))
    postgres: PostgresRotation = PostgresRotation()


@frozen
class NotificationConfig:
    """Where to send which domain events (all of them when ``events`` is not given).

    The optional filters narrow that further: ``severity`` is the lowest severity sent
    (``info`` < ``warning`` < ``critical``); ``environment`` and ``namespace`` list the names
    whose events are sent, and an event that names no environment (or namespace) does not
    pass a filter on it. A Slack bot (``token`` + ``channel``) posts to ``api_url``.
    """

    type: Literal["slack", "discord", "teams", "email"]
    webhook_url: Value | None = None
    token: Value | None = None
    channel: str | None = None
    api_url: Value = _SLACK_API_URL
    sns_topic_arn: Value | None = None
    events: tuple[str, ...] = DOMAIN_EVENTS
    severity: Literal["info", "warning", "critical"] | None = None
    environment: tuple[str, ...] | None = None
    namespace: tuple[str, ...] | None = None


@frozen
class Config:
    """The whole configuration; a section that was not given is ``None``."""

    api: ApiConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    clusters: Mapping[str, ClusterConfig] | None = None
    prometheus: PrometheusConfig | None = None
    llm: LlmConfig | None = None
    github: GithubConfig | None = None
    gitops: GitopsConfig | None = None
    costs: CostsConfig | None = None
    environments: tuple[EnvironmentConfig, ...] | None = None
    vault: VaultConfig | None = None
    notifications: tuple[NotificationConfig, ...] | None = None
    rotation: RotationConfig | None = None
    source: str | None = field(default=None, compare=False)


# --- validation: small checks composed per section -------------------------------------------
#
# A check takes (raw value, key path, context) and returns the parsed value. A leaf check
# raises _Invalid with what it expected; a section check records its own problems in the
# context, so one pass collects every problem in the document.


class _Invalid(Exception):
    """A value is not what its key expects; the message says what was expected."""


class _Context:
    """One validation run: the problems found so far, and the resolver to check against."""

    def __init__(self, resolver: Resolver | None) -> None:
        self.problems: list[str] = []
        self.resolver = resolver

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)


_Check = Callable[[Any, str, _Context], Any]
_Rule = Callable[[dict[str, Any], str, _Context], None]


@frozen
class _Field:
    name: str
    check: _Check
    required: bool = False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_KINDS: tuple[tuple[type | UnionType, str], ...] = (
    (bool, "true or false"),
    (str, "a string"),
    (int | float, "a number"),
    (dict, "a mapping"),
    (list, "a list"),
)


def _describe(value: object, *, secret: bool = False) -> str:
    """How a problem shows the value it got: scalars as written, anything else (and every
    secret) by its kind only."""
    if value is None:
        return "null"
    if isinstance(value, str) and not value.strip():
        return "an empty string"
    if not secret and isinstance(value, str | int | float):
        return str(value).lower() if isinstance(value, bool) else repr(value)
    return next((kind for cls, kind in _KINDS if isinstance(value, cls)), type(value).__name__)


def _did_you_mean(word: object, choices: Any) -> str:
    import difflib  # only when there is a problem to explain: it is slow to import

    close = difflib.get_close_matches(word, list(choices), n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read(raw: Any, path: str, ctx: _Context, fields: tuple[_Field, ...]) -> dict[str, Any] | None:
    """The given keys of a mapping, checked; unknown and missing keys recorded as problems.

    A key given as null counts as not given. A key whose check failed maps to None, so rules
    can tell "given but wrong" (already reported) from "missing".
    """
    if not isinstance(raw, dict):
        ctx.problem(path, f"expected a mapping, got {_describe(raw)}")
        return None
    names = [f.name for f in fields]
    for key in raw:
        if key not in names:
            ctx.problem(path, f"unknown key {key!r}{_did_you_mean(key, names)}")
    values: dict[str, Any] = {}
    for f in fields:
        if raw.get(f.name) is None:
            if f.required:
                ctx.problem(path, f"missing required key {f.name!r}")
            continue
        try:
            values[f.name] = f.check(raw[f.name], _join(path, f.name), ctx)
        except _Invalid as exc:
            ctx.problem(_join(path, f.name), str(exc))
            values[f.name] = None
    return values


def _section(cls: type, *fields: _Field, rule: _Rule | None = None) -> _Check:
    """A check for a mapping that becomes ``cls``; defaults come from the dataclass."""

    def check(raw: Any, path: str, ctx: _Context) -> Any:
        values = _read(raw, path, ctx, fields)
        if values is None:
            return None
        if rule is not None:
            rule(values, path, ctx)
        if any(f.required and f.name not in values for f in fields):
            return None
        return cls(**values)

    return check


def _list_of(item: _Check) -> _Check:
    def check(raw: Any, path: str, ctx: _Context) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise _Invalid(f"expected a list, got {_describe(raw)}")
        items = []
        for index, element in enumerate(raw):
            item_path = f"{path}[{index}]"
            try:
                items.append(item(element, item_path, ctx))
            except _Invalid as exc:
                ctx.problem(item_path, str(exc))
                items.append(None)
        return tuple(items)

    return check


def _mapping_of(item: _Check) -> _Check:
    def check(raw: Any, path: str, ctx: _Context) -> Mapping[str, Any]:
        if not isinstance(raw, dict):
            raise _Invalid(f"expected a mapping, got {_describe(raw)}")
        items = {}
        for name, element in raw.items():
            item_path = _join(path, str(name))
            if not isinstance(name, str):
                ctx.problem(item_path, f"expected a name (a string), got {_describe(name)}")
                continue
            try:
                items[name] = item(element, item_path, ctx)
            except _Invalid as exc:
                ctx.problem(item_path, str(exc))
        return MappingProxyType(items)

    return check


def _string(raw: Any, path: str, ctx: _Context) -> str:
    if not isinstance(raw, str):
        raise _Invalid(f"expected a string, got {_describe(raw)}")
    if not raw.strip():
        raise _Invalid("expected a non-empty string")
    return raw


def _path(raw: Any, path: str, ctx: _Context) -> str:
    return os.path.expanduser(_string(raw, path, ctx))


def _integer(minimum: int) -> _Check:
    def check(raw: Any, path: str, ctx: _Context) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _Invalid(f"expected an integer, got {_describe(raw)}")
        if raw < minimum:
            raise _Invalid(f"expected an integer >= {minimum}, got {raw}")
        return raw

    return check


def _number(minimum: float, *, inclusive: bool = True) -> _Check:
    def check(raw: Any, path: str, ctx: _Context) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Invalid(f"expected a number, got {_describe(raw)}")
        if raw < minimum or (raw == minimum and not inclusive):
            raise _Invalid(f"expected a number {'>=' if inclusive else '>'} {minimum:g}, got {raw}")
        return float(raw)

    return check


def _boolean(raw: Any, path: str, ctx: _Context) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid(f"expected true or false, got {_describe(raw)}")
    return raw


def _choice(*options: str) -> _Check:
    def check(raw: Any, path: str, ctx: _Context) -> str:
        if raw not in options:
            raise _Invalid(
                f"expected one of {', '.join(options)}, got {_describe(raw)}"
                + _did_you_mean(raw, options)
            )
        return str(raw)

    return check


def _http_url_problem(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "expected an http(s) URL"
    return None


def _sns_arn_problem(text: str) -> str | None:
    return None if _SNS_ARN.match(text) else "expected an SNS topic ARN (arn:aws:sns:...)"


def _value(*, secret: bool = False, url: bool = False) -> _Check:
    """A ``Value``: a literal (checked as a URL when ``url``) or a reference (syntax only)."""
    what = "an http(s) URL" if url else "a string"

    def check(raw: Any, path: str, ctx: _Context) -> Value:
        if not isinstance(raw, str) or not raw.strip():
            got = _describe(raw, secret=secret)
            raise _Invalid(f"expected {what} or {_REFERENCE_HINT}, got {got}")
        problem = reference_problem(raw) if is_reference(raw) else None
        if url and problem is None and not is_reference(raw):
            problem = _http_url_problem(raw)
            if problem and not secret:
                problem += f", got {raw!r}"
        if problem:
            raise _Invalid(problem)
        return Value(raw, path, secret=secret, url=url, resolver=ctx.resolver)

    return check


def _sns_topic_arn(raw: Any, path: str, ctx: _Context) -> Value:
    value = _value()(raw, path, ctx)
    problem = None if value.reference else _sns_arn_problem(raw)
    if problem:
        raise _Invalid(f"{problem}, got {raw!r}")
    return value


def _repo(raw: Any, path: str, ctx: _Context) -> str:
    text = _string(raw, path, ctx)
    if not _REPO.fullmatch(text):
        raise _Invalid(f"expected owner/name, got {text!r}")
    return text


def _manifest_path(raw: Any, path: str, ctx: _Context) -> str:
    text = _string(raw, path, ctx)
    try:
        names = {name for _, name, _, _ in Formatter().parse(text) if name}
    except ValueError as exc:
        raise _Invalid(f"bad placeholder in {text!r}: {exc}") from exc
    unknown = sorted(names - MANIFEST_PLACEHOLDERS)
    if unknown:
        known = ", ".join(f"{{{n}}}" for n in sorted(MANIFEST_PLACEHOLDERS))
        raise _Invalid(f"unknown placeholder {{{unknown[0]}}} (known: {known})")
    return text


def _event(raw: Any, path: str, ctx: _Context) -> str:
    if raw not in DOMAIN_EVENTS:
        raise _Invalid(f"unknown event {_describe(raw)}{_did_you_mean(raw, DOMAIN_EVENTS)}")
    return str(raw)


def _group_by_key(raw: Any, path: str, ctx: _Context) -> str:
    key = _string(raw, path, ctx)
    kind, sep, name = key.partition(":")
    if sep and kind in ("TAG", "COST_CATEGORY"):
        if not name:
            raise _Invalid(f"{kind}: needs a name, e.g. {kind}:team")
        return key
    if key in COST_EXPLORER_DIMENSIONS:
        return key
    raise _Invalid(
        "expected SERVICE, another Cost Explorer dimension, TAG:name or COST_CATEGORY:name, "
        f"got {key!r}{_did_you_mean(key, COST_EXPLORER_DIMENSIONS)}"
    )


def _group_by(raw: Any, path: str, ctx: _Context) -> tuple[str, ...]:
    keys: tuple[str, ...] = _list_of(_group_by_key)(raw, path, ctx)
    if len(keys) > 2:
        raise _Invalid(f"Cost Explorer groups by at most two keys, got {len(keys)}")
    if len(set(keys)) < len(keys):
        raise _Invalid("the same key is listed twice")
    return keys


def _integer_between(minimum: int, maximum: int) -> _Check:
    at_least = _integer(minimum)

    def check(raw: Any, path: str, ctx: _Context) -> int:
        value: int = at_least(raw, path, ctx)
        if value > maximum:
            raise _Invalid(f"expected at most {maximum}, got {value}")
        return value

    return check


_BIGQUERY_NAME = re.compile(r"[A-Za-z0-9_]{1,1024}")


def _bigquery_name(raw: Any, path: str, ctx: _Context) -> str:
    # Interpolated into a query (BigQuery cannot bind table names): letters, digits, _ only.
    name = _string(raw, path, ctx)
    if not _BIGQUERY_NAME.fullmatch(name):
        raise _Invalid(f"expected a BigQuery name (letters, digits and _), got {name!r}")
    return name


def _azure_scope(raw: Any, path: str, ctx: _Context) -> str:
    scope = _string(raw, path, ctx)
    if not scope.startswith("/") or " " in scope:
        raise _Invalid(f"expected a scope path such as /subscriptions/<id>, got {scope!r}")
    return scope.rstrip("/")


def _gcp_costs_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    _exactly_one(values, path, ctx, "credentials", "access_token")


def _unique_names(check: _Check, what: str) -> _Check:
    def unique(raw: Any, path: str, ctx: _Context) -> tuple[Any, ...]:
        items: tuple[Any, ...] = check(raw, path, ctx)
        seen: set[str] = set()
        for index, item in enumerate(items):
            name = getattr(item, what, None)
            if name in seen:
                ctx.problem(f"{path}[{index}].{what}", f"{name!r} is listed twice")
            if name is not None:
                seen.add(name)
        return items

    return unique


def _exactly_one(values: dict[str, Any], path: str, ctx: _Context, a: str, b: str) -> None:
    if a in values and b in values:
        ctx.problem(path, f"give either {a} or {b}, not both")
    elif a not in values and b not in values:
        ctx.problem(path, f"missing {a} or {b} (one of them is required)")


def _cluster_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    given = [key for key in ("kubeconfig", "kubeconfig_secret", "eks") if key in values]
    if not given:
        ctx.problem(path, "missing kubeconfig, kubeconfig_secret or eks (one is required)")
    elif len(given) > 1:
        ctx.problem(path, f"give only one of {' and '.join(given)}")
    if "context" in values and "eks" in values:
        ctx.problem(path, "context goes with kubeconfig or kubeconfig_secret, not with eks")


def _llm_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    provider = values.get("provider")
    if provider in ("openai", "bedrock") and "model" not in values:
        ctx.problem(path, f"missing required key 'model' (provider {provider} needs one)")


def _github_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    _exactly_one(values, path, ctx, "token", "app")


def _vault_auth_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    method = values.get("method")
    if method is None:
        return  # missing or invalid: already reported
    needed, unused = ("role", "token") if method == "aws_iam" else ("token", "role")
    if needed not in values:
        ctx.problem(path, f"missing required key {needed!r} (method {method} needs it)")
    if unused in values:
        ctx.problem(path, f"{unused} is not used by method {method}")


_NOTIFICATION_KEYS = {
    "slack": ("webhook_url", "token", "channel", "api_url"),
    "discord": ("webhook_url",),
    "teams": ("webhook_url",),
    "email": ("sns_topic_arn",),
}


def _notification_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    kind = values.get("type")
    if kind not in _NOTIFICATION_KEYS:
        return  # missing or invalid: already reported
    for key in ("webhook_url", "token", "channel", "api_url", "sns_topic_arn"):
        if key in values and key not in _NOTIFICATION_KEYS[kind]:
            ctx.problem(path, f"{key} is not used by type {kind}")
    if kind == "slack":
        if "webhook_url" in values and "token" in values:
            ctx.problem(path, "give either webhook_url or token + channel, not both")
        elif "token" in values and "channel" not in values:
            ctx.problem(path, "missing required key 'channel' (a slack token needs one)")
        elif "webhook_url" not in values and "token" not in values:
            ctx.problem(path, "missing webhook_url (or token + channel)")
        elif "api_url" in values and "token" not in values:
            ctx.problem(path, "api_url goes with token + channel, not with webhook_url")
    elif (needed := _NOTIFICATION_KEYS[kind][0]) not in values:
        ctx.problem(path, f"missing required key {needed!r}")


def _names(raw: Any, path: str, ctx: _Context) -> tuple[str, ...]:
    """One name or a non-empty list of names (a notification filter)."""
    if isinstance(raw, str):
        return (_string(raw, path, ctx),)
    names: tuple[str | None, ...] = _list_of(_string)(raw, path, ctx)
    if not names:
        raise _Invalid("expected a name or a non-empty list of names (an empty one matches none)")
    return tuple(name for name in names if name is not None)


_CLUSTER = _section(
    ClusterConfig,
    _Field("kubeconfig", _path),
    _Field("kubeconfig_secret", _value(secret=True)),
    _Field("context", _string),
    _Field(
        "eks",
        _section(
            EksCluster,
            _Field("name", _string, required=True),
            _Field("region", _string, required=True),
        ),
    ),
    rule=_cluster_rule,
)


def _check_rule(values: dict[str, Any], path: str, ctx: _Context) -> None:
    kind = values.get("type")
    own = {"http": ("url", "expect_status", "contains"), "prometheus": ("query", "max", "min")}
    if kind not in own:
        return  # missing or invalid: already reported
    for key in (*own["http"], *own["prometheus"]):
        if key in values and key not in own[kind]:
            ctx.problem(path, f"{key} is not used by type {kind}")
    if kind == "http" and "url" not in values:
        ctx.problem(path, "missing required key 'url' (type http needs one)")
    if kind == "prometheus":
        if "query" not in values:
            ctx.problem(path, "missing required key 'query' (type prometheus needs one)")
        if "max" not in values and "min" not in values:
            ctx.problem(path, "missing max or min (a prometheus check needs a threshold)")


def _check_url(raw: Any, path: str, ctx: _Context) -> str:
    text = _string(raw, path, ctx)
    problem = _http_url_problem(text.replace("${", "").replace("}", ""))
    if problem:
        raise _Invalid(f"{problem}, got {text!r}")
    return text


def _any_number(raw: Any, path: str, ctx: _Context) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(f"expected a number, got {_describe(raw)}")
    return float(raw)


_ENVIRONMENT_CHECK = _section(
    EnvironmentCheck,
    _Field("type", _choice("http", "prometheus"), required=True),
    _Field("name", _string),
    _Field("url", _check_url),
    _Field("expect_status", _integer_between(100, 599)),
    _Field("contains", _string),
    _Field("query", _string),
    _Field("max", _any_number),
    _Field("min", _any_number),
    rule=_check_rule,
)

_ENVIRONMENT = _section(
    EnvironmentConfig,
    _Field("name", _string, required=True),
    _Field("path", _string, required=True),
    _Field("health_url", _value(url=True), required=True),
    _Field("auto_promote", _boolean),
    _Field("approval", _choice("required", "none")),
    _Field("timeout_minutes", _number(0, inclusive=False)),
    _Field("poll_seconds", _integer_between(0, 3600)),
    _Field("approval_timeout_minutes", _number(0, inclusive=False)),
    _Field("merge_timeout_minutes", _number(0, inclusive=False)),
    _Field("checks", _list_of(_ENVIRONMENT_CHECK)),
    _Field("images", _mapping_of(_string)),
    _Field("cluster", _string),
    _Field("namespace", _string),
    _Field("degraded_after", _integer(minimum=1)),
    _Field(
        "argocd",
        _section(ArgoCdApplication, _Field("namespace", _string), _Field("application", _string)),
    ),
    _Field(
        "flux",
        _section(FluxKustomization, _Field("namespace", _string), _Field("kustomization", _string)),
    ),
)

_NOTIFICATION = _section(
    NotificationConfig,
    _Field("type", _choice(*_NOTIFICATION_KEYS), required=True),
    # Slack, Discord and Teams webhook URLs carry their own credential: treat as secrets.
    _Field("webhook_url", _value(secret=True, url=True)),
    _Field("token", _value(secret=True)),
    _Field("channel", _string),
    _Field("api_url", _value(url=True)),
    _Field("sns_topic_arn", _sns_topic_arn),
    _Field("events", _list_of(_event)),
    _Field("severity", _choice(*SEVERITIES)),
    _Field("environment", _names),
    _Field("namespace", _names),
    rule=_notification_rule,
)

_SECTIONS = (
    _Field("api", _section(ApiConfig, _Field("token", _value(secret=True)))),
    _Field(
        "alertmanager",
        _section(
            AlertmanagerConfig,
            _Field("token", _value(secret=True), required=True),
            _Field("max_body_bytes", _integer(minimum=1)),
        ),
    ),
    _Field("clusters", _mapping_of(_CLUSTER)),
    _Field(
        "prometheus", _section(PrometheusConfig, _Field("url", _value(url=True), required=True))
    ),
    _Field(
        "llm",
        _section(
            LlmConfig,
            _Field("provider", _choice("none", "openai", "bedrock")),
            _Field("base_url", _value(url=True)),
            _Field("model", _string),
            _Field("api_key", _value(secret=True)),
            _Field("max_prompt_tokens", _integer(minimum=1)),
            _Field("timeout_s", _number(0, inclusive=False)),
            _Field("max_completion_tokens", _integer(minimum=1)),
            _Field("retries", _integer_between(0, 10)),
            _Field("cache_ttl_s", _integer(minimum=0)),
            _Field("region", _string),
            rule=_llm_rule,
        ),
    ),
    _Field(
        "github",
        _section(
            GithubConfig,
            _Field("api_url", _value(url=True)),
            _Field("token", _value(secret=True)),
            _Field(
                "app",
                _section(
                    GithubApp,
                    _Field("app_id", _integer(minimum=1), required=True),
                    _Field("private_key", _value(secret=True), required=True),
                    _Field("installation_id", _integer(minimum=1), required=True),
                ),
            ),
            _Field("webhook_secret", _value(secret=True)),
            rule=_github_rule,
        ),
    ),
    _Field(
        "gitops",
        _section(
            GitopsConfig,
            _Field("repo", _repo, required=True),
            _Field("branch", _string),
            _Field("manifest_paths", _list_of(_manifest_path)),
            _Field("safe_mode", _boolean),
            _Field("max_fix_attempts", _integer(minimum=0)),
        ),
    ),
    _Field(
        "costs",
        _section(
            CostsConfig,
            _Field("group_by", _group_by),
            _Field("budgets", _mapping_of(_number(0, inclusive=False))),
            _Field(
                "anomaly",
                _section(
                    AnomalyConfig,
                    _Field("min_delta_usd", _number(0)),
                    _Field("min_ratio", _number(1)),
                    _Field("min_score", _number(0)),
                    _Field("aws_every_days", _integer_between(1, 7)),
                ),
            ),
            _Field("metric", _choice(*COST_METRICS)),
            _Field("backfill_days", _integer_between(1, 396)),
            _Field("settle_days", _integer_between(1, 14)),
            _Field("forecast_refresh_days", _integer_between(1, 31)),
            _Field(
                "providers",
                _section(
                    CostProviders,
                    _Field("aws", _boolean),
                    _Field(
                        "azure",
                        _section(
                            AzureCosts,
                            _Field("tenant_id", _string, required=True),
                            _Field("client_id", _string, required=True),
                            _Field("client_secret", _value(secret=True), required=True),
                            _Field("scope", _azure_scope, required=True),
                            _Field("login_url", _value(url=True)),
                            _Field("management_url", _value(url=True)),
                        ),
                    ),
                    _Field(
                        "gcp",
                        _section(
                            GcpCosts,
                            _Field("project", _string, required=True),
                            _Field("dataset", _bigquery_name, required=True),
                            _Field("table", _bigquery_name, required=True),
                            _Field("credentials", _value(secret=True)),
                            _Field("access_token", _value(secret=True)),
                            _Field("api_url", _value(url=True)),
                            _Field("token_url", _value(url=True)),
                            rule=_gcp_costs_rule,
                        ),
                    ),
                ),
            ),
        ),
    ),
    _Field("environments", _unique_names(_list_of(_ENVIRONMENT), "name")),
    _Field(
        "vault",
        _section(
            VaultConfig,
            _Field("url", _value(url=True), required=True),
            _Field(
                "auth",
                _section(
                    VaultAuth,
                    _Field("method", _choice("aws_iam", "token"), required=True),
                    _Field("role", _string),
                    _Field("token", _value(secret=True)),
                    rule=_vault_auth_rule,
                ),
                required=True,
            ),
            _Field("kv_mount", _string),
            _Field(
                "rotate",
                _unique_names(
                    _list_of(
                        _section(
                            VaultRotation,
                            _Field("path", _string, required=True),
                            _Field("every_days", _integer(minimum=1)),
                            _Field("length", _integer(minimum=16)),
                            _Field("key", _string),
                        )
                    ),
                    "path",
                ),
            ),
        ),
    ),
    _Field("notifications", _list_of(_NOTIFICATION)),
    _Field(
        "rotation",
        _section(
            RotationConfig,
            _Field(
                "password",
                _section(
                    PasswordPolicy,
                    # GetRandomPassword's own limits.
                    _Field("length", _integer_between(4, 4096)),
                    _Field("exclude_characters", _string),
                    _Field("exclude_punctuation", _boolean),
                    _Field("exclude_numbers", _boolean),
                    _Field("exclude_uppercase", _boolean),
                    _Field("exclude_lowercase", _boolean),
                    _Field("include_space", _boolean),
                    _Field("require_each_included_type", _boolean),
                ),
            ),
            _Field(
                "endpoints",
                _mapping_of(
                    _section(
                        RotationEndpoint,
                        _Field("set_url", _value(url=True), required=True),
                        _Field("test_url", _value(url=True), required=True),
                        _Field("token", _value(secret=True)),
                        _Field("timeout_s", _number(0, inclusive=False)),
                    )
                ),
            ),
            _Field(
                "postgres",
                _section(
                    PostgresRotation,
                    _Field("tls", _choice("prefer", "require")),
                    _Field("ca_bundle", _value()),
                ),
            ),
        ),
    ),
)


# --- parsing and loading ---------------------------------------------------------------------


def _check_config(
    document: Any, source: str | None, resolver: Resolver | None
) -> tuple[Config | None, list[str]]:
    ctx = _Context(resolver)
    if document is None:  # an empty document: every section omitted
        return Config(source=source), []
    if not isinstance(document, dict):
        ctx.problem(
            "", f"expected a mapping of sections at the top level, got {_describe(document)}"
        )
        return None, ctx.problems
    values = _read(document, "", ctx, _SECTIONS)
    if ctx.problems or values is None:
        return None, ctx.problems
    return Config(**values, source=source), []


def parse_config(
    document: Any, *, source: str | None = None, resolver: Resolver | None = None
) -> Config:
    """A ``Config`` from an already-parsed document (a mapping, or None for empty).

    Raises ``ConfigError`` listing every problem. ``resolver`` is what its ``Value`` objects
    resolve through (default: the process-wide ``default_resolver()``).
    """
    config, problems = _check_config(document, source, resolver)
    if config is None:
        raise ConfigError(problems, source=source)
    return config


try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _StrictLoader(_SafeLoader):
    """A safe YAML loader that refuses duplicate keys (plain YAML lets the last one win)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str | None) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"invalid YAML{where}: {exc.problem or exc}"], source=source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"], source=source) from exc


def parse_config_text(
    text: str, *, source: str | None = None, resolver: Resolver | None = None
) -> Config:
    """A ``Config`` from YAML text. Raises ``ConfigError`` listing every problem."""
    return parse_config(_parse_yaml(text, source), source=source, resolver=resolver)


def default_config_source() -> str:
    """``$PITCREW_CONFIG``, else the repository's ``infra/local/pitcrew.yaml``."""
    configured = os.environ.get("PITCREW_CONFIG")
    if configured:
        return configured
    cwd = Path.cwd()
    for directory in (cwd, *cwd.parents):
        if (directory / "template.yaml").is_file():
            return str(directory / LOCAL_CONFIG)
    return str(Path(__file__).resolve().parents[2] / LOCAL_CONFIG)


def _read_source(source: str) -> str:
    """The YAML text of a file or an ``ssm:/name`` parameter."""
    if source.startswith("ssm:"):
        problem = reference_problem(source)
        if problem:
            raise ConfigError([problem], source=source)
        return default_resolver().resolve("configuration", source)
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"file not found: {source}"], source=source) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source} is not UTF-8 text"], source=source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read {source}: {exc.strerror}"], source=source) from exc


@functools.lru_cache(maxsize=8)
def _load(source: str) -> Config:
    return parse_config_text(_read_source(source), source=source)


def load_config(source: str | None = None) -> Config:
    """The configuration from ``source`` (see the module docstring for the default), read and
    validated once per process. Raises ``ConfigError`` listing every problem."""
    return _load(source or default_config_source())


def reset_config_cache() -> None:
    """Forget loaded configurations and resolved references (tests, config reloads)."""
    global _default_resolver  # noqa: PLW0603
    _load.cache_clear()
    _default_resolver = None


def validate_file(path: str | None) -> tuple[list[str], str]:
    """Every problem of a configuration file or ``ssm:/name`` (empty when valid), and the
    source checked. Offline for files: references are syntax-checked, never resolved."""
    source = path or default_config_source()
    try:
        document = _parse_yaml(_read_source(source), source)
    except ConfigError as exc:
        return exc.problems, source
    _, problems = _check_config(document, source, None)
    return problems, source
