"""A private PostgreSQL server for tests: its own data directory, port and password.

`initdb` and `postgres` refuse to run as root, so as root they run as the `postgres` system user
(Debian's package creates it) through `runuser`; otherwise they run as we are. One server serves
the session; each test gets an empty database of its own from `fresh_database()`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest

from notifier.store.postgres import PostgresStore

USER = "notifier_test"
#: Distinctive, so a test can assert that no message or repr ever shows it.
PASSWORD = "pw-Zq7-vexing-marmot-41"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
#: The lease of a store from `opened()` unless a test asks for another.
LEASE_TTL = timedelta(seconds=1)


def find_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres: PATH first, then Debian's versioned dirs."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [*debian, Path("/usr/local/pgsql/bin")]
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One initdb'd cluster under a temporary directory, listening on 127.0.0.1:`port`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self._owner: pwd.struct_passwd | None = None
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
            runuser = shutil.which("runuser")
            self._prefix = (
                [runuser, "-u", "postgres", "--"]
                if runuser
                else ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
            )
        # Not under pytest's tmp dir: as root that is mode 0700 and the postgres user cannot
        # reach into it.
        self.root = Path(tempfile.mkdtemp(prefix="notifier-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.logfile = self.root / "server.log"
        self.port = _free_port()
        self.running = False
        self._databases = itertools.count(1)

    @property
    def url(self) -> str:
        """The maintenance database; tests use `fresh_database()`."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """A URL for `dbname` with the test user's password in it."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        """initdb with scram password auth, then settings for speed (no fsync) and our port."""
        self.sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o600)
        if self._owner is not None:
            for path in (self.root, self.sockets, pwfile):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/fakes/postgres.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
            )

    def start(self) -> None:
        """Start (again) on the same port and data: the other half of a "partition" test."""
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "30", "start"
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{self.log_tail()}") from None
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; clients' connections drop (fast) or die with it (immediate)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def fresh_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for failure messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def cleanup(self) -> None:
        """Stop the server if it runs and delete everything it wrote."""
        if self.running:
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [*self._prefix, str(self.bindir / program), *args]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.root,  # postgres must be able to stat its working directory
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise RuntimeError(f"{program} failed ({done.returncode}): {output}")


def unavailable(reason: str) -> NoReturn:
    """Skip where a tool the test needs is missing; in CI (CI set) fail: nothing skips silently."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session. Import this fixture where it is needed."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
            "run tools/ensure-postgres.sh"
        )
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_server: PostgresServer) -> str:
    """An empty database of this test's own, on the session's server (restarted if stopped)."""
    if not postgres_server.running:
        postgres_server.start()
    return postgres_server.fresh_database()


@asynccontextmanager
async def opened(
    url: str,
    holder: str = "a",
    ttl: timedelta = LEASE_TTL,
    *,
    connect_timeout: float = 3.0,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store of replica `holder`, opened (its schema made) and closed after."""
    store = PostgresStore(
        url,
        holder=holder,
        lease_ttl=ttl,
        connect_timeout=connect_timeout,
        wall_clock=wall_clock,
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()
