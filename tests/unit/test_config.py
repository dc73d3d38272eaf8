"""pitcrew.config: loading, defaults, every problem named by key path, lazy references."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pitcrew import cli
from pitcrew.config import (
    DOMAIN_EVENTS,
    Config,
    Resolver,
    Value,
    default_config_source,
    load_config,
    parse_config,
    parse_config_text,
    reset_config_cache,
    validate_file,
)
from pitcrew.errors import ConfigError, ReferenceError_

REPO = Path(__file__).resolve().parents[2]

# DESIGN.md's example, verbatim: the contract's own document must load.
DESIGN_EXAMPLE = """\
api:
  token: env:PITCREW_API_TOKEN            # operator API bearer token (IAM auth in AWS)
alertmanager:
  token: secret:pitcrew/alertmanager      # bearer token Alertmanager sends
  max_body_bytes: 1048576
clusters:                                 # chosen by the alert's `cluster` label
  default: {kubeconfig: ~/.kube/config, context: null}
  prod-eu: {eks: {name: prod-eu, region: eu-west-1}}
prometheus:
  url: http://prometheus.monitoring:9090
llm:
  provider: none                          # none | openai | bedrock
  base_url: https://api.openai.com/v1     # any OpenAI-compatible server (Groq, Ollama, vLLM...)
  model: gpt-4.1-mini
  api_key: secret:pitcrew/llm
  max_prompt_tokens: 4000
  timeout_s: 30
github:
  api_url: https://api.github.com         # GitHub Enterprise or a test server
  token: secret:pitcrew/github            # or app: {app_id, private_key, installation_id}
  webhook_secret: secret:pitcrew/github-webhook
gitops:
  repo: acme/platform-gitops
  branch: main
  manifest_paths: ["apps/{namespace}/{workload}.yaml", "deploy/{workload}/deployment.yaml"]
  safe_mode: true                         # true: comment on a tracking issue, no PR
  max_fix_attempts: 3                     # per workload per 24 h
costs:
  group_by: [SERVICE]
  budgets: {monthly_total: 5000}
  anomaly: {min_delta_usd: 20, min_ratio: 1.5}
environments:                             # promotion order
  - {name: dev, path: envs/dev, health_url: "https://dev.example.com/healthz", auto_promote: true}
  - {name: staging, path: envs/staging, health_url: "https://staging.example.com/healthz"}
  - {name: prod, path: envs/prod, health_url: "https://example.com/healthz", approval: required}
vault:
  url: https://vault.example.com
  auth: {method: aws_iam, role: pitcrew}  # or {method: token, token: secret:...}
  kv_mount: secret
  rotate: [{path: apps/payments/api-key, every_days: 30, length: 40}]
notifications:
  - {type: slack, webhook_url: secret:pitcrew/slack, events: [IncidentDiagnosed, CostAnomalyDetected]}
  - {type: email, sns_topic_arn: "arn:aws:sns:...", events: [PromotionAwaitingApproval]}
"""  # noqa: E501 - kept verbatim


@pytest.fixture(autouse=True)
def _fresh_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITCREW_CONFIG", raising=False)
    reset_config_cache()


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    return info.value.problems


class FakeLookups:
    """Stands in for the environment, SSM and Secrets Manager; counts every lookup."""

    def __init__(self, **values: str) -> None:
        self.values = values
        self.lookups: list[str] = []
        self.registered: list[str] = []

    def lookup(self, name: str) -> str:
        self.lookups.append(name)
        return self.values[name]

    def resolver(self) -> Resolver:
        return Resolver(
            env=self.values.get,
            ssm=self.lookup,
            secret=self.lookup,
            register=self.registered.append,
        )


# --- loading ---------------------------------------------------------------------------------


def test_design_example_loads_into_typed_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    config = parse_config_text(DESIGN_EXAMPLE)

    assert config.alertmanager is not None
    assert config.alertmanager.max_body_bytes == 1048576
    assert config.alertmanager.token.reference == "secret:pitcrew/alertmanager"
    assert config.clusters is not None
    assert config.clusters["default"].kubeconfig == "/home/ops/.kube/config"
    assert config.clusters["default"].context is None
    eks = config.clusters["prod-eu"].eks
    assert eks is not None
    assert (eks.name, eks.region) == ("prod-eu", "eu-west-1")
    assert config.llm is not None
    assert (config.llm.provider, config.llm.model, config.llm.timeout_s) == (
        "none",
        "gpt-4.1-mini",
        30.0,
    )
    assert config.github is not None
    assert config.github.app is None
    assert config.github.api_url.get() == "https://api.github.com"
    assert config.gitops is not None
    assert config.gitops.manifest_paths == (
        "apps/{namespace}/{workload}.yaml",
        "deploy/{workload}/deployment.yaml",
    )
    assert config.costs is not None
    assert dict(config.costs.budgets) == {"monthly_total": 5000.0}
    assert config.costs.group_by_definitions() == [{"Type": "DIMENSION", "Key": "SERVICE"}]
    assert config.environments is not None
    assert [(e.name, e.auto_promote, e.approval) for e in config.environments] == [
        ("dev", True, "none"),
        ("staging", False, "none"),
        ("prod", False, "required"),
    ]
    assert config.vault is not None
    assert config.vault.auth.method == "aws_iam"
    assert config.vault.auth.role == "pitcrew"
    assert config.vault.rotate[0].length == 40
    assert config.notifications is not None
    assert [n.type for n in config.notifications] == ["slack", "email"]
    assert config.notifications[1].events == ("PromotionAwaitingApproval",)


def test_llm_call_bounds_have_defaults_and_can_be_set() -> None:
    defaults = parse_config_text("llm: {}").llm
    assert defaults is not None
    assert (
        defaults.max_completion_tokens,
        defaults.retries,
        defaults.cache_ttl_s,
        defaults.region,
    ) == (1024, 2, 86400, None)
    config = parse_config_text(
        "llm: {provider: bedrock, model: m, region: eu-central-1, retries: 0, cache_ttl_s: 0,"
        " max_completion_tokens: 512}"
    ).llm
    assert config is not None
    assert (config.region, config.retries, config.cache_ttl_s, config.max_completion_tokens) == (
        "eu-central-1",
        0,
        0,
        512,
    )


def test_a_present_section_gets_its_defaults() -> None:
    config = parse_config_text(
        """
        alertmanager: {token: env:AM_TOKEN}
        llm: {}
        github: {token: env:GH_TOKEN}
        gitops: {repo: acme/gitops}
        costs: {}
        vault: {url: "https://vault:8200", auth: {method: token, token: env:VAULT_TOKEN}}
        notifications: [{type: discord, webhook_url: env:DISCORD_URL}]
        """
    )
    assert config.alertmanager is not None and config.alertmanager.max_body_bytes == 1048576
    assert config.llm is not None
    assert (config.llm.provider, config.llm.max_prompt_tokens, config.llm.timeout_s) == (
        "none",
        4000,
        30.0,
    )
    assert config.github is not None and config.github.api_url.get() == "https://api.github.com"
    assert config.gitops is not None
    assert (config.gitops.branch, config.gitops.safe_mode, config.gitops.max_fix_attempts) == (
        "main",
        True,
        3,
    )
    assert config.costs is not None
    assert config.costs.group_by == ("SERVICE",)
    assert (config.costs.anomaly.min_delta_usd, config.costs.anomaly.min_ratio) == (20.0, 1.5)
    assert dict(config.costs.budgets) == {}
    assert config.vault is not None and config.vault.kv_mount == "secret"
    assert config.notifications is not None
    assert config.notifications[0].events == DOMAIN_EVENTS  # no events: every event


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_document_is_valid_with_every_section_off(text: str) -> None:
    assert parse_config_text(text) == Config()


def test_omitted_sections_are_none() -> None:
    config = parse_config_text("gitops: {repo: acme/gitops}\ngithub:\n")
    assert config.gitops is not None
    assert config.github is None  # present but empty counts as omitted
    assert config.alertmanager is None
    assert config.environments is None
    assert config.notifications is None


def test_load_config_reads_pitcrew_config_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text("gitops: {repo: acme/first}\n")
    monkeypatch.setenv("PITCREW_CONFIG", str(path))

    first = load_config()
    path.write_text("gitops: {repo: acme/second}\n")
    assert load_config() is first
    assert first.source == str(path)

    reset_config_cache()
    reloaded = load_config()
    assert reloaded.gitops is not None and reloaded.gitops.repo == "acme/second"


def test_load_config_raises_every_problem_with_the_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("githb: {}\nllm: {provider: gpt}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert "llm.provider: expected one of none, openai, bedrock, got 'gpt'" in str(info.value)
    assert len(info.value.problems) == 2


def test_default_source_is_the_repository_local_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "template.yaml").write_text("")
    nested = tmp_path / "functions" / "api"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert default_config_source() == str(tmp_path / "infra" / "local" / "pitcrew.yaml")

    monkeypatch.setenv("PITCREW_CONFIG", "ssm:/pitcrew/config")
    assert default_config_source() == "ssm:/pitcrew/config"


def test_default_source_falls_back_to_the_package_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no template.yaml anywhere above
    assert default_config_source() == str(REPO / "infra" / "local" / "pitcrew.yaml")


def test_the_shipped_local_config_is_valid() -> None:
    path = str(REPO / "infra" / "local" / "pitcrew.yaml")
    assert validate_file(path) == ([], path)
    config = load_config(path)
    assert config.llm is not None and config.llm.provider == "none"
    assert config.gitops is not None and config.gitops.safe_mode is True
    assert config.environments is not None
    assert [e.name for e in config.environments] == ["dev", "staging", "prod"]
    for environment in config.environments:
        assert environment.health_url.get().startswith("http://127.0.0.1")


# --- problems --------------------------------------------------------------------------------


def test_every_problem_is_reported_together() -> None:
    problems = problems_of(
        """
        githb: {token: x}
        alertmanager: {token: env:AM, max_body_bytes: abc}
        gitops: {repo: acme/gitops, manifest_paths: ["apps/{workload}.yaml", 3]}
        llm: {provider: gpt}
        """
    )
    assert problems == [
        "unknown key 'githb' (did you mean 'github'?)",
        "alertmanager.max_body_bytes: expected an integer, got 'abc'",
        "llm.provider: expected one of none, openai, bedrock, got 'gpt'",
        "gitops.manifest_paths[1]: expected a string, got 3",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alertmanager: {tokn: env:A}", "alertmanager: unknown key 'tokn' (did you mean 'token'?)"),
        ("alertmanager: {max_body_bytes: 10}", "alertmanager: missing required key 'token'"),
        ("alertmanager: {token: env:A, max_body_bytes: 0}", "expected an integer >= 1, got 0"),
        ("alertmanager: [token]", "alertmanager: expected a mapping, got a list"),
        ("api: {token: 12345}", "api.token: expected a string or a reference"),
        ("gitops: {repo: platform}", "gitops.repo: expected owner/name, got 'platform'"),
        ("gitops: {repo: a/b, safe_mode: 'no'}", "gitops.safe_mode: expected true or false"),
        ("gitops: {repo: a/b, manifest_paths: x.yaml}", "gitops.manifest_paths: expected a list"),
        (
            "gitops: {repo: a/b, manifest_paths: ['{ns}/{workload}.yaml']}",
            "gitops.manifest_paths[0]: unknown placeholder {ns}",
        ),
        ("llm: {provider: openai}", "llm: missing required key 'model'"),
        ("llm: {timeout_s: 0}", "llm.timeout_s: expected a number > 0, got 0"),
        ("llm: {base_url: ftp://models}", "llm.base_url: expected an http(s) URL, got 'ftp://"),
        ("llm: {retries: 11}", "llm.retries: expected at most 10, got 11"),
        ("llm: {retries: -1}", "llm.retries: expected an integer >= 0, got -1"),
        ("llm: {cache_ttl_s: -5}", "llm.cache_ttl_s: expected an integer >= 0, got -5"),
        ("llm: {max_completion_tokens: 0}", "llm.max_completion_tokens: expected an integer >= 1"),
        ("prometheus: {url: prometheus:9090}", "prometheus.url: expected an http(s) URL"),
        ("github: {}", "github: missing token or app"),
        (
            "github: {token: env:T, app: {app_id: 1, private_key: env:K, installation_id: 2}}",
            "github: give either token or app, not both",
        ),
        (
            "github: {app: {app_id: '12', private_key: env:K}}",
            "github.app.app_id: expected an integer, got '12'",
        ),
        (
            "github: {app: {app_id: 12, private_key: env:K}}",
            "github.app: missing required key 'installation_id'",
        ),
        (
            "clusters: {dev: {context: kind}}",
            "clusters.dev: missing kubeconfig, kubeconfig_secret or eks",
        ),
        ("clusters: {dev: {eks: {name: dev}}}", "clusters.dev.eks: missing required key 'region'"),
        (
            "clusters: {dev: {kubeconfig: k, eks: {name: d, region: r}}}",
            "clusters.dev: give only one of kubeconfig and eks",
        ),
        (
            "clusters: {dev: {kubeconfig: k, kubeconfig_secret: secret:kube/dev}}",
            "clusters.dev: give only one of kubeconfig and kubeconfig_secret",
        ),
        (
            "clusters: {dev: {eks: {name: d, region: r}, context: c}}",
            "clusters.dev: context goes with kubeconfig or kubeconfig_secret, not with eks",
        ),
        ("clusters: {dev: {kubeconfig_secret: 'secret:'}}", "clusters.dev.kubeconfig_secret:"),
        (
            "costs: {group_by: [SERVICE, REGION, LINKED_ACCOUNT]}",
            "costs.group_by: Cost Explorer groups by at most two keys, got 3",
        ),
        ("costs: {group_by: [SERVCE]}", "costs.group_by[0]: expected SERVICE, another"),
        ("costs: {group_by: ['TAG:']}", "costs.group_by[0]: TAG: needs a name"),
        ("costs: {budgets: {monthly_total: -5}}", "costs.budgets.monthly_total: expected a number"),
        ("costs: {anomaly: {min_ratio: 0.5}}", "costs.anomaly.min_ratio: expected a number >= 1"),
        (
            "environments: [{name: dev, path: p, health_url: 'http://h', approval: maybe}]",
            "environments[0].approval: expected one of required, none, got 'maybe'",
        ),
        (
            "environments: [{name: dev, path: a, health_url: 'http://h'},"
            " {name: dev, path: b, health_url: 'http://h'}]",
            "environments[1].name: 'dev' is listed twice",
        ),
        ("environments: [{name: dev, health_url: 'http://h'}]", "missing required key 'path'"),
        (
            "vault: {url: 'https://v', auth: {method: token}}",
            "vault.auth: missing required key 'token' (method token needs it)",
        ),
        (
            "vault: {url: 'https://v', auth: {method: ldap}}",
            "vault.auth.method: expected one of aws_iam, token, got 'ldap'",
        ),
        (
            "vault: {url: 'https://v', auth: {method: aws_iam, role: r},"
            " rotate: [{path: a, length: 8}]}",
            "vault.rotate[0].length: expected an integer >= 16, got 8",
        ),
        ("notifications: [{type: sms}]", "notifications[0].type: expected one of slack, discord"),
        ("notifications: [{type: teams}]", "notifications[0]: missing required key 'webhook_url'"),
        ("notifications: [{type: email}]", "missing required key 'sns_topic_arn'"),
        (
            "notifications: [{type: email, sns_topic_arn: topic}]",
            "notifications[0].sns_topic_arn: expected an SNS topic ARN",
        ),
        (
            "notifications: [{type: slack, token: env:SLACK}]",
            "notifications[0]: missing required key 'channel'",
        ),
        (
            "notifications: [{type: email, sns_topic_arn: 'arn:aws:sns:x', webhook_url: env:U}]",
            "notifications[0]: webhook_url is not used by type email",
        ),
        (
            "notifications: [{type: slack, webhook_url: env:U, events: [IncidentOpend]}]",
            "notifications[0].events[0]: unknown event 'IncidentOpend'"
            " (did you mean 'IncidentOpened'?)",
        ),
        ("api: {token: 'env:'}", "api.token: env: needs an environment variable name"),
        ("api: {token: 'ssm:pitcrew/token'}", "api.token: ssm: needs a parameter path"),
        ("api: {token: 'secret:'}", "api.token: secret: needs a secret name"),
        ("api: {token: 'secret:app#'}", "api.token: secret:NAME#KEY needs a key after '#'"),
        ("- api", "expected a mapping of sections at the top level, got a list"),
    ],
)
def test_a_problem_names_the_key_and_what_was_expected(text: str, problem: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(problem) or problem in p for p in problems), problems


def test_notifications_accept_exactly_the_domain_events() -> None:
    from pitcrew.events import EventName

    assert set(DOMAIN_EVENTS) == {name.value for name in EventName}


def test_slack_may_use_a_bot_token_and_channel_instead_of_a_webhook() -> None:
    config = parse_config_text(
        "notifications: [{type: slack, token: env:SLACK_TOKEN, channel: '#ops'}]"
    )
    assert config.notifications is not None
    assert config.notifications[0].channel == "#ops"


def test_costs_can_group_by_tags_and_cost_categories() -> None:
    config = parse_config_text("costs: {group_by: ['TAG:team', 'COST_CATEGORY:unit']}")
    assert config.costs is not None
    assert config.costs.group_by_definitions() == [
        {"Type": "TAG", "Key": "team"},
        {"Type": "COST_CATEGORY", "Key": "unit"},
    ]


def test_a_problem_never_shows_a_literal_secret() -> None:
    problems = problems_of(
        "notifications: [{type: slack, webhook_url: 'hooks.slack.com/T0/B0/s3cr3t'}]\n"
        "api: {token: 987654321}\n"
    )
    assert problems  # both are wrong...
    assert not any("s3cr3t" in p or "987654321" in p for p in problems)  # ...and stay secret


def test_yaml_syntax_error_names_the_line_and_column() -> None:
    problems = problems_of("llm: {}\napi:\n  token: env:T: x\n")
    assert len(problems) == 1
    assert problems[0].startswith("invalid YAML at line 3, column 15: ")


def test_a_duplicate_key_is_an_error_not_a_silent_override() -> None:
    assert problems_of("gitops: {repo: a/b}\nllm: {}\ngitops: {repo: c/d}\n") == [
        "invalid YAML at line 3, column 1: duplicate key 'gitops'"
    ]


# --- references ------------------------------------------------------------------------------


def test_env_reference_resolves_on_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITCREW_API_TOKEN", "operator-token")
    config = parse_config_text("api: {token: env:PITCREW_API_TOKEN}")
    assert config.api is not None and config.api.token is not None
    assert config.api.token.get() == "operator-token"


def test_references_are_resolved_only_when_used() -> None:
    fake = FakeLookups(**{"/pitcrew/prom": "http://prometheus:9090"})
    config = parse_config(
        {
            "github": {"token": "secret:pitcrew/github"},
            "prometheus": {"url": "ssm:/pitcrew/prom"},
            "api": {"token": "env:NOT_SET_ANYWHERE"},
        },
        resolver=fake.resolver(),
    )
    assert fake.lookups == []  # loading fetched nothing, and a missing secret is not an error
    assert config.prometheus is not None
    assert config.prometheus.url.get() == "http://prometheus:9090"
    assert fake.lookups == ["/pitcrew/prom"]


def test_a_resolved_reference_is_cached_for_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_TOKEN", "first")
    config = parse_config_text("alertmanager: {token: env:AM_TOKEN}")
    assert config.alertmanager is not None
    assert config.alertmanager.token.get() == "first"
    monkeypatch.setenv("AM_TOKEN", "second")
    assert config.alertmanager.token.get() == "first"

    fake = FakeLookups(**{"pitcrew/github": "ghp_x"})
    token = Value("secret:pitcrew/github", "github.token", secret=True, resolver=fake.resolver())
    assert token.get() == token.get() == "ghp_x"
    assert fake.lookups == ["pitcrew/github"]


def test_a_missing_env_var_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITCREW_API_TOKEN", raising=False)
    config = parse_config_text("api: {token: env:PITCREW_API_TOKEN}")
    assert config.api is not None and config.api.token is not None
    with pytest.raises(ReferenceError_) as info:
        config.api.token.get()
    assert info.value.key == "api.token"
    assert str(info.value).endswith(
        "api.token: cannot resolve 'env:PITCREW_API_TOKEN': "
        "environment variable PITCREW_API_TOKEN is not set"
    )


def test_a_failed_lookup_names_the_key_and_reference() -> None:
    fake = FakeLookups()  # knows no secret: the lookup raises KeyError
    config = parse_config({"github": {"token": "secret:pitcrew/github"}}, resolver=fake.resolver())
    assert config.github is not None and config.github.token is not None
    with pytest.raises(ReferenceError_) as info:
        config.github.token.get()
    assert (info.value.key, info.value.reference) == ("github.token", "secret:pitcrew/github")


def test_secret_hash_key_picks_one_key_of_a_json_secret() -> None:
    fake = FakeLookups(**{"pitcrew/db": '{"username": "app", "password": "pa55"}'})
    resolver = fake.resolver()
    password = Value("secret:pitcrew/db#password", "x.password", secret=True, resolver=resolver)
    assert password.get() == "pa55"

    missing = Value("secret:pitcrew/db#passwd", "x.password", secret=True, resolver=resolver)
    with pytest.raises(ReferenceError_) as info:
        missing.get()
    assert "has no key 'passwd' (its keys: password, username)" in str(info.value)
    assert "pa55" not in str(info.value)


def test_a_url_reference_must_resolve_to_a_url() -> None:
    fake = FakeLookups(**{"/pitcrew/vault-url": "vault.internal"})
    config = parse_config(
        {"vault": {"url": "ssm:/pitcrew/vault-url", "auth": {"method": "aws_iam", "role": "r"}}},
        resolver=fake.resolver(),
    )
    assert config.vault is not None
    with pytest.raises(ReferenceError_, match=r"vault\.url: .* not an http\(s\) URL"):
        config.vault.url.get()


def test_secrets_are_registered_for_log_redaction() -> None:
    fake = FakeLookups(**{"pitcrew/github": "ghp_resolved", "/pitcrew/prom": "http://prom:9090"})
    config = parse_config(
        {
            "github": {"token": "secret:pitcrew/github", "webhook_secret": "literal-hook-secret"},
            "prometheus": {"url": "ssm:/pitcrew/prom"},
        },
        resolver=fake.resolver(),
    )
    assert config.github is not None and config.prometheus is not None
    assert config.github.token is not None and config.github.webhook_secret is not None
    config.github.token.get()
    config.github.webhook_secret.get()
    config.prometheus.url.get()
    assert fake.registered == ["ghp_resolved", "literal-hook-secret"]  # not the plain URL


def test_repr_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITCREW_API_TOKEN", "env-secret-value")
    config = parse_config_text(
        """
        api: {token: env:PITCREW_API_TOKEN}
        github: {token: ghp_literal_secret, webhook_secret: hook-literal}
        notifications: [{type: slack, webhook_url: "https://hooks.slack.com/services/T/B/xyz"}]
        """
    )
    assert config.api is not None and config.api.token is not None
    assert config.api.token.get() == "env-secret-value"

    shown = repr(config) + str(config)
    for secret in ("env-secret-value", "ghp_literal_secret", "hook-literal", "T/B/xyz"):
        assert secret not in shown
    assert "env:PITCREW_API_TOKEN" in shown  # a reference is safe and useful to show
    assert str(config.api.token) == "env:PITCREW_API_TOKEN"
    assert config.github is not None and repr(config.github.token) == "Value('***')"


# --- validate_file and the CLI ---------------------------------------------------------------


def test_validate_file_reports_a_missing_file() -> None:
    problems, source = validate_file("/nonexistent/pitcrew.yaml")
    assert problems == ["file not found: /nonexistent/pitcrew.yaml"]
    assert source == "/nonexistent/pitcrew.yaml"


def test_validate_file_checks_references_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the variable nor any AWS endpoint exists: resolving would fail.
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    path = tmp_path / "pitcrew.yaml"
    path.write_text("api: {token: env:UNSET_TOKEN}\nalertmanager: {token: secret:nowhere}\n")
    assert validate_file(str(path)) == ([], str(path))

    path.write_text("api: {token: 'env:1BAD'}\n")
    problems, _ = validate_file(str(path))
    assert problems == [
        "api.token: env: needs an environment variable name (e.g. env:API_TOKEN), got 'env:1BAD'"
    ]


def test_validate_file_defaults_to_pitcrew_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.yaml"
    path.write_text("llm: {provider: gpt}\n")
    monkeypatch.setenv("PITCREW_CONFIG", str(path))
    assert validate_file(None) == (
        ["llm.provider: expected one of none, openai, bedrock, got 'gpt'"],
        str(path),
    )


def test_cli_config_validate_prints_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("githb: {}\nalertmanager: {token: env:A, max_body_bytes: abc}\n")
    assert cli.main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "  - unknown key 'githb' (did you mean 'github'?)" in err
    assert "  - alertmanager.max_body_bytes: expected an integer, got 'abc'" in err


def test_cli_config_validate_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DESIGN_EXAMPLE)
    assert cli.main(["config", "validate", str(good)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{good}: ok"
    assert out.err == ""


def test_kubeconfig_secret_is_a_secret_reference() -> None:
    fake = FakeLookups(**{"kube/prod": "apiVersion: v1\nkind: Config\n"})
    config = parse_config_text(
        "clusters: {prod: {kubeconfig_secret: secret:kube/prod, context: admin@prod}}",
        resolver=fake.resolver(),
    )
    assert config.clusters is not None
    cluster = config.clusters["prod"]
    assert cluster.kubeconfig_secret is not None and cluster.context == "admin@prod"
    assert str(cluster.kubeconfig_secret) == "secret:kube/prod"
    assert cluster.kubeconfig_secret.get().startswith("apiVersion: v1")
    assert fake.registered == ["apiVersion: v1\nkind: Config\n"]  # redacted from logs


def test_kubeconfig_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ci")
    config = parse_config_text("clusters: {dev: {kubeconfig: ~/kube/dev.yaml, context: kind}}")
    assert config.clusters is not None
    assert config.clusters["dev"].kubeconfig == os.path.join("/home/ci", "kube", "dev.yaml")


def test_notifications_take_severity_environment_and_namespace_filters() -> None:
    config = parse_config_text(
        """
        notifications:
          - {type: slack, token: env:SLACK_TOKEN, channel: '#ops', api_url: "http://127.0.0.1:9/api",
             severity: warning, environment: prod, namespace: [payments, checkout]}
          - {type: discord, webhook_url: env:DISCORD_URL}
        """
    )
    assert config.notifications is not None
    slack, discord = config.notifications
    assert (slack.severity, slack.environment, slack.namespace) == (
        "warning",
        ("prod",),
        ("payments", "checkout"),
    )
    assert slack.api_url.get() == "http://127.0.0.1:9/api"
    assert (discord.severity, discord.environment, discord.namespace) == (None, None, None)
    assert discord.api_url.get() == "https://slack.com/api"  # the default, unused by discord


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "{type: slack, webhook_url: env:U, severity: high}",
            "notifications[0].severity: expected one of info, warning, critical, got 'high'",
        ),
        (
            "{type: slack, webhook_url: env:U, environment: []}",
            "notifications[0].environment: expected a name or a non-empty list of names",
        ),
        (
            "{type: slack, webhook_url: env:U, namespace: [payments, 7]}",
            "notifications[0].namespace[1]: expected a string, got 7",
        ),
        (
            "{type: slack, webhook_url: env:U, api_url: 'http://127.0.0.1:9/api'}",
            "notifications[0]: api_url goes with token + channel, not with webhook_url",
        ),
        (
            "{type: teams, webhook_url: env:U, api_url: 'http://127.0.0.1:9/api'}",
            "notifications[0]: api_url is not used by type teams",
        ),
        (
            "{type: slack, token: env:T, channel: '#ops', api_url: slack.com/api}",
            "notifications[0].api_url: expected an http(s) URL",
        ),
    ],
)
def test_notification_filter_problems_name_the_key(entry: str, problem: str) -> None:
    problems = problems_of(f"notifications: [{entry}]")
    assert any(p.startswith(problem) for p in problems), problems


# --- costs: metric, backfill, providers ----------------------------------------------------


def test_costs_providers_and_incremental_settings() -> None:
    config = parse_config_text(
        """
        costs:
          metric: AmortizedCost
          backfill_days: 396
          settle_days: 4
          anomaly: {min_score: 5}
          providers:
            aws: false
            azure: {tenant_id: t, client_id: c, client_secret: env:AZ, scope: /subscriptions/s/}
            gcp: {project: p, dataset: billing, table: gcp_billing_export_v1_X, access_token: env:G}
        """
    )
    costs = config.costs
    assert costs is not None
    assert (costs.metric, costs.backfill_days, costs.settle_days) == ("AmortizedCost", 396, 4)
    assert costs.anomaly.min_score == 5.0 and costs.anomaly.min_ratio == 1.5
    assert costs.providers.aws is False
    assert costs.providers.azure is not None and costs.providers.azure.scope == "/subscriptions/s"
    assert costs.providers.azure.management_url.get() == "https://management.azure.com"
    assert costs.providers.gcp is not None and costs.providers.gcp.credentials is None
    assert parse_config_text("costs: {}").costs.providers.aws is True  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("costs", "problem"),
    [
        ("{metric: Cost}", "costs.metric: expected one of UnblendedCost"),
        ("{backfill_days: 400}", "costs.backfill_days: expected at most 396, got 400"),
        ("{settle_days: 0}", "costs.settle_days: expected an integer"),
        (
            "{providers: {gcp: {project: p, dataset: 'a;drop', table: t, access_token: env:T}}}",
            "costs.providers.gcp.dataset: expected a BigQuery name",
        ),
        (
            "{providers: {gcp: {project: p, dataset: d, table: t}}}",
            "costs.providers.gcp: missing credentials or access_token",
        ),
        (
            "{providers: {azure: {tenant_id: t, client_id: c, client_secret: env:S}}}",
            "costs.providers.azure: missing required key 'scope'",
        ),
        (
            "{providers: {azure: {tenant_id: t, client_id: c, client_secret: x, scope: subs}}}",
            "costs.providers.azure.scope: expected a scope path",
        ),
    ],
)
def test_costs_problems_name_the_key(costs: str, problem: str) -> None:
    problems = problems_of(f"costs: {costs}")
    assert any(p.startswith(problem) for p in problems), problems


def test_rotation_section_has_password_policy_defaults_and_named_endpoints() -> None:
    config = parse_config_text(
        "rotation:\n"
        "  password: {length: 48, exclude_punctuation: true}\n"
        "  endpoints:\n"
        "    payments: {set_url: 'https://pay.example/rotate', test_url: env:PAY_TEST_URL}\n"
    )
    assert config.rotation is not None
    assert config.rotation.password.length == 48
    assert config.rotation.password.exclude_punctuation is True
    assert config.rotation.password.require_each_included_type is True
    endpoint = config.rotation.endpoints["payments"]
    assert endpoint.test_url.reference == "env:PAY_TEST_URL"
    assert endpoint.token is None
    assert endpoint.timeout_s == 10.0


def test_vault_rotation_entries_name_the_key_they_rotate() -> None:
    config = parse_config_text(
        "vault: {url: 'https://vault.example', auth: {method: aws_iam, role: pitcrew},"
        " rotate: [{path: apps/a}, {path: apps/b, key: api_key}]}"
    )
    assert config.vault is not None
    assert [r.key for r in config.vault.rotate] == ["value", "api_key"]


@pytest.mark.parametrize(
    ("rotation", "problem"),
    [
        ("{password: {length: 3}}", "rotation.password.length: expected an integer >= 4"),
        ("{password: {length: 5000}}", "rotation.password.length: expected at most 4096"),
        ("{password: {exclude_numbers: maybe}}", "rotation.password.exclude_numbers: expected"),
        ("{endpoints: {pay: {set_url: 'https://x/set'}}}", "rotation.endpoints.pay: missing"),
        ("{endpoints: {pay: {set_url: ftp://x, test_url: 'https://x'}}}", "rotation.endpoints"),
    ],
)
def test_rotation_problems_name_the_key(rotation: str, problem: str) -> None:
    problems = problems_of(f"rotation: {rotation}")
    assert any(p.startswith(problem) for p in problems), problems


def test_environment_promotion_keys_and_checks() -> None:
    config = parse_config_text(
        "environments:\n"
        "  - name: prod\n"
        "    path: envs/prod\n"
        "    health_url: https://example.com/healthz\n"
        "    timeout_minutes: 0.5\n"
        "    poll_seconds: 0\n"
        "    images: {api: ghcr.io/acme/api}\n"
        "    checks:\n"
        "      - {type: http, url: 'https://example.com/${app}', contains: ok}\n"
        "      - {type: prometheus, query: 'up{app=\"${app}\"}', min: 1}\n"
    )
    assert config.environments is not None
    (prod,) = config.environments
    assert (prod.timeout_minutes, prod.poll_seconds, prod.degraded_after) == (0.5, 0, 3)
    assert dict(prod.images) == {"api": "ghcr.io/acme/api"}
    assert [c.type for c in prod.checks] == ["http", "prometheus"]
    assert prod.checks[1].min == 1.0


def test_environment_checks_name_what_they_miss() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(
            "environments:\n"
            "  - {name: dev, path: p, health_url: 'http://h', poll_seconds: -1,\n"
            "     checks: [{type: prometheus, url: 'http://x'}, {type: http}]}\n"
        )
    text = str(caught.value)
    assert "environments[0].poll_seconds: expected an integer >= 0" in text
    assert "environments[0].checks[0]: url is not used by type prometheus" in text
    assert "environments[0].checks[0]: missing max or min" in text
    assert "environments[0].checks[1]: missing required key 'url'" in text


def test_environment_argocd_and_flux_keys() -> None:
    config = parse_config_text(
        "clusters: {prod-eu: {kubeconfig: /etc/kube/config}}\n"
        "environments:\n"
        "  - {name: staging, path: s, health_url: 'http://h', cluster: prod-eu, argocd: {}}\n"
        "  - name: prod\n"
        "    path: p\n"
        "    health_url: http://h\n"
        "    cluster: prod-eu\n"
        "    namespace: shop\n"
        "    argocd: {namespace: gitops, application: shop-prod}\n"
        "    flux: {kustomization: apps}\n"
    )
    assert config.environments is not None
    staging, prod = config.environments
    assert staging.argocd is not None and staging.argocd.namespace == "argocd"
    assert staging.argocd.application is None and staging.flux is None
    assert prod.argocd is not None
    assert (prod.argocd.namespace, prod.argocd.application) == ("gitops", "shop-prod")
    assert prod.flux is not None
    assert (prod.flux.namespace, prod.flux.kustomization) == ("flux-system", "apps")
    with pytest.raises(ConfigError, match=r"environments\[0\]\.argocd\.application"):
        parse_config_text(
            "environments:\n  - {name: d, path: p, health_url: 'http://h', argocd: "
            "{application: 3}}\n"
        )
