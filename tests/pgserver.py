"""A throwaway, real PostgreSQL server for the test suite (no mocks, no Docker).

``PostgresServer().start()`` runs ``initdb`` into a fresh temporary directory and starts a
postmaster on ``127.0.0.1`` at a free random port, with its Unix socket and log file inside
that directory. ``cleanup()`` stops it and deletes everything.

Authentication is ``trust`` for the local socket and ``127.0.0.1`` only: this server exists
for tests, listens on loopback only and lives for one test session. Production databases use
``scram-sha-256`` (with ``password_encryption = scram-sha-256``); never copy this setup there.

Durability settings (``fsync``, ``synchronous_commit``, ``full_page_writes``) are left at
their defaults (all ``on``) so tests see the same crash semantics as production. Only
``initdb`` itself runs with ``--no-sync``: the freshly initialised cluster is disposable.

``initdb`` refuses to run as root. When the current uid is 0 (CI runs as root on a fresh
machine) every server-side command runs as the ``postgres`` system user, created by Debian's
``postgresql-common`` package, via ``runuser -u postgres --`` (or ``setpriv`` if ``runuser``
is missing), and the temporary directory is chowned to that user. Otherwise the server runs
as the current user. Clients (psycopg2, SQLAlchemy) always connect over TCP as the database
role ``postgres``, whichever OS user runs the server.

Binaries: ``$PGSERVER_BINDIR`` if set, else ``pg_config --bindir`` and
``/usr/lib/postgresql/*/bin``, preferring major version 15 (production's), else the newest.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql as pgsql

PREFERRED_MAJOR = 15
SERVER_USER = "postgres"  # OS user the server runs as when we are root
DB_ROLE = "postgres"  # database superuser created by initdb -U
HOST = "127.0.0.1"
CMD_TIMEOUT_S = 60  # hard limit for any one pg_ctl/initdb call
READY_TIMEOUT_S = 30  # pg_ctl -w -t and the psycopg2 connect loop
STATEMENT_TIMEOUT_MS = 60_000  # for psql() helper connections
_NEEDED = ("initdb", "pg_ctl", "postgres")


class PostgresNotFound(RuntimeError):
    """No usable PostgreSQL server binaries on this machine (tests should skip)."""


class PostgresStartError(RuntimeError):
    """Binaries exist but the server could not be set up or started (tests should fail)."""


def _major_version(bindir: Path) -> int | None:
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else None


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres; raises PostgresNotFound if there is none."""
    override = os.environ.get("PGSERVER_BINDIR")
    if override:
        path = Path(override)
        if all((path / b).is_file() for b in _NEEDED):
            return path
        raise PostgresNotFound(f"$PGSERVER_BINDIR={override} lacks one of {', '.join(_NEEDED)}")

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]

    found: dict[Path, int] = {}
    for c in candidates:
        c = c.resolve()
        if c not in found and all((c / b).is_file() for b in _NEEDED):
            major = _major_version(c)
            if major is not None:
                found[c] = major
    if not found:
        raise PostgresNotFound(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config "
            "--bindir or /usr/lib/postgresql/*/bin; install postgresql-15 or set "
            "$PGSERVER_BINDIR")
    preferred = [p for p, v in found.items() if v == PREFERRED_MAJOR]
    return preferred[0] if preferred else max(found, key=lambda p: found[p])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """Our environment minus libpq/PG* variables, so nothing outside leaks into the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    def __init__(self, bindir: Path | str | None = None) -> None:
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.tmpdir: Path | None = None
        self.port: int | None = None
        self.host = HOST
        self._running = False
        self._run_as: pwd.struct_passwd | None = None
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            self._setup_run_as_user()

    # ---- paths -------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "data"

    @property
    def log_path(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "postgresql.log"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- running commands as the server's OS user ----------------------------------------
    def _setup_run_as_user(self) -> None:
        try:
            self._run_as = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresStartError(
                f"running as root but there is no '{SERVER_USER}' system user to run the "
                "server as (initdb refuses root); Debian's postgresql-common creates it, or "
                f"create one: useradd --system --home /var/lib/postgresql {SERVER_USER}"
            ) from None
        if shutil.which("runuser"):
            self._prefix = ["runuser", "-u", SERVER_USER, "--"]
        elif shutil.which("setpriv"):
            self._prefix = ["setpriv", f"--reuid={self._run_as.pw_uid}",
                            f"--regid={self._run_as.pw_gid}", "--init-groups", "--"]
        else:
            raise PostgresStartError("running as root but neither runuser nor setpriv exists "
                                     f"to drop privileges to '{SERVER_USER}'")

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _run(self, *args: str, timeout: float = CMD_TIMEOUT_S,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the server user. Output goes to a temp file, not a pipe,
        so a daemon that inherits our descriptors can never make us wait forever."""
        cmd = [*self._prefix, str(self.bindir / args[0]), *args[1:]]
        with tempfile.TemporaryFile(mode="w+") as out:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                      cwd=self.tmpdir, env=_clean_env())
            except subprocess.TimeoutExpired:
                out.seek(0)
                raise PostgresStartError(
                    f"timed out after {timeout}s: {' '.join(cmd)}\n{out.read()}\n"
                    f"--- server log ---\n{self.log_tail()}") from None
            out.seek(0)
            result = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), "")
        if check and result.returncode != 0:
            raise PostgresStartError(
                f"exit {result.returncode}: {' '.join(cmd)}\n{result.stdout}\n"
                f"--- server log ---\n{self.log_tail()}")
        return result

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb into a fresh temp dir and start the server; returns self."""
        if self.tmpdir is not None:
            raise RuntimeError("start() already called; use start_again() after stop()")
        self.tmpdir = Path(tempfile.mkdtemp(prefix="automl-pg-"))
        atexit.register(self.cleanup)  # safety net if the session fixture never finalises
        os.chmod(self.tmpdir, 0o700)
        self._chown(self.tmpdir)
        self._initdb()
        last: PostgresStartError | None = None
        for _ in range(3):  # the random port can be taken between probing and binding
            self.port = free_port()
            self._write_config()
            try:
                self._pg_ctl_start()
                break
            except PostgresStartError as exc:
                last = exc
                if "Address already in use" not in self.log_tail(200):
                    raise
        else:
            assert last is not None
            raise last
        return self

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.datadir), "-U", DB_ROLE, "--encoding=UTF8",
                  "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=trust")
        # Only the local socket and IPv4 loopback; nothing else may connect, even with a
        # password. Tests only: production uses scram-sha-256.
        hba = self.datadir / "pg_hba.conf"
        hba.write_text("# written by tests/pgserver.py: tests only, production uses "
                       "scram-sha-256\n"
                       "local all all trust\n"
                       f"host  all all {HOST}/32 trust\n")

    def _write_config(self) -> None:
        assert self.tmpdir is not None and self.port is not None
        conf = self.datadir / "pgserver.conf"
        conf.write_text(
            "# written by tests/pgserver.py\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.tmpdir}'\n"
            "max_connections = 100\n"
            "idle_in_transaction_session_timeout = '10s'\n"
            "logging_collector = off\n"  # pg_ctl -l writes stderr to the log file
            "log_destination = 'stderr'\n"
            "log_min_messages = warning\n")
        main = self.datadir / "postgresql.conf"
        if "include 'pgserver.conf'" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude 'pgserver.conf'\n")
        for p in (conf, main, self.datadir / "pg_hba.conf"):
            self._chown(p)

    def _pg_ctl_start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.log_path),
                  "-w", "-t", str(READY_TIMEOUT_S), timeout=READY_TIMEOUT_S + 15)
        self._running = True
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self._connect("postgres", connect_timeout=2).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresStartError(
                        f"server on {HOST}:{self.port} not accepting connections after "
                        f"{READY_TIMEOUT_S}s: {exc}\n--- server log ---\n"
                        f"{self.log_tail()}") from exc
                time.sleep(0.1)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart -m MODE; same data directory, same port."""
        self._run("pg_ctl", "restart", "-D", str(self.datadir), "-l", str(self.log_path),
                  "-m", mode, "-w", "-t", str(READY_TIMEOUT_S), timeout=READY_TIMEOUT_S * 2 + 15)
        self._running = True
        self._wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w",
                  "-t", str(READY_TIMEOUT_S), timeout=READY_TIMEOUT_S + 15)
        self._running = False

    def start_again(self) -> None:
        """Start after stop(): same data directory and port."""
        self._pg_ctl_start()

    def cleanup(self) -> None:
        """Stop the server (escalating to immediate, then SIGKILL) and delete the temp dir.
        Idempotent and never raises."""
        if self.tmpdir is None:
            return
        if self.datadir.exists():
            for mode in ("fast", "immediate"):
                try:
                    result = self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode,
                                       "-w", "-t", "15", timeout=25, check=False)
                except PostgresStartError:
                    continue
                if result.returncode == 0 or "Is server running?" in result.stdout:
                    break
            else:
                self._kill_postmaster()
        self._running = False
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None
        atexit.unregister(self.cleanup)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    # ---- clients -----------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        assert self.port is not None, "server not started"
        return f"postgresql+psycopg2://{DB_ROLE}@{HOST}:{self.port}/{dbname}"

    def _connect(self, dbname: str, connect_timeout: int = 5) -> Any:
        return psycopg2.connect(host=HOST, port=self.port, user=DB_ROLE, dbname=dbname,
                                connect_timeout=connect_timeout, sslmode="disable",
                                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")

    def psql(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple] | None:
        """Run one statement with autocommit; returns its rows, or None if it returns none."""
        conn = self._connect(dbname)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else None
        finally:
            conn.close()

    def create_database(self, name: str, template: str | None = None) -> None:
        stmt = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if template:
            stmt = pgsql.SQL("{} TEMPLATE {}").format(stmt, pgsql.Identifier(template))
        self._execute(stmt)

    def drop_database(self, name: str) -> None:
        """Terminate every other connection to ``name``, then drop it (if it exists)."""
        self._execute(pgsql.SQL(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = {} AND pid <> pg_backend_pid()").format(pgsql.Literal(name)))
        # WITH (FORCE) also catches connections that raced in after the terminate.
        self._execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            pgsql.Identifier(name)))

    def _execute(self, stmt: pgsql.Composable, dbname: str = "postgres") -> None:
        conn = self._connect(dbname)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(stmt)
        finally:
            conn.close()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
