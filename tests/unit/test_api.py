"""The api function: health, operator authentication, error mapping, and agreement between
the Chalice routes and the template's API events."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from chalice import Blueprint
from chalice.test import Client

from pitcrew import __version__
from pitcrew.api import create_app
from pitcrew.api.routes import ApiContext, route
from pitcrew.config import Config, parse_config
from pitcrew.errors import ConflictError, NotFoundError, ServiceError
from pitcrew.local.template import Template
from pitcrew.observability import forget_secrets, instrument, register_secret

REPO = Path(__file__).resolve().parents[2]
TOKEN = "operator-token-0123456789"
LEAKED = "hvs.leaked-vault-token-0123"


def _config(monkeypatch: pytest.MonkeyPatch, document: dict[str, object]) -> Config:
    monkeypatch.setenv("TEST_OPERATOR_TOKEN", TOKEN)
    return parse_config(document)


def _app_with_probe_routes(config: Config):  # type: ignore[no-untyped-def]
    """The real app plus operator routes that exercise the route wrapper."""
    instruments = instrument("api-test")
    app = create_app(config, instruments)
    bp = Blueprint("probe")
    context = ApiContext(config=config, instruments=instruments)

    @route(bp, context, "/probe")
    def probe() -> dict[str, bool]:
        return {"ok": True}

    @route(bp, context, "/probe/{kind}", methods=("POST",))
    def fail(kind: str) -> None:
        raise {
            "missing": NotFoundError("no such incident: 42"),
            "conflict": ConflictError("nothing awaits approval"),
            "github": ServiceError("github", "422 Unprocessable"),
            "leaky": ServiceError("vault", f"403 for token {LEAKED}"),
            "bug": RuntimeError("a bug"),
        }[kind]

    app.register_blueprint(bp)
    return app


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    config = _config(monkeypatch, {"api": {"token": "env:TEST_OPERATOR_TOKEN"}})
    with Client(_app_with_probe_routes(config)) as test_client:
        yield test_client


def test_healthz_needs_no_auth_and_reports_the_version(client: Client) -> None:
    response = client.http.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "version": __version__}


def test_operator_routes_refuse_a_missing_token(client: Client) -> None:
    response = client.http.get("/probe")
    assert response.status_code == 401
    assert "Bearer" in json.loads(response.body)["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_operator_routes_refuse_a_wrong_token(client: Client) -> None:
    response = client.http.get("/probe", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert json.loads(response.body) == {"error": "invalid operator token"}


def test_operator_routes_accept_the_token_whatever_the_header_case(client: Client) -> None:
    response = client.http.get("/probe", headers={"authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
    assert json.loads(response.body) == {"ok": True}


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("missing", 404, "no such incident: 42"),
        ("conflict", 409, "nothing awaits approval"),
        ("github", 502, "github: 422 Unprocessable"),
    ],
)
def test_pitcrew_errors_become_json_with_their_status(
    client: Client, kind: str, status: int, message: str
) -> None:
    response = client.http.post(f"/probe/{kind}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status
    assert json.loads(response.body) == {"error": message}


def test_a_registered_secret_in_an_error_never_reaches_the_caller(client: Client) -> None:
    register_secret(LEAKED)
    try:
        response = client.http.post("/probe/leaky", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        forget_secrets()
    assert response.status_code == 502
    assert json.loads(response.body) == {"error": "vault: 403 for token ***"}


def test_unexpected_errors_are_a_500_that_reveals_nothing(client: Client) -> None:
    response = client.http.post("/probe/bug", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert "a bug" not in response.body.decode()


def test_without_api_token_the_operator_api_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(_app_with_probe_routes(_config(monkeypatch, {}))) as test_client:
        response = test_client.http.get("/probe", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401
    assert "api.token" in json.loads(response.body)["error"]


# -- the template and the code agree -----------------------------------------------------


def _function_dirs() -> set[str]:
    return {p.parent.name for p in (REPO / "functions").glob("*/app.py")}


def _template_functions(template: Template) -> dict[str, str]:
    """function folder name -> handler, for every function the template declares."""
    found = {}
    for resource in template.of_type("AWS::Serverless::Function").values():
        code_uri = str(resource.properties["CodeUri"]).rstrip("/")
        assert code_uri.startswith("functions/"), f"{resource.logical_id}: CodeUri {code_uri}"
        found[code_uri.removeprefix("functions/")] = resource.properties["Handler"]
    return found


def _load_function_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("PITCREW_CONFIG", str(REPO / "infra/local/pitcrew.yaml"))
    spec = importlib.util.spec_from_file_location(
        f"function_{name}", REPO / "functions" / name / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_function_folder_is_in_the_template_and_back(template: Template) -> None:
    assert set(_template_functions(template)) == _function_dirs()


def test_every_handler_named_in_the_template_exists(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the template's Globals give every function in Lambda; the values are not used here.
    for variable in ("IDEMPOTENCY_TABLE", "INCIDENTS_TABLE", "COSTS_TABLE", "PROMOTIONS_TABLE"):
        monkeypatch.setenv(variable, f"unit-test-{variable.lower()}")
    for name, handler in _template_functions(template).items():
        module_name, _, attribute = handler.partition(".")
        assert module_name == "app", f"{name}: handlers live in app.py"
        module = _load_function_module(name, monkeypatch)
        assert callable(getattr(module, attribute)), f"{name}: {handler} is not callable"


def test_chalice_routes_and_template_api_events_agree(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = _load_function_module("api", monkeypatch).app
    in_code = {(path, method) for path, methods in api.routes.items() for method in methods}
    in_template = set()
    for resource in template.of_type("AWS::Serverless::Function").values():
        if resource.properties["CodeUri"].rstrip("/") != "functions/api":
            continue
        for event in resource.properties.get("Events", {}).values():
            if event["Type"] == "Api":
                props = event["Properties"]
                in_template.add((props["Path"], props["Method"].upper()))
    assert in_code == in_template


def test_the_function_refuses_to_start_on_an_invalid_config_with_the_cli_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pitcrew.cli import main
    from pitcrew.config import reset_config_cache
    from pitcrew.errors import ConfigError

    bad = tmp_path / "pitcrew.yaml"
    bad.write_text("alertmanager:\n  max_body_bytes: lots\ngithb: {}\n")
    assert main(["config", "validate", str(bad)]) == 1
    cli_output = capsys.readouterr().err
    monkeypatch.setenv("PITCREW_CONFIG", str(bad))
    reset_config_cache()
    spec = importlib.util.spec_from_file_location("function_api_bad", REPO / "functions/api/app.py")
    assert spec is not None and spec.loader is not None
    with pytest.raises(ConfigError) as refused:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    reset_config_cache()
    assert refused.value.problems
    for problem in refused.value.problems:
        assert problem in cli_output
    assert any("alertmanager.max_body_bytes" in p for p in refused.value.problems)
    assert any("githb" in p for p in refused.value.problems)


def test_a_webhook_caller_never_sees_the_internal_detail_of_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Webhook routes answer anyone on the internet: a 5xx says "again later" and nothing
    # about secrets, accounts or queues; operator routes keep the detail for the operator.
    config = _config(monkeypatch, {"api": {"token": "env:TEST_OPERATOR_TOKEN"}})
    app = _app_with_probe_routes(config)
    hook = Blueprint(__name__)
    context = ApiContext(config=config, instruments=instrument("api-test"))

    @route(hook, context, "/probe-hook", methods=("POST",), operator=False)
    def probe_hook() -> None:
        raise ServiceError(
            "secretsmanager",
            "AccessDenied: arn:aws:iam::123456789012:role/pitcrew-api cannot read pitcrew/hook",
        )

    app.register_blueprint(hook)
    with Client(app) as test_client:
        response = test_client.http.post("/probe-hook")
    assert response.status_code == 502
    error = json.loads(response.body)["error"]
    assert "again later" in error
    assert "123456789012" not in error and "pitcrew/hook" not in error
