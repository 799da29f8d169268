"""Throwaway PostgreSQL and pgbouncer servers for the test session (a pytest plugin).

Fixtures (session scoped, started on first use, stopped at the end of the session):

``pg`` -> :class:`PostgresServer`
    A private PostgreSQL cluster from the Debian binaries (``/usr/lib/postgresql/<ver>/bin``):
    ``initdb`` + ``pg_ctl`` run as user ``postgres`` (through ``runuser`` when we are
    root), data directory and log in a temporary directory, listening on 127.0.0.1 only
    at a free port, its Unix socket in that directory (never ``/run/postgresql``),
    SCRAM-SHA-256 password authentication for every TCP connection, superuser
    ``postgres`` with a random password. Helpers::

        pg.url()                          postgresql+psycopg://postgres:<pw>@127.0.0.1:<port>/postgres
        pg.url("app", driver="postgresql+asyncpg", user="bob", password="p@ss")
        pg.conninfo("app")                libpq key=value string for psycopg.connect
        pg.dsn                            conninfo() of the default database
        pg.create_database("app")         drops (WITH FORCE) and creates it; returns the name
        pg.create_role("bob", "p@ss/:#")  a login role with any password; returns the name
        pg.execute(sql, params, database=None) -> list of rows (autocommit, as superuser)
        pg.stop() / pg.start() / pg.restart()
        pg.server_version                 e.g. 150013

``pg_tls`` -> :class:`PostgresServer`
    A second cluster like ``pg`` that takes TCP connections over TLS only (hostssl),
    with a certificate for 127.0.0.1/localhost from a throwaway CA at ``pg_tls.ca_file``.

``pg_small`` -> :class:`PostgresServer`
    Like ``pg`` with ``max_connections = 20`` (``PostgresServer(max_connections=...)``),
    for the capacity check.
``replica`` -> :class:`ReplicaServer`
    A streaming hot-standby replica of ``pg`` (``pg_basebackup -R`` from its cluster,
    which initdb already set up for it: ``wal_level = replica`` and a ``replication``
    line in pg_hba), on its own free port, same superuser and password.
    ``replica.wait_caught_up()`` waits until it has replayed all the primary wrote.

``pgbouncer`` -> :class:`PgbouncerServer`
    pgbouncer in transaction mode in front of ``pg``: ``default_pool_size = 2``, every
    database (``* = host=127.0.0.1 port=<pg port>``), clients authenticated with SCRAM
    through ``auth_query`` as ``postgres``, so any role made with ``pg.create_role`` works.
    ``pgbouncer.url(...)`` takes the same arguments as ``pg.url``; ``pgbouncer.show("POOLS")``
    reads the admin console.

When the binaries are missing the dependent tests are skipped with the reason, except
when ``CI=true``: then they fail (CI must never skip them). ``scripts/system-deps``
installs them. Mark such tests ``@pytest.mark.postgres`` / ``@pytest.mark.pgbouncer``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

__all__ = ["PgbouncerServer", "PostgresServer", "ReplicaServer", "find_pg_bindir", "free_port"]

SERVER_USER = "postgres"


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<ver>/bin`` holding ``initdb`` and ``pg_ctl``."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    found = []
    for child in root.iterdir():
        bindir = child / "bin"
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            with contextlib.suppress(ValueError):
                found.append((float(child.name), bindir))
    return max(found)[1] if found else None


def find_pgbouncer() -> Path | None:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def _unavailable(what: str) -> None:
    """Skip (developer machine) or fail (CI) when a server binary is missing."""
    reason = f"{what}; run scripts/system-deps to install it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _as_server_user(argv: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *argv]
    return list(argv)


def _run(argv: Sequence[str], *, what: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        _as_server_user(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def _make_private_dir(prefix: str) -> Path:
    """A fresh directory in /tmp owned by the server user (mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    return path


def _write_owned(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o600)


def _pg_url(
    *,
    driver: str,
    user: str,
    password: str | None,
    host: str,
    port: int,
    database: str,
) -> str:
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"{driver}://{auth}@{host}:{port}/{quote(database, safe='')}"


def _make_conninfo(parts: dict[str, str]) -> str:
    """libpq ``key='value'`` pairs, quoted as libpq reads them (backslash escapes)."""

    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quoted(v)}" for k, v in parts.items())


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def make_certificates() -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert for 127.0.0.1/localhost signed by it, server key), PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbprofile test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


# --------------------------------------------------------------------------- PostgreSQL


class _Addressable:
    """``url()`` for a server that has host, port, dbname, user and password."""

    host: str
    port: int
    dbname: str
    user: str
    password: str

    def url(
        self,
        database: str | None = None,
        *,
        driver: str = "postgresql+psycopg",
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        """A SQLAlchemy URL (password percent-encoded). ``user`` without ``password``
        means no password in the URL; the default is the superuser and its password."""
        if user is None:
            user, password = self.user, self.password
        return _pg_url(
            driver=driver,
            user=user,
            password=password,
            host=self.host,
            port=self.port,
            database=database or self.dbname,
        )


class PostgresServer(_Addressable):
    """One throwaway PostgreSQL cluster. See the module docstring."""

    host = "127.0.0.1"

    def __init__(self, bindir: Path, *, tls: bool = False, max_connections: int = 200) -> None:
        self.bindir = bindir
        self.tls = tls
        self.max_connections = max_connections
        self.ca_file: str | None = None
        self.user = SERVER_USER
        self.password = "pw-" + secrets.token_hex(12)
        self.dbname = "postgres"
        self.base = _make_private_dir("dbprofile-pg-")
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self.socket_dir = str(self.base)
        self.port = 0
        self.running = False

    # -- life cycle

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        _write_owned(pwfile, self.password + "\n")
        _run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            what="initdb",
        )
        pwfile.unlink()
        self.port = free_port()
        conf = self.datadir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write(
                "\n# tests/pg.py\n"
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "password_encryption = 'scram-sha-256'\n"
                f"max_connections = {self.max_connections}\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "deadlock_timeout = '200ms'\n"
                "log_min_messages = warning\n"
                "log_min_error_statement = panic\n"
            )
        if self.tls:
            self._setup_tls()

    def _setup_tls(self) -> None:
        """Certificates from a throwaway CA; TCP connections accepted over TLS only."""
        ca_pem, cert_pem, key_pem = make_certificates()
        ca = self.base / "ca.crt"
        ca.write_bytes(ca_pem)
        ca.chmod(0o644)
        self.ca_file = str(ca)
        _write_owned(self.datadir / "server.crt", cert_pem.decode())
        _write_owned(self.datadir / "server.key", key_pem.decode())
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        _write_owned(
            self.datadir / "pg_hba.conf",
            f"local all all trust\nhostssl all all {self.host}/32 scram-sha-256\n",
        )

    def start(self) -> None:
        for _attempt in range(3):
            try:
                _run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.logfile),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    what="pg_ctl start",
                )
            except RuntimeError:
                # The port we picked may have been taken meanwhile: pick another one.
                self._set_port(free_port())
                continue
            self.running = True
            return
        raise RuntimeError(f"PostgreSQL did not start; see {self.logfile}")

    def _set_port(self, port: int) -> None:
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text(encoding="utf-8").replace(f"port = {self.port}\n", f"port = {port}\n")
        conf.write_text(text, encoding="utf-8")
        self.port = port

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect every client; ``immediate``: crash-like)."""
        if not self.running:
            return
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"],
            what="pg_ctl stop",
        )
        self.running = False

    def restart(self) -> None:
        """Stop (fast: every connection is closed by the server) and start again, same port."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- addresses

    def conninfo(
        self, database: str | None = None, *, user: str | None = None, password: str | None = None
    ) -> str:
        """A libpq ``key=value`` connection string (for ``psycopg.connect``)."""
        if user is None:
            user, password = self.user, self.password
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": user,
            "dbname": database or self.dbname,
        }
        if password is not None:
            parts["password"] = password
        return _make_conninfo(parts)

    @property
    def dsn(self) -> str:
        return self.conninfo()

    # -- administration (as the superuser, autocommit)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, *, database: str | None = None
    ) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.conninfo(database), autocommit=True) as conn:
            cur = conn.execute(sql.encode(), params)  # bytes: no prepared-statement type check
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """Create database ``name`` (dropped first if it exists); return its name."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if owner is not None:
            sql += f" OWNER {_quote_ident(owner)}"
        self.execute(sql)
        return name

    def create_role(
        self,
        name: str,
        password: str | None = None,
        *,
        superuser: bool = False,
        login: bool = True,
    ) -> str:
        """Create (or replace) role ``name`` with ``password`` (any characters); return it."""
        exists = self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
        verb = "ALTER" if exists else "CREATE"
        sql = f"{verb} ROLE {_quote_ident(name)}"
        sql += " SUPERUSER" if superuser else " NOSUPERUSER"
        sql += " LOGIN" if login else " NOLOGIN"
        sql += f" PASSWORD {_quote_literal(password)}" if password is not None else " PASSWORD NULL"
        self.execute(sql)
        return name

    @property
    def server_version(self) -> int:
        return int(self.execute("SHOW server_version_num")[0][0])

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ReplicaServer(PostgresServer):
    """A streaming replica of a :class:`PostgresServer`: ``pg_basebackup -R`` of its
    cluster into a new data directory, started as a hot standby on a free port."""

    def __init__(self, bindir: Path, primary: PostgresServer) -> None:
        super().__init__(bindir)
        self.primary = primary
        self.password = primary.password

    def init(self) -> None:
        _run(
            [
                str(self.bindir / "pg_basebackup"),
                "-D",
                str(self.datadir),
                "-R",  # standby.signal + primary_conninfo
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-d",
                self.primary.conninfo(),
            ],
            what="pg_basebackup",
        )
        self.port = free_port()
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write(
                "\n# tests/pg.py: the replica\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "hot_standby = on\n"
                "wal_receiver_status_interval = 1s\n"
            )

    def wait_caught_up(self, timeout: float = 15) -> None:
        """Until the replica has replayed everything the primary has written."""
        # The insert position: with synchronous_commit = off a commit may not be written yet.
        target = self.primary.execute("SELECT pg_current_wal_insert_lsn()::text")[0][0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = self.execute("SELECT pg_last_wal_replay_lsn() < %s::pg_lsn", [target])[0][0]
            if behind is False:
                return
            time.sleep(0.05)
        raise RuntimeError(f"replica did not catch up within {timeout} s")


# --------------------------------------------------------------------------- pgbouncer


class PgbouncerServer(_Addressable):
    """pgbouncer in transaction mode in front of a :class:`PostgresServer`."""

    host = "127.0.0.1"

    def __init__(
        self, binary: Path, pg: PostgresServer, *, pool_size: int = 2, settings: str = ""
    ) -> None:
        self.binary = binary
        self.pg = pg
        self.pool_size = pool_size
        self.settings = settings  # extra [pgbouncer] lines, e.g. "query_wait_timeout = 2\n"
        self.user = pg.user
        self.password = pg.password
        self.dbname = pg.dbname
        self.base = _make_private_dir("dbprofile-pgbouncer-")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        authfile = self.base / "userlist.txt"
        _write_owned(authfile, f'"{self.pg.user}" "{self.pg.password}"\n')
        for _attempt in range(3):
            self.port = free_port()
            ini = self.base / "pgbouncer.ini"
            _write_owned(
                ini,
                "[databases]\n"
                f"* = host={self.pg.host} port={self.pg.port}\n"
                "[pgbouncer]\n"
                f"listen_addr = {self.host}\n"
                f"listen_port = {self.port}\n"
                f"unix_socket_dir = {self.base}\n"
                "auth_type = scram-sha-256\n"
                f"auth_file = {authfile}\n"
                f"auth_user = {self.pg.user}\n"
                "auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1\n"
                f"admin_users = {self.pg.user}\n"
                "pool_mode = transaction\n"
                f"default_pool_size = {self.pool_size}\n"
                "min_pool_size = 0\n"
                "reserve_pool_size = 0\n"
                "max_client_conn = 200\n"
                "max_db_connections = 0\n"
                "server_reset_query =\n"
                "ignore_startup_parameters = extra_float_digits,options,search_path\n"
                f"logfile = {self.base / 'pgbouncer.log'}\n"
                f"pidfile = {self.base / 'pgbouncer.pid'}\n" + self.settings,
            )
            # pgbouncer switches user itself (-u): the process we signal is pgbouncer.
            argv = [str(self.binary), str(ini)]
            if os.geteuid() == 0:
                argv[1:1] = ["-u", SERVER_USER]
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((self.host, self.port), timeout=0.5),
                ):
                    return
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"pgbouncer did not start; see {self.base / 'pgbouncer.log'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT: safe shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (``POOLS``, ``SERVERS``, ``STATS``…)."""
        import psycopg
        from psycopg.rows import dict_row

        conninfo = _make_conninfo(
            {
                "host": self.host,
                "port": str(self.port),
                "dbname": "pgbouncer",
                "user": self.user,
                "password": self.password,
            }
        )
        with psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=None, row_factory=dict_row
        ) as conn:
            # The admin console speaks only the simple query protocol.
            cur = psycopg.ClientCursor(conn, row_factory=dict_row)
            cur.execute(f"SHOW {what}")
            return list(cur.fetchall())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session (see module docstring)."""
    bindir = _require_pg_bindir()
    yield from _serve_postgres(bindir, tls=False)


@pytest.fixture(scope="session")
def pg_tls() -> Iterator[PostgresServer]:
    """A second throwaway PostgreSQL that accepts TCP connections over TLS only.

    Its certificate (for 127.0.0.1 and localhost) is signed by a throwaway CA whose
    certificate is at ``pg_tls.ca_file`` (for ``sslrootcert`` / ``verify-full``).
    """
    bindir = _require_pg_bindir()
    yield from _serve_postgres(bindir, tls=True)


@pytest.fixture(scope="session")
def pg_small() -> Iterator[PostgresServer]:
    """A third throwaway PostgreSQL with ``max_connections = 20`` (capacity checks)."""
    bindir = _require_pg_bindir()
    yield from _serve_postgres(bindir, tls=False, max_connections=20)


def _require_pg_bindir() -> Path:
    bindir = find_pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            _unavailable(f"user {SERVER_USER!r} does not exist (comes with the postgresql package)")
    return bindir


def _serve_postgres(
    bindir: Path, *, tls: bool, max_connections: int = 200
) -> Iterator[PostgresServer]:
    server = PostgresServer(bindir, tls=tls, max_connections=max_connections)
    atexit.register(server.cleanup)  # also when the session dies without teardown
    try:
        server.init()
        server.start()
    except Exception as exc:
        server.cleanup()
        pytest.fail(f"could not start PostgreSQL: {exc}\n{server.log_tail()}", pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def replica(pg: PostgresServer) -> Iterator[ReplicaServer]:
    """A streaming hot-standby replica of ``pg`` for the whole session (``replica.stop()``
    and ``replica.start()`` simulate its loss; ``replica.wait_caught_up()``)."""
    bindir = _require_pg_bindir()
    server = ReplicaServer(bindir, pg)
    atexit.register(server.cleanup)
    try:
        server.init()
        server.start()
        server.wait_caught_up()
    except Exception as exc:
        server.cleanup()
        pytest.fail(f"could not start the replica: {exc}\n{server.log_tail()}", pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pgbouncer(pg: PostgresServer) -> Iterator[PgbouncerServer]:
    """pgbouncer (transaction mode, pool size 2) in front of ``pg`` for the whole session."""
    binary = find_pgbouncer()
    if binary is None:
        _unavailable("pgbouncer not found")
    assert binary is not None
    server = PgbouncerServer(binary, pg, pool_size=2)
    atexit.register(server.cleanup)
    try:
        server.start()
    except Exception as exc:
        server.cleanup()
        pytest.fail(f"could not start pgbouncer: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()
