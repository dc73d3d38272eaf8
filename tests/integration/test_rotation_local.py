"""Secrets Manager rotation end to end, in-process: the local runtime (template.yaml on the
embedded emulator), moto's ``RotateSecret`` reaching ``rotate_secret`` through its real
trigger, and a real PostgreSQL (``tests/support/postgres.py``) for the postgres strategy.

Interrupted rotations use a second rotation function, written by the test into its
temporary directory: the same ``SecretRotation``, failing right after a chosen step and
then at every later step before doing anything, which leaves what AWS leaves when it stops
at a failed step. The rotation is then run again with ``rotate_secret``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pitcrew.local.runtime import LocalRuntime
from pitcrew.rotation.postgres import scram_verifier
from pitcrew.rotation.store import keep_values_out_of_wire_logs
from tests.conftest import LOCAL_CONFIG
from tests.support.fakevault import FakeVault
from tests.support.local import local_runtime, template_with, wait_for
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.secret_logs import no_secret_in_logs, remember  # noqa: F401 - autouse

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("rotation-local")]

STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
RULES = {"AutomaticallyAfterDays": 30}

CRASHING_FUNCTION = '''
"""Test rotation function: pitcrew's rotation, failing after the step named in CRASH_PLAN."""
import json
import os
from pathlib import Path

from pitcrew.rotation.protocol import SecretRotation

STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
rotation = SecretRotation()


def handler(event, context):
    plan = json.loads(Path(os.environ["CRASH_PLAN"]).read_text() or "{}")
    step, crash_after = event["Step"], plan.get("crash_after")
    if crash_after and STEPS.index(step) > STEPS.index(crash_after):
        raise RuntimeError(f"{step} not run: the rotation already failed")
    rotation.run(step, event["SecretId"], event["ClientRequestToken"])
    if step == crash_after:
        raise RuntimeError(f"injected failure after {step}")
'''

CRASHING_TEMPLATE = """
Resources:
  CrashingRotateFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: crashing/
      Handler: app.handler
      Timeout: 30
      Environment:
        Variables:
          CRASH_PLAN: {plan}
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        remember(server.password)
        yield server


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plan") / "plan.json"


@pytest.fixture(scope="module")
def vault() -> Iterator[FakeVault]:
    fake = FakeVault().start()
    remember(fake.root_token)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory, plan: Path, vault: FakeVault
) -> Iterator[LocalRuntime]:
    config = tmp_path_factory.mktemp("config") / "pitcrew.yaml"
    config.write_text(
        LOCAL_CONFIG.read_text(encoding="utf-8")
        + f"\nvault:\n  url: '{vault.url}'\n  auth: {{method: token, token: '{vault.root_token}'}}"
        + "\n  rotate: [{path: apps/payments/api-key, every_days: 30}]\n",
        encoding="utf-8",
    )
    extra = tmp_path_factory.mktemp("crashing")
    (extra / "crashing").mkdir()
    (extra / "crashing" / "app.py").write_text(CRASHING_FUNCTION, encoding="utf-8")
    (extra / "crashing.yaml").write_text(CRASHING_TEMPLATE.format(plan=plan), encoding="utf-8")
    plan.write_text("{}", encoding="utf-8")
    template = template_with(tmp_path_factory.mktemp("stack"), str(extra / "crashing.yaml"))
    with local_runtime(template, serve_api=False, config=config) as started:
        yield started


def arn_of(runtime: LocalRuntime, logical_id: str) -> str:
    assert runtime.stack is not None
    return str(runtime.stack.attrs[logical_id, "Arn"])


def create_secret(runtime: LocalRuntime, value: str, **tags: str) -> str:
    remember(value, *_passwords(value))
    # The test's own CreateSecret goes through botocore too: keep its value out of the wire
    # logs the way pitcrew's Secrets Manager calls do.
    keep_values_out_of_wire_logs()
    return str(
        runtime.client("secretsmanager").create_secret(
            Name=f"pitcrew/rotation-test-{uuid.uuid4().hex[:8]}",
            SecretString=value,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["ARN"]
    )


def rotate(runtime: LocalRuntime, arn: str, function: str = "RotateSecretFunction") -> str:
    answer = runtime.client("secretsmanager").rotate_secret(
        SecretId=arn,
        RotationLambdaARN=arn_of(runtime, function),
        RotationRules=RULES,
        RotateImmediately=True,
    )
    return str(answer["VersionId"])


def staged(runtime: LocalRuntime, arn: str, stage: str) -> dict[str, Any]:
    return dict(runtime.client("secretsmanager").get_secret_value(SecretId=arn, VersionStage=stage))


def labels(runtime: LocalRuntime, arn: str) -> dict[str, list[str]]:
    described = runtime.client("secretsmanager").describe_secret(SecretId=arn)
    return {v: s for v, s in described["VersionIdsToStages"].items() if s}


def _passwords(text: str) -> list[str]:
    try:
        document = json.loads(text)
    except ValueError:
        return []
    return [document["password"]] if isinstance(document, dict) and "password" in document else []


def _login(postgres: PostgresServer, secret_text: str) -> bool:
    secret = json.loads(secret_text)
    return postgres.can_log_in(secret["username"], secret["password"])


def make_role(postgres: PostgresServer, name: str, password: str) -> None:
    postgres.run(f'DROP ROLE IF EXISTS "{name}_clone"')
    postgres.run(f'DROP ROLE IF EXISTS "{name}"')
    postgres.run(f"CREATE ROLE \"{name}\" WITH LOGIN PASSWORD '{password}'")


# --- through moto's RotateSecret and the function's real trigger --------------------------


def test_rotate_secret_reaches_the_function_and_leaves_new_current_old_previous(
    runtime: LocalRuntime,
) -> None:
    arn = create_secret(runtime, "initial-password-value", **{"pitcrew:rotation": "password"})

    token = rotate(runtime, arn)

    current = staged(runtime, arn, "AWSCURRENT")
    assert current["VersionId"] == token
    assert current["SecretString"] != "initial-password-value"
    assert staged(runtime, arn, "AWSPREVIOUS")["SecretString"] == "initial-password-value"
    assert labels(runtime, arn) == {
        token: ["AWSCURRENT"],
        staged(runtime, arn, "AWSPREVIOUS")["VersionId"]: ["AWSPREVIOUS"],
    }
    # A reader that names no stage gets the new value too, and a second rotation works.
    secrets = runtime.client("secretsmanager")
    assert secrets.get_secret_value(SecretId=arn)["SecretString"] == current["SecretString"]
    again = rotate(runtime, arn)
    assert staged(runtime, arn, "AWSCURRENT")["VersionId"] == again
    assert staged(runtime, arn, "AWSPREVIOUS")["SecretString"] == current["SecretString"]


def test_single_user_postgres_old_password_fails_new_one_logs_in(
    runtime: LocalRuntime, postgres: PostgresServer
) -> None:
    make_role(postgres, "single_app", "single-app-old-password")
    arn = create_secret(
        runtime,
        json.dumps(postgres.secret("single_app", "single-app-old-password")),
        **{"pitcrew:rotation": "postgres"},
    )

    rotate(runtime, arn)

    new = json.loads(staged(runtime, arn, "AWSCURRENT")["SecretString"])
    assert new["username"] == "single_app"
    assert postgres.can_log_in("single_app", new["password"])
    assert not postgres.can_log_in("single_app", "single-app-old-password")
    # The server logs every statement and its parameters: the new password is not there.
    assert "ALTER ROLE" in postgres.log()
    assert new["password"] not in postgres.log()
    assert labels(runtime, arn).keys() == {
        staged(runtime, arn, "AWSCURRENT")["VersionId"],
        staged(runtime, arn, "AWSPREVIOUS")["VersionId"],
    }


def test_alternating_users_never_fail_a_client_polling_awscurrent(
    runtime: LocalRuntime, postgres: PostgresServer
) -> None:
    make_role(postgres, "orders", "orders-first-password")
    postgres.run("DROP TABLE IF EXISTS orders_data")
    postgres.run("CREATE TABLE orders_data (id int)")
    postgres.run("INSERT INTO orders_data VALUES (1), (2)")
    postgres.run('GRANT SELECT ON orders_data TO "orders"')
    master = create_secret(
        runtime,
        json.dumps(postgres.secret(postgres.superuser, postgres.password)),
        **{"pitcrew:rotation-master": "true"},
    )
    arn = create_secret(
        runtime,
        json.dumps(postgres.secret("orders", "orders-first-password", masterarn=master)),
        **{"pitcrew:rotation": "postgres"},
    )
    failures: list[str] = []
    users: set[str] = set()
    polls = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal polls
        secrets = runtime.client("secretsmanager")
        while not stop.is_set():
            login = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
            try:
                connection = postgres.connect(login["username"], login["password"])
                try:
                    rows = connection.run("SELECT count(*) FROM orders_data")
                finally:
                    connection.close()
                assert rows == [[2]]
                users.add(login["username"])
            except Exception as exc:  # every failure is the test's finding
                failures.append(f"{login['username']}: {type(exc).__name__}")
            polls += 1

    client = threading.Thread(target=poll, daemon=True)
    client.start()
    try:
        time.sleep(0.2)
        rotate(runtime, arn)  # orders -> orders_clone (created, member of orders)
        time.sleep(0.2)
        rotate(runtime, arn)  # orders_clone -> orders
        time.sleep(0.2)
    finally:
        stop.set()
        client.join(timeout=10)

    assert failures == []
    assert polls > 10
    assert users == {"orders", "orders_clone"}
    current = json.loads(staged(runtime, arn, "AWSCURRENT")["SecretString"])
    previous = json.loads(staged(runtime, arn, "AWSPREVIOUS")["SecretString"])
    assert (current["username"], previous["username"]) == ("orders", "orders_clone")
    assert _login(postgres, json.dumps(current))
    assert not postgres.can_log_in("orders", "orders-first-password")
    assert "CREATE ROLE" in postgres.log()
    assert current["password"] not in postgres.log()
    assert previous["password"] not in postgres.log()


def test_the_password_verifier_is_the_one_postgresql_computes(postgres: PostgresServer) -> None:
    postgres.run('DROP ROLE IF EXISTS "verifier_probe"')
    postgres.run("SET password_encryption = 'scram-sha-256'")
    postgres.run("CREATE ROLE \"verifier_probe\" WITH LOGIN PASSWORD 'Probe-pw_0123456789!#'")
    [[stored]] = postgres.run("SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_probe'")
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])

    assert scram_verifier("Probe-pw_0123456789!#", salt=salt) == stored


# --- interrupted rotations ----------------------------------------------------------------


@pytest.mark.parametrize("crash_after", STEPS)
def test_a_rotation_interrupted_after_any_step_ends_consistent_when_run_again(
    runtime: LocalRuntime, postgres: PostgresServer, plan: Path, crash_after: str
) -> None:
    role = f"crash_{crash_after.lower()}"
    make_role(postgres, role, f"{role}-old-password")
    arn = create_secret(
        runtime,
        json.dumps(postgres.secret(role, f"{role}-old-password")),
        **{"pitcrew:rotation": "postgres"},
    )
    plan.write_text(json.dumps({"crash_after": crash_after}), encoding="utf-8")
    try:
        interrupted = rotate(runtime, arn, function="CrashingRotateFunction")
    finally:
        plan.write_text("{}", encoding="utf-8")
    # What the interruption left behind: the new version exists (created, perhaps set in
    # the database), and only a crash after finishSecret made it current.
    assert (
        interrupted
        in runtime.client("secretsmanager").describe_secret(SecretId=arn)["VersionIdsToStages"]
    )

    rotate(runtime, arn)

    stages = labels(runtime, arn)
    assert sorted(s for labels_ in stages.values() for s in labels_) == [
        "AWSCURRENT",
        "AWSPREVIOUS",
    ]
    current = staged(runtime, arn, "AWSCURRENT")["SecretString"]
    assert _login(postgres, current), "AWSCURRENT does not log in"
    assert not postgres.can_log_in(role, f"{role}-old-password")
    reader = runtime.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    assert reader == current


# --- Vault, on the daily schedule -----------------------------------------------------------


def test_the_daily_schedule_rotates_the_vault_secrets_that_are_due(
    runtime: LocalRuntime, vault: FakeVault
) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    vault.put("apps/payments/api-key", {"value": "vault-old-api-key-1"}, created=old)
    remember("vault-old-api-key-1")

    runtime.fire("rotate_vault.Daily")

    wait_for(lambda: vault.keys["apps/payments/api-key"].current == 2)
    latest = vault.latest("apps/payments/api-key")["value"]
    remember(latest)
    assert latest != "vault-old-api-key-1"
    metadata = wait_for(lambda: vault.keys["apps/payments/api-key"].custom_metadata)
    assert metadata["pitcrew-rotated-version"] == "2"
    assert metadata["pitcrew-rotated-by"].startswith("pitcrew ")
    assert vault.version("apps/payments/api-key", 1) == {"value": "vault-old-api-key-1"}


def test_after_a_failed_rotation_readers_still_get_the_current_value(
    runtime: LocalRuntime, plan: Path
) -> None:
    # As in Secrets Manager: GetSecretValue without a stage still answers AWSCURRENT after a
    # rotation failed part-way (moto would answer with the unfinished version).
    arn = create_secret(runtime, "first-value-kept-7Qx", **{"pitcrew:rotation": "password"})
    plan.write_text(json.dumps({"crash_after": "createSecret"}), encoding="utf-8")
    try:
        pending = rotate(runtime, arn, function="CrashingRotateFunction")
    finally:
        plan.write_text("{}", encoding="utf-8")

    assert "AWSPENDING" in labels(runtime, arn)[pending]
    reader = runtime.client("secretsmanager").get_secret_value(SecretId=arn)
    assert reader["SecretString"] == "first-value-kept-7Qx"
