"""pitcrew.llm.redact: credentials as they really appear in logs, events and manifests are
removed before anything reaches an LLM; ordinary diagnostic text is left alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pitcrew.llm.redact import redact
from pitcrew.observability import forget_secrets, register_secret

PEM = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi3V7y1Xhm1vO7ZtDkXhqtZbKQ3
dGkRmK1nP0cRa9f1Q1bPqVJ+v7xkS7QtY1wz0kO3hH7JwRrN2Yk2pO2k1c3bXw==
-----END RSA PRIVATE KEY-----"""


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('curl -H "Authorization: Bearer eyJhbGciOi.x9Qm3kLpT7vRz" https://api', "x9Qm3kLpT7vRz"),
        ("authorization=Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("Using token Bearer 8f3b9c2d7e6a5f4b3c2d1e0f", "8f3b9c2d7e6a5f4b3c2d1e0f"),
        ("DB_PASSWORD=Xk9#mP2$vL7q ./start.sh", "Xk9#mP2$vL7q"),
        ('{"user": "app", "password": "correct horse battery"}', "correct horse battery"),
        ('{\\"password\\": \\"s3cr3t-in-json-log\\"}', "s3cr3t-in-json-log"),
        ("redis: requirepass=r3d1sP4ss client_secret: 'abcDEF123'", "r3d1sP4ss"),
        ("redis: requirepass=r3d1sP4ss client_secret: 'abcDEF123'", "abcDEF123"),
        ("config loaded: dbPassword=hunter22 timeout=30", "hunter22"),
        ("env: PGPASSWORD=Zq81rty7 PGUSER=app", "Zq81rty7"),
        ("MYSQLROOTPASSWORD: 'r00t-pw'", "r00t-pw"),
        ("Server=db;Database=app;User Id=sa;Password=P@ssw0rd!;", "P@ssw0rd!"),
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("assumed role, key ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in a line",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U rejected",
            "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        ),
        (PEM, "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi3V7y1Xhm1vO7ZtDkXhqtZbKQ3"),
        (PEM.split("\n", 1)[1], "dGkRmK1nP0cRa9f1Q1bPqVJ+v7xkS7QtY1wz0kO3hH7JwRrN2Yk2pO2k1c3bXw"),
        ("dial postgres://ledger:Pr0d-S3cret@db.payments:5432/ledger", "Pr0d-S3cret"),
        ("mongodb+srv://admin:m0ng0pw@cluster0.x.mongodb.net/app", "m0ng0pw"),
        ("amqp://guest:Rabb1tPw@rabbitmq:5672/", "Rabb1tPw"),
        ("git clone https://x:ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/a/b", "ghp_16C7"),
        ("GITHUB_TOKEN ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F"),
        (
            "using github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ",
            "github_pat_11ABCDEFG",
        ),
        ("slack xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", "pdFZKVeTuE8sk7oOcBrzbqgy"),
        (
            "posting to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "T00000000/B00000000",
        ),
        ("OPENAI_API_KEY: sk-proj-abcDEF1234567890abcdefGHIJ", "sk-proj-abcDEF1234567890"),
        (
            "payment failed for alice.smith+billing@example.co.uk",
            "alice.smith+billing@example.co.uk",
        ),
    ],
)
def test_credentials_are_removed(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert "REDACTED" in redacted or "***" in redacted or "[EMAIL]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "2024-11-19T07:58:02.417Z ERROR [main] ZeroDivisionError: division by zero",
        'FATAL: password authentication failed for user "ledger"',
        "Back-off restarting failed container app in pod ledger-7c9d8f6b5-x2x7q_payments(4f1e)",
        'Failed to pull image "ghcr.io/acme/ledger:2.14.1": rpc error: code = NotFound',
        "image digest sha256:3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b deployed",
        "pod uid 9c1e6f0e-6a6b-4d4b-9c55-2f0e1b5f1a7e",
        "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available",
        "GET /api/v1/payments HTTP/1.1 200 in 12ms, prompt_tokens: 5",
        'MountVolume.SetUp failed for volume "db-creds" : secret "db-creds" not found',
        "java.lang.IllegalStateException: Failed to load ApplicationContext",
    ],
)
def test_ordinary_diagnostic_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_the_key_stays_readable_for_the_model() -> None:
    assert redact("DB_PASSWORD=hunter22") == "DB_PASSWORD=[REDACTED]"
    assert redact('{"password": "x y z"}') == '{"password": "[REDACTED]"}'
    assert redact("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer [REDACTED]"
    assert redact(PEM) == "[REDACTED PRIVATE KEY]"


def test_registered_secrets_are_removed_whatever_their_shape() -> None:
    register_secret("plain-words-that-are-a-vault-token")

    assert redact("vault said plain-words-that-are-a-vault-token expired") == (
        "vault said *** expired"
    )


def test_redaction_is_idempotent() -> None:
    text = "password=abc token: Bearer abcdefgh12345678 mail bob@example.com"
    once = redact(text)
    assert redact(once) == once
