"""A real PostgreSQL for integration tests: Debian's server binaries
(``/usr/lib/postgresql/<version>/bin``: ``initdb`` and ``postgres``), a fresh cluster in a
temporary directory, listening on a free 127.0.0.1 port with password (SCRAM) logins. The
server logs every statement with its parameters (``log_statement=all``) to a file
(``PostgresServer.log()``), so a test can check that no password reached the server's log.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
``postgres`` user (``runuser``), in a directory owned by it. ``postgres_server()`` skips
the test with the reason when the binaries are absent (``make system-deps`` installs them).
``postgres_server(tls=True)`` also serves TLS, with a certificate for 127.0.0.1 signed by a
CA made for the run (``PostgresServer.ca_pem``), as RDS does with its own CA.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "pitcrew_admin"
START_TIMEOUT_S = 30.0


def server_binaries() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` with initdb and postgres."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for directory in reversed(found):
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: where it listens and its superuser's login."""

    host: str
    port: int
    superuser: str
    password: str
    data_dir: Path
    log_file: Path | None = None
    ca_pem: str | None = None  # the CA of its TLS certificate, when it serves TLS

    def log(self) -> str:
        """What the server has logged so far (statements, parameters, errors)."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def connect(self, user: str | None = None, password: str | None = None, **options: Any) -> Any:
        import pg8000.native

        return pg8000.native.Connection(
            user=user or self.superuser,
            password=password if password is not None else self.password,
            host=self.host,
            port=self.port,
            database=options.pop("database", "postgres"),
            timeout=5,
            **options,
        )

    def run(self, sql: str, **params: Any) -> Any:
        """Run one statement as the superuser."""
        connection = self.connect()
        try:
            return connection.run(sql, **params)
        finally:
            connection.close()

    def can_log_in(self, user: str, password: str) -> bool:
        import pg8000.native

        try:
            self.connect(user, password).close()
        except pg8000.native.DatabaseError:
            return False
        return True

    def secret(self, user: str, password: str, **extra: Any) -> dict[str, Any]:
        """A Secrets Manager secret for ``user``, in AWS's shape."""
        return {
            "engine": "postgres",
            "host": self.host,
            "port": self.port,
            "username": user,
            "password": password,
            "dbname": "postgres",
            "ssl": False,
            **extra,
        }


def _server_user() -> dict[str, Any]:
    """Popen's ``user``/``group`` for the server: ``postgres`` when the tests run as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _certificates(directory: Path) -> tuple[str, list[str]]:
    """A CA and a server certificate for 127.0.0.1 it signed, written to ``directory``: the
    CA's PEM, and the server options that serve them."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pitcrew test database CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)  # PostgreSQL refuses a key others can read
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (cert_file, key_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    options = ["-c", "ssl=on", "-c", f"ssl_cert_file={cert_file}", "-c", f"ssl_key_file={key_file}"]
    return ca.public_bytes(serialization.Encoding.PEM).decode(), options


@contextmanager
def postgres_server(*, tls: bool = False) -> Iterator[PostgresServer]:
    """A fresh cluster on 127.0.0.1, stopped and deleted afterwards; serving TLS too with
    ``tls``."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="pitcrew-pg-"))
    data_dir = base / "data"
    password = secrets.token_urlsafe(18)
    password_file = base / "pwfile"
    password_file.write_text(password + "\n", encoding="utf-8")
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (base, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    base.chmod(0o700)
    subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **_server_user(),
    )
    ca_pem, tls_options = _certificates(base) if tls else (None, [])
    port = free_port()
    log_file = base / "server.log"
    log = log_file.open("wb")
    server = subprocess.Popen(
        [
            str(binaries / "postgres"),
            "-D",
            str(data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(base),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=50",
            "-c",
            "log_statement=all",
            *tls_options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        **_server_user(),
    )
    log.close()  # the server holds its own descriptor
    running = PostgresServer("127.0.0.1", port, SUPERUSER, password, data_dir, log_file, ca_pem)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"postgres exited with {server.returncode} at start-up")
            try:
                running.run("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield running
    finally:
        server.send_signal(signal.SIGINT)  # "fast shutdown"
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(base, ignore_errors=True)
