"""The state in PostgreSQL, shared by replicas: one holds a lease and polls, the others stand by.

The lease is a single row whose expiry is reckoned by the database clock; `fence` grows on every
takeover and every save checks it under a row lock in the same transaction as the write, so a
replica that lost the lease can never overwrite the document of the one that took it over.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from notifier.models import STATE_VERSION, Mute, NotifierState, as_utc
from notifier.state import StateError

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Key of the transaction-scoped advisory lock that serialises concurrent migrations.
MIGRATION_LOCK = 0x6E6F7469666965  # "notifie"

#: Each entry is one schema version: its statements run in order, in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE notifier_state (
            id smallint PRIMARY KEY CHECK (id = 1),
            document text NOT NULL,
            saved_at timestamptz NOT NULL,
            saved_by text NOT NULL,
            fence bigint NOT NULL
        )""",
        """CREATE TABLE notifier_lease (
            id smallint PRIMARY KEY CHECK (id = 1),
            holder text NOT NULL,
            fence bigint NOT NULL,
            acquired_at timestamptz,
            expires_at timestamptz NOT NULL
        )""",
        "INSERT INTO notifier_lease (id, holder, fence, expires_at) VALUES (1, '', 0, 'epoch')",
        """CREATE TABLE notifier_mutes (
            id text PRIMARY KEY,
            monitor_id bigint,
            tag text,
            until timestamptz NOT NULL,
            reason text,
            created_at timestamptz NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Server-side bounds for our session: no statement, lock wait or idle transaction lasts longer,
#: so a dead replica's open transaction cannot hold the lease row for ever.
STATEMENT_TIMEOUT = timedelta(seconds=30)
LOCK_TIMEOUT = timedelta(seconds=10)
IDLE_IN_TRANSACTION_TIMEOUT = timedelta(seconds=10)

# One statement, so one server-side transaction: the lease row is locked only while it runs,
# never while the client thinks (a leader frozen mid-save cannot hold up a takeover).
_SAVE_DOCUMENT = """
WITH lease AS (
    SELECT fence FROM notifier_lease
    WHERE id = 1 AND holder = %(holder)s AND fence = %(fence)s AND expires_at > now()
    FOR UPDATE
)
INSERT INTO notifier_state (id, document, saved_at, saved_by, fence)
SELECT 1, %(document)s, now(), %(holder)s, lease.fence FROM lease
ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document, saved_at = EXCLUDED.saved_at,
    saved_by = EXCLUDED.saved_by, fence = EXCLUDED.fence
RETURNING 1
"""

# `state import`: with the lease row locked by the importing transaction.
_IMPORT_DOCUMENT = """
INSERT INTO notifier_state (id, document, saved_at, saved_by, fence)
VALUES (1, %(document)s, now(), %(holder)s, %(fence)s)
ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document, saved_at = EXCLUDED.saved_at,
    saved_by = EXCLUDED.saved_by, fence = EXCLUDED.fence
"""

# SET expressions see the row as it was: renewal keeps the fence, anything else is a takeover.
_ACQUIRE = """
UPDATE notifier_lease SET
    fence = CASE WHEN holder = %(holder)s AND fence = %(fence)s AND expires_at > now()
                 THEN fence ELSE fence + 1 END,
    acquired_at = CASE WHEN holder = %(holder)s AND fence = %(fence)s AND expires_at > now()
                       THEN acquired_at ELSE now() END,
    holder = %(holder)s,
    expires_at = now() + %(ttl)s
WHERE id = 1 AND (expires_at <= now() OR holder = %(holder)s)
RETURNING fence
"""

_INSERT_MUTE = """
INSERT INTO notifier_mutes (id, monitor_id, tag, until, reason, created_at)
VALUES (%(id)s, %(monitor_id)s, %(tag)s, %(until)s, %(reason)s, %(created_at)s)
ON CONFLICT (id) DO UPDATE SET monitor_id = EXCLUDED.monitor_id, tag = EXCLUDED.tag,
    until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at
"""

_SELECT_MUTES = (
    "SELECT id, monitor_id, tag, until, reason, created_at FROM notifier_mutes "
    "ORDER BY created_at, id"
)


class LeaseLost(Exception):
    """This replica no longer holds the lease; nothing was written."""


class PostgresStateError(StateError):
    """The database cannot be used; one line naming host, port and database, never the password."""


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds the lease; `expires_in` is in seconds by the database clock (negative: lapsed)."""

    holder: str
    fence: int
    expires_in: float


class PostgresStore:
    """Notifier state in PostgreSQL for several replicas, of which the lease holder writes.

    One connection, used by one operation at a time; a dropped connection is replaced by the next
    operation (retried once when the old connection turned out dead), so a server restart costs
    the operations that ran while it was down, each failing within `connect_timeout`.
    """

    def __init__(
        self, url: str, *, holder: str, lease_ttl: timedelta, connect_timeout: float = 10.0
    ) -> None:
        if not holder:
            raise ValueError("holder must name this replica")
        if lease_ttl <= timedelta(0):
            raise ValueError("lease_ttl must be positive")
        self._url = url
        self._secrets = _secrets_of(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise PostgresStateError(
                f"invalid PostgreSQL URL: {self._scrub(_first_line(exc))}"
            ) from None
        if params.get("password"):
            self._secrets.add(str(params["password"]))
        self._host = str(params.get("host") or "localhost")
        self._port = str(params.get("port") or "5432")
        self._dbname = self._scrub(str(params.get("dbname") or params.get("user") or "postgres"))
        self.holder = holder
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        # Lease bookkeeping is local: has_lease() must answer without I/O.
        self._margin = min(1.0, lease_ttl.total_seconds() * 0.1)
        self._fence: int | None = None
        self._deadline: float | None = None
        self._last_saved: bytes | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._opened = False

    def __repr__(self) -> str:
        return (
            f"PostgresStore(host={self._host!r}, port={self._port!r}, dbname={self._dbname!r}, "
            f"holder={self.holder!r})"
        )

    @property
    def where(self) -> str:
        """How messages name the database: host:port/dbname."""
        return f"{self._host}:{self._port}/{self._dbname}"

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe while other replicas do the same)."""

        async def migrate(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS notifier_schema_version ("
                    "id smallint PRIMARY KEY CHECK (id = 1), version integer NOT NULL)"
                )
                cur = await conn.execute("SELECT version FROM notifier_schema_version")
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise PostgresStateError(
                        f"PostgreSQL state at {self.where} has schema version {current}, newer "
                        f"than this notifier knows ({SCHEMA_VERSION}): upgrade datafold-notifier"
                    )
                for version in range(current, SCHEMA_VERSION):
                    for statement in MIGRATIONS[version]:
                        await conn.execute(statement)
                    log.info("postgres_schema_migrated", where=self.where, version=version + 1)
                await conn.execute(
                    "INSERT INTO notifier_schema_version (id, version) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                    (SCHEMA_VERSION,),
                )

        self._opened = True
        try:
            await self._run("open", migrate)
        except BaseException:
            self._opened = False
            await self.close()
            raise

    async def close(self) -> None:
        """Drop the connection; the lease is left as it is (see `release`)."""
        async with self._lock:
            await self._discard()
        self._opened = False

    async def load(self) -> NotifierState:
        """The saved document with the mutes table in `mutes`; an empty state when none saved."""

        document, mutes = await self._run("load", _read_document)
        if document is None:
            state = NotifierState()
            self._last_saved = None
        else:
            state = self._parse(document)
            self._last_saved = document.encode()
        state.mutes = mutes
        return state

    async def save(self, state: NotifierState) -> bool:
        """Write the document (not its mutes) when changed, only while holding the lease.

        True if written. Raises LeaseLost, having written nothing, when the lease row is no longer
        ours (another holder, another fence, or lapsed by the database clock).
        """
        data = _document_bytes(state)
        fence = self._fence
        if fence is None:
            raise LeaseLost(f"{self.holder} does not hold the lease at {self.where}")
        if data == self._last_saved:
            return False

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            cur = await conn.execute(
                _SAVE_DOCUMENT, {"document": data.decode(), "holder": self.holder, "fence": fence}
            )
            if await cur.fetchone() is None:
                raise LeaseLost(
                    f"{self.holder} lost the lease at {self.where} (fence {fence}); state not saved"
                )

        try:
            await self._run("save", write)
        except LeaseLost:
            self._lose_lease("save")
            raise
        self._last_saved = data
        return True

    async def try_acquire(self) -> bool:
        """Take the lease when free, lapsed or ours (renewing it if we hold it); False if not."""
        ttl = self.lease_ttl
        sent_at = 0.0

        async def acquire(conn: psycopg.AsyncConnection[Any]) -> int | None:
            nonlocal sent_at
            sent_at = time.monotonic()
            cur = await conn.execute(
                _ACQUIRE,
                {
                    "holder": self.holder,
                    "fence": -1 if self._fence is None else self._fence,
                    "ttl": ttl,
                },
            )
            row = await cur.fetchone()
            return int(row[0]) if row else None

        fence = await self._run("acquire lease", acquire)
        if fence is None:
            if self._fence is not None:
                self._lose_lease("acquire")
            return False
        if fence != self._fence:
            log.info("lease_acquired", where=self.where, holder=self.holder, fence=fence)
            # Another holder may have written since our last save: never skip the next one.
            self._last_saved = None
        self._fence = fence
        self._deadline = sent_at + ttl.total_seconds() - self._margin
        return True

    @property
    def fence(self) -> int | None:
        """The fence of the lease we hold (it grows with every takeover), or None."""
        return self._fence

    def has_lease(self) -> bool:
        """Whether we may act as leader now: ends before the database lets another replica in."""
        return self._deadline is not None and time.monotonic() < self._deadline

    async def release(self) -> None:
        """Let the lease lapse now if it is ours, so a standby takes over at once."""
        fence = self._fence
        self._deadline = None
        self._fence = None
        if fence is None:
            return

        async def lapse(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE notifier_lease SET expires_at = now() "
                "WHERE id = 1 AND holder = %s AND fence = %s AND expires_at > now()",
                (self.holder, fence),
            )

        await self._run("release lease", lapse)
        log.info("lease_released", where=self.where, holder=self.holder, fence=fence)

    async def lease(self) -> LeaseInfo | None:
        """The lease as the database sees it; None when no replica ever took it."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> LeaseInfo | None:
            cur = await conn.execute(
                "SELECT holder, fence, extract(epoch FROM expires_at - now())::float8 "
                "FROM notifier_lease WHERE id = 1"
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return None
            return LeaseInfo(holder=str(row[0]), fence=int(row[1]), expires_in=float(row[2]))

        return await self._run("read lease", read)

    async def mutes(self) -> list[Mute]:
        """Every mute, oldest first."""
        return await self._run("read mutes", _read_mutes)

    async def add_mute(self, mute: Mute) -> None:
        """Add a mute, or replace the one with the same ID. Needs no lease."""

        async def insert(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_INSERT_MUTE, _mute_row(mute))

        await self._run("add mute", insert)

    async def remove_mutes(
        self, *, monitor_id: int | None = None, tag: str | None = None, mute_id: str | None = None
    ) -> list[Mute]:
        """Remove the mutes matching every filter given (tags ignore case); returns them.

        At least one filter is required, so that a missing argument never lifts every mute.
        """
        if monitor_id is None and tag is None and mute_id is None:
            raise ValueError("remove_mutes needs monitor_id, tag or mute_id")
        wanted_tag = tag.strip().casefold() if tag is not None else None

        def matches(mute: Mute) -> bool:
            return (
                (monitor_id is None or mute.monitor_id == monitor_id)
                and (mute_id is None or mute.id == mute_id)
                and (
                    wanted_tag is None
                    or (mute.tag is not None and mute.tag.strip().casefold() == wanted_tag)
                )
            )

        async def remove(conn: psycopg.AsyncConnection[Any]) -> list[Mute]:
            async with conn.transaction():
                await conn.execute("LOCK TABLE notifier_mutes IN SHARE ROW EXCLUSIVE MODE")
                removed = [mute for mute in await _read_mutes(conn) if matches(mute)]
                if removed:
                    await conn.execute(
                        "DELETE FROM notifier_mutes WHERE id = ANY(%s)",
                        ([mute.id for mute in removed],),
                    )
                return removed

        return await self._run("remove mutes", remove)

    async def export_state(self) -> NotifierState:
        """A consistent copy of the document and the mutes; needs no lease and changes nothing."""

        document, mutes = await self._run("export", _read_document)
        state = NotifierState() if document is None else self._parse(document)
        state.mutes = mutes
        return state

    async def import_state(self, state: NotifierState, *, force: bool = False) -> None:
        """Replace the document and the mutes; refused while another holder's lease is live."""
        data = _document_bytes(state).decode()

        async def replace(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT holder, fence, expires_at > now(), "
                    "extract(epoch FROM expires_at - now())::float8 "
                    "FROM notifier_lease WHERE id = 1 FOR UPDATE"
                )
                row = await cur.fetchone()
                if row is None:
                    raise PostgresStateError(f"PostgreSQL state at {self.where} has no lease row")
                holder, fence, live, remaining = row
                ours = holder == self.holder and fence == self._fence
                if live and not ours and not force:
                    raise PostgresStateError(
                        f"refusing to import into {self.where}: {holder} holds the lease "
                        f"(fence {fence}) for another {remaining:.0f}s; stop it or force"
                    )
                await conn.execute(
                    _IMPORT_DOCUMENT, {"document": data, "holder": self.holder, "fence": fence}
                )
                await conn.execute("DELETE FROM notifier_mutes")
                async with conn.cursor() as cursor:
                    await cursor.executemany(_INSERT_MUTE, [_mute_row(m) for m in state.mutes])

        await self._run("import", replace)
        self._last_saved = None
        log.info("state_imported", where=self.where, forced=force, mutes=len(state.mutes))

    def _parse(self, document: str) -> NotifierState:
        try:
            state = NotifierState.model_validate_json(document)
        except ValidationError as exc:
            version = _version_of(document)
            if version is None or version <= STATE_VERSION:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first.get("loc", ())) or "top level"
                raise PostgresStateError(
                    f"PostgreSQL state at {self.where} is not a notifier state "
                    f"(unexpected content at {where})"
                ) from None
        else:
            version = state.version
            if version <= STATE_VERSION:
                return state
        raise PostgresStateError(
            f"PostgreSQL state at {self.where} has version {version}, newer than this "
            f"notifier understands ({STATE_VERSION}): upgrade datafold-notifier"
        )

    def _lose_lease(self, during: str) -> None:
        if self._fence is not None:
            log.warning(
                "lease_lost", where=self.where, holder=self.holder, fence=self._fence, during=during
            )
        self._fence = None
        self._deadline = None

    async def _run(
        self, what: str, operation: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """Run `operation` on our connection, connecting first when needed.

        A connection found dead is replaced and the operation retried once (every operation here
        is safe to repeat); every failure becomes one PostgresStateError line.
        """
        if not self._opened:
            raise RuntimeError(f"{self!r} is not open")
        async with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                conn = await self._connect(what)
                try:
                    async with asyncio.timeout(self._operation_timeout):
                        return await operation(conn)
                except TimeoutError:
                    await self._discard()
                    raise PostgresStateError(
                        f"PostgreSQL at {self.where}: {what} timed out after "
                        f"{self._operation_timeout:.0f}s"
                    ) from None
                except psycopg.Error as exc:
                    if not conn.broken and not conn.closed:
                        raise self._error(f"{what} failed", exc) from None
                    await self._discard()
                    if fresh or attempt == 2:
                        raise self._error(f"{what} failed", exc) from None
                    log.info("postgres_reconnecting", where=self.where, during=what)
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _operation_timeout(self) -> float:
        return STATEMENT_TIMEOUT.total_seconds() + self.connect_timeout

    async def _connect(self, what: str) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        await self._discard()
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(2, math.ceil(self.connect_timeout)),
                    application_name=f"datafold-notifier {self.holder}"[:63],
                )
                try:
                    await conn.execute(
                        "SELECT set_config('TimeZone', 'UTC', false), "
                        "set_config('statement_timeout', %s, false), "
                        "set_config('lock_timeout', %s, false), "
                        "set_config('idle_in_transaction_session_timeout', %s, false)",
                        (
                            _millis(STATEMENT_TIMEOUT),
                            _millis(LOCK_TIMEOUT),
                            _millis(IDLE_IN_TRANSACTION_TIMEOUT),
                        ),
                    )
                except BaseException:
                    await conn.close()
                    raise
        except TimeoutError:
            raise PostgresStateError(
                f"PostgreSQL at {self.where}: cannot connect ({what}): "
                f"no answer within {self.connect_timeout:g}s"
            ) from None
        except psycopg.Error as exc:
            raise self._error(f"cannot connect ({what})", exc) from None
        self._conn = conn
        return conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                pass

    def _error(self, what: str, exc: psycopg.Error) -> PostgresStateError:
        return PostgresStateError(
            f"PostgreSQL at {self.where}: {what}: {self._scrub(_first_line(exc))}"
        )

    def _scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


async def _read_document(conn: psycopg.AsyncConnection[Any]) -> tuple[str | None, list[Mute]]:
    """The document and the mutes, read in one consistent snapshot."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute("SELECT document FROM notifier_state WHERE id = 1")
        row = await cur.fetchone()
        return (str(row[0]) if row else None), await _read_mutes(conn)


async def _read_mutes(conn: psycopg.AsyncConnection[Any]) -> list[Mute]:
    cur = await conn.execute(_SELECT_MUTES)
    return [
        Mute(
            id=row[0],
            monitor_id=row[1],
            tag=row[2],
            until=as_utc(row[3]),
            reason=row[4],
            created_at=as_utc(row[5]),
        )
        for row in await cur.fetchall()
    ]


def _mute_row(mute: Mute) -> dict[str, Any]:
    return {
        "id": mute.id,
        "monitor_id": mute.monitor_id,
        "tag": mute.tag,
        "until": mute.until,
        "reason": mute.reason,
        "created_at": mute.created_at,
    }


def _document_bytes(state: NotifierState) -> bytes:
    """The document as stored: the whole state but its mutes, which live in their own table."""
    return state.model_dump_json(exclude={"mutes"}).encode()


def _version_of(document: str) -> int | None:
    try:
        parsed = json.loads(document)
    except ValueError:
        return None
    version = parsed.get("version") if isinstance(parsed, dict) else None
    return version if isinstance(version, int) else None


def _millis(value: timedelta) -> str:
    return str(int(value.total_seconds() * 1000))


def _first_line(exc: BaseException) -> str:
    """psycopg messages span lines (DETAIL, HINT, server lists): keep them on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _secrets_of(url: str) -> set[str]:
    """What must never appear in a message: the URL itself and its password, as written and
    decoded."""
    secrets = {url}
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets |= {password, unquote(password)}
    return {secret for secret in secrets if secret}
