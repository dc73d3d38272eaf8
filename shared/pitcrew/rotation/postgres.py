"""The ``postgres`` strategy: a PostgreSQL login, in a JSON secret shaped like AWS's
``{"engine": "postgres", "host", "port", "username", "password", "dbname"[, "masterarn"]}``,
through pg8000 (pure Python, no native library in Lambda).

- **single user** (no ``masterarn``): setSecret logs in with a password the database still
  accepts (AWSCURRENT, else AWSPREVIOUS, else one an abandoned rotation left behind) and
  runs ``ALTER ROLE ... PASSWORD`` on its own role. Between setSecret and finishSecret the
  old password no longer works: clients that log in then fail until they re-read the secret.
- **alternating users** (``masterarn`` names a secret with an administrator's login): each
  rotation moves the secret to the other of ``<user>`` and ``<user>_clone`` and sets that
  one's password with the administrator's login, creating the clone on first use as a
  member of ``<user>`` (so it has the same privileges). The role in AWSCURRENT is never
  touched, so clients using it never fail.

Identifiers are quoted by the server (``format('%I', '%L')``), never pasted into SQL. The
password never reaches the server as text: ``ALTER ROLE``/``CREATE ROLE`` carry its
SCRAM-SHA-256 verifier (``scram_verifier``), so a server that logs DDL or a failed statement
(``log_statement``, ``log_min_error_statement``, on by default for errors) logs no password.
testSecret logs in with the pending value.

TLS: an ``ssl`` field in the secret (true/false) forces verified TLS or none; without one,
verified TLS is tried first, then, as AWS's templates do, a connection that does not check the
server's certificate (TLS if the server offers it, like libpq's ``sslmode=prefer``), logged
as a warning. The configuration's ``rotation.postgres`` sets ``tls: require`` (verified TLS
only; a secret saying ``ssl: false`` is refused) and ``ca_bundle`` (the certificates TLS
verifies the server against: RDS's are not in the system's store, so without the bundle,
verification fails against RDS and ``prefer`` falls back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pitcrew.errors import BadRequestError, ConfigError, ServiceError, TransientServiceError
from pitcrew.observability import register_secret
from pitcrew.records import frozen
from pitcrew.rotation.store import CURRENT
from pitcrew.rotation.strategy import RotationContext, json_object, new_password

if TYPE_CHECKING:
    import ssl

    from pitcrew.config import PostgresRotation

log = logging.getLogger("pitcrew.rotation")

CLONE_SUFFIX = "_clone"
# PostgreSQL truncates identifiers to 63 bytes: a longer clone name would collide.
MAX_IDENTIFIER_BYTES = 63
CONNECT_TIMEOUT_S = 5
# PostgreSQL's own defaults for a verifier it makes (scram_iterations, a 16-byte salt).
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16


@frozen
class Login:
    """Where and as whom to log in (from a secret's JSON)."""

    host: str
    port: int
    username: str
    password: str
    dbname: str
    ssl: bool | None = None

    @classmethod
    def from_secret(cls, text: str, name: str) -> Login:
        document = json_object(text)
        if document is None:
            raise BadRequestError(f"{name}: a postgres secret must be a JSON object")
        engine = document.get("engine", "postgres")
        if engine not in ("postgres", "postgresql", "aurora-postgresql"):
            raise BadRequestError(f"{name}: engine {engine!r} is not postgres")
        missing = [k for k in ("host", "username", "password") if not document.get(k)]
        if missing:
            raise BadRequestError(f"{name}: the secret has no {', '.join(missing)}")
        try:
            port = int(document.get("port") or 5432)
        except (TypeError, ValueError):
            raise BadRequestError(f"{name}: port must be a number") from None
        ssl = document.get("ssl")
        if isinstance(ssl, str):  # as AWS's templates: other text tries TLS, then falls back
            ssl = {"true": True, "false": False}.get(ssl.strip().lower())
        register_secret(str(document["password"]))
        return cls(
            host=str(document["host"]),
            port=port,
            username=str(document["username"]),
            password=str(document["password"]),
            dbname=str(document.get("dbname") or "postgres"),
            ssl=ssl if isinstance(ssl, bool) else None,
        )


class LoginRefused(Exception):
    """The server refused this login (wrong password, no such role): not an outage."""


class PostgresStrategy:
    name = "postgres"

    def __init__(
        self,
        settings: PostgresRotation | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self._tls: ssl.SSLContext | None = None

    # --- createSecret --------------------------------------------------------------------

    def create(self, context: RotationContext) -> str:
        document = json_object(context.current)
        current = Login.from_secret(context.current, context.secret.name)
        assert document is not None  # from_secret checked it
        if document.get("masterarn"):
            document["username"] = other_user(current.username, context.secret.name)
        document["password"] = new_password(context)
        return json.dumps(document)

    # --- setSecret -----------------------------------------------------------------------

    def set(self, context: RotationContext) -> None:
        name = context.secret.name
        pending = Login.from_secret(context.require_pending(), name)
        current = Login.from_secret(context.current, name)
        if self.can_log_in(pending):
            return  # already set: this step ran before
        if pending.host != current.host or pending.port != current.port:
            raise BadRequestError(f"{name}: the pending version points at another server")
        master_arn = (json_object(context.current) or {}).get("masterarn")
        if master_arn:
            self._set_alternating(context, current, pending, str(master_arn))
        else:
            self._set_single(context, current, pending)

    def _set_single(self, context: RotationContext, current: Login, pending: Login) -> None:
        if pending.username != current.username:
            raise BadRequestError(
                f"{context.secret.name}: a single-user rotation cannot change the user name"
            )
        for text in [context.current, *context.previous_values()]:
            try:
                candidate = Login.from_secret(text, context.secret.name)
            except BadRequestError:
                continue
            if candidate.username != pending.username or candidate.host != pending.host:
                continue
            try:
                with self.connection(candidate) as connection:
                    _set_password(connection, pending.username, pending.password)
                return
            except LoginRefused:
                continue
        raise ServiceError(
            "postgres",
            f"{context.secret.name}: no stored password of {pending.username} logs in "
            "(AWSCURRENT, AWSPREVIOUS, abandoned versions): reset it by hand",
        )

    def _set_alternating(
        self, context: RotationContext, current: Login, pending: Login, master_arn: str
    ) -> None:
        name = context.secret.name
        if pending.username != other_user(current.username, name):
            raise BadRequestError(
                f"{name}: the pending user {pending.username!r} is neither {current.username!r} "
                "nor its clone"
            )
        # As AWS's template: only rotate a login that works now (a confused deputy guard).
        if not self.can_log_in(current):
            raise ServiceError("postgres", f"{name}: the AWSCURRENT login does not work")
        master = Login.from_secret(context.store.value(master_arn, stage=CURRENT), master_arn)
        if master.host != current.host or master.port != current.port:
            raise BadRequestError(f"{name}: the master secret is for another server")
        master = Login(
            master.host, master.port, master.username, master.password, current.dbname, master.ssl
        )
        try:
            with self.connection(master) as connection:
                exists = connection.run(
                    "SELECT 1 FROM pg_roles WHERE rolname = :name", name=pending.username
                )
                if exists:
                    _set_password(connection, pending.username, pending.password)
                else:
                    _create_member(connection, pending.username, pending.password, current.username)
        except LoginRefused as exc:
            raise ServiceError(
                "postgres", f"{name}: the master login ({master_arn}) is refused"
            ) from exc

    # --- testSecret ----------------------------------------------------------------------

    def test(self, context: RotationContext) -> None:
        pending = Login.from_secret(context.require_pending(), context.secret.name)
        try:
            with self.connection(pending) as connection:
                connection.run("SELECT 1")
        except LoginRefused as exc:
            raise ServiceError(
                "postgres", f"{context.secret.name}: the pending login of {pending.username} fails"
            ) from exc

    # --- connections ---------------------------------------------------------------------

    def can_log_in(self, login: Login) -> bool:
        try:
            with self.connection(login) as connection:
                connection.run("SELECT 1")
        except LoginRefused:
            return False
        return True

    @contextmanager
    def connection(self, login: Login) -> Iterator[Any]:
        """A pg8000 connection; ``LoginRefused`` when the server says no to the credentials,
        ``TransientServiceError`` when it cannot be reached."""
        connection = self._connect(login)
        try:
            yield connection
        finally:
            connection.close()

    def _connect(self, login: Login) -> Any:
        required = self.settings is not None and self.settings.tls == "require"
        if login.ssl is False and required:
            raise BadRequestError(
                f"{login.host}: the secret says ssl: false, and rotation.postgres.tls is require"
            )
        # pg8000's ssl_context: an SSLContext verifies; None is libpq's sslmode=prefer (TLS
        # when the server offers it, its certificate unchecked); False is no TLS.
        if required or login.ssl:
            modes = ["verified"]
        elif login.ssl is False:
            modes = ["off"]
        else:
            modes = ["verified", "unverified"]  # as AWS's templates
        failure: Exception | None = None
        last: Exception | None = None
        for mode in modes:
            context: ssl.SSLContext | bool | None = (
                self._tls_context() if mode == "verified" else False if mode == "off" else None
            )
            try:
                connection = self._open(login, context)
            except LoginRefused:
                raise
            except TransientServiceError as exc:
                failure, last = failure or exc, exc
                continue
            if mode == "unverified":
                log.warning(
                    "%s:%s: TLS with a verified certificate failed (%s); connected without "
                    "checking the server's certificate (encrypted only if it offers TLS). Give "
                    "rotation.postgres a ca_bundle (RDS's certificates), or tls: require to "
                    "never do this",
                    login.host,
                    login.port,
                    failure,
                )
            return connection
        assert last is not None
        raise last

    def _tls_context(self) -> ssl.SSLContext:
        """A verifying TLS context: the configured CA bundle's certificates, else the
        system's. Made once."""
        if self._tls is None:
            import ssl

            bundle = self.settings.ca_bundle if self.settings is not None else None
            try:
                self._tls = ssl.create_default_context(cadata=bundle.get() if bundle else None)
            except ssl.SSLError as exc:
                raise ConfigError(
                    [f"rotation.postgres.ca_bundle: not PEM certificates ({exc.reason})"]
                ) from None
        return self._tls

    def _open(self, login: Login, ssl_context: ssl.SSLContext | bool | None) -> Any:
        import pg8000.native

        try:
            return pg8000.native.Connection(
                user=login.username,
                password=login.password,
                host=login.host,
                port=login.port,
                database=login.dbname,
                timeout=self.connect_timeout_s,
                ssl_context=ssl_context,
                application_name="pitcrew-rotation",
            )
        except pg8000.native.DatabaseError as exc:
            code = _sqlstate(exc)
            # 28P01 wrong password, 28000 no such role / not allowed to log in.
            if code in ("28P01", "28000"):
                raise LoginRefused(code) from exc
            raise ServiceError("postgres", f"{login.host}: login failed ({code})") from exc
        except (pg8000.native.InterfaceError, OSError) as exc:
            raise TransientServiceError(
                "postgres", f"cannot reach {login.host}:{login.port}: {_why(exc)}"
            ) from exc


def _why(exc: BaseException) -> str:
    """What went wrong connecting, without the connection's details: the exception's type,
    and a TLS failure's reason (pg8000 wraps it in an InterfaceError)."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS: certificate verify failed ({seen.verify_message or seen.reason})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS: {seen.reason or type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "refuses ssl" in text.lower():
        return "the server does not offer TLS"
    return type(exc).__name__


def other_user(username: str, secret_name: str) -> str:
    """The alternating partner: ``app`` <-> ``app_clone``."""
    if username.endswith(CLONE_SUFFIX):
        return username[: -len(CLONE_SUFFIX)]
    clone = username + CLONE_SUFFIX
    if len(clone.encode()) > MAX_IDENTIFIER_BYTES:
        raise BadRequestError(
            f"{secret_name}: {username!r} is too long for a {CLONE_SUFFIX} partner (63 bytes)"
        )
    return clone


def _statement(connection: Any, template: str, **values: str) -> str:
    # The server quotes: %I an identifier, %L a literal (PostgreSQL's format()).
    arguments = ", ".join(f":{name}::text" for name in values)
    rows = connection.run(f"SELECT format('{template}', {arguments})", **values)
    return str(rows[0][0])


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677, the
    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` form of ``pg_authid``).
    PostgreSQL 10 and later accept it in ``PASSWORD '...'`` and store it as given.

    PostgreSQL SASLprep-normalises a password first; an ASCII one is left as it is, which
    is what this computes. A password with other characters is refused here (ValueError)
    rather than stored under a verifier the server would compute differently."""
    if not password.isascii():
        raise ValueError("only an ASCII password gets a verifier computed here")
    salt = salt if salt is not None else secrets.token_bytes(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _password_literal(password: str) -> str:
    # A non-ASCII password (only a human can put one in a secret) goes as text.
    return scram_verifier(password) if password.isascii() else password


def _set_password(connection: Any, role: str, password: str) -> None:
    with _statement_errors(role):
        connection.run(
            _statement(
                connection,
                "ALTER ROLE %I WITH PASSWORD %L",
                role=role,
                pw=_password_literal(password),
            )
        )


def _create_member(connection: Any, role: str, password: str, member_of: str) -> None:
    with _statement_errors(role):
        connection.run("START TRANSACTION")
        try:
            connection.run(
                _statement(
                    connection,
                    "CREATE ROLE %I WITH LOGIN PASSWORD %L",
                    role=role,
                    pw=_password_literal(password),
                )
            )
            connection.run(_statement(connection, "GRANT %I TO %I", of=member_of, role=role))
            connection.run("COMMIT")
        except BaseException:
            connection.run("ROLLBACK")
            raise


@contextmanager
def _statement_errors(role: str) -> Iterator[None]:
    """pg8000's errors while changing ``role`` as pitcrew's: the SQLSTATE and the server's
    message (which names the role, never the statement), the cause kept."""
    import pg8000.native

    try:
        yield
    except pg8000.native.DatabaseError as exc:
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        raise ServiceError(
            "postgres", f"changing role {role}: {detail.get('M', 'failed')} ({_sqlstate(exc)})"
        ) from exc
    except (pg8000.native.InterfaceError, OSError) as exc:
        raise TransientServiceError(
            "postgres", f"changing role {role}: connection lost ({type(exc).__name__})"
        ) from exc


def _sqlstate(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else None
    if isinstance(detail, dict):
        return str(detail.get("C", "?"))
    return "?"
