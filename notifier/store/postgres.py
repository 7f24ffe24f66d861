"""The state in PostgreSQL, shared by replicas: one holds a lease and polls, the others stand by.

The lease is a single row whose expiry is reckoned by the database clock. Its holder is a name
(NOTIFIER_REPLICA_NAME) and a token drawn by each process, so two processes with one name never
share it. `fence` grows on every takeover, retake and forced import; a leader's state carries the
fence it was loaded under, and its save checks that fence under a row lock in the same statement
as the write, so state loaded under an older lease can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from notifier.domain.models import STATE_VERSION, Mute, NotifierState, as_utc
from notifier.store.file import StateError

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
    (
        # The holder's per-process token: a name alone let two processes share one lease.
        "ALTER TABLE notifier_lease ADD COLUMN holder_token text NOT NULL DEFAULT ''",
        # When a leader last finished a poll cycle, by the database clock, for every replica.
        "ALTER TABLE notifier_lease ADD COLUMN last_cycle_at timestamptz",
        "ALTER TABLE notifier_lease ADD COLUMN last_cycle_by text",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Server-side bounds for our session: no statement, lock wait or idle transaction lasts longer,
#: so a dead replica's open transaction cannot hold the lease row for ever.
STATEMENT_TIMEOUT = timedelta(seconds=30)
LOCK_TIMEOUT = timedelta(seconds=10)
IDLE_IN_TRANSACTION_TIMEOUT = timedelta(seconds=10)

#: A replica whose clock is further than this from the database's does not lead.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: A measured clock offset is logged again once it moved by more than this many seconds.
OFFSET_LOG_STEP = 1.0

# One statement, so one server-side transaction: the lease row is locked only while it runs,
# never while the client thinks (a leader frozen mid-save cannot hold up a takeover).
_SAVE_DOCUMENT = """
WITH lease AS (
    SELECT fence FROM notifier_lease
    WHERE id = 1 AND holder = %(holder)s AND holder_token = %(token)s AND fence = %(fence)s
        AND expires_at > now()
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

# Take, renew or retake the lease, and read the clock and the row as they were, in one statement.
# SET expressions see the row as it was: a renewal (same name, token and fence, unexpired) keeps
# the fence, anything else is a takeover. Only the same name AND token may renew: a process
# sharing our name is another holder. The database refuses a replica whose clock (`sent_at`, its
# time when it sent the statement) is further than `max_skew` seconds from the database's.
_ACQUIRE = """
WITH clock AS (SELECT clock_timestamp() AS db_now),
seen AS (
    SELECT holder, holder_token, expires_at, expires_at > now() AS live, last_cycle_at,
        last_cycle_by
    FROM notifier_lease WHERE id = 1
),
taken AS (
    UPDATE notifier_lease SET
        fence = CASE WHEN holder = %(holder)s AND holder_token = %(token)s
                          AND fence = %(fence)s AND expires_at > now()
                     THEN fence ELSE fence + 1 END,
        acquired_at = CASE WHEN holder = %(holder)s AND holder_token = %(token)s
                                AND fence = %(fence)s AND expires_at > now()
                           THEN acquired_at ELSE now() END,
        holder = %(holder)s,
        holder_token = %(token)s,
        expires_at = now() + %(ttl)s
    WHERE id = 1
        AND (expires_at <= now() OR (holder = %(holder)s AND holder_token = %(token)s))
        AND abs(extract(epoch FROM (SELECT db_now FROM clock))::float8 - %(sent_at)s)
            <= %(max_skew)s
    RETURNING fence
)
SELECT (SELECT fence FROM taken), extract(epoch FROM clock.db_now)::float8, seen.holder,
    seen.holder_token, seen.live, seen.expires_at, seen.last_cycle_at, seen.last_cycle_by
FROM clock, seen
"""

_RECORD_CYCLE = """
UPDATE notifier_lease SET last_cycle_at = clock_timestamp(), last_cycle_by = %(holder)s
WHERE id = 1 AND holder = %(holder)s AND holder_token = %(token)s AND fence = %(fence)s
RETURNING last_cycle_at
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

#: Said wherever a URL cannot be used as written: how to write a password that holds / or @.
_ENCODE_HINT = (
    "if the user name or password holds special characters, percent-encode them "
    "(/ as %2F, @ as %40, : as %3A, % as %25, # as %23)"
)


class LeaseLost(Exception):
    """This replica no longer holds the lease; nothing was written."""


class StaleFence(LeaseLost):
    """The state was loaded under an older lease than the one now held; nothing was written.

    The lease is still ours: the caller discards what it built on that state and reloads.
    """


class PostgresStateError(StateError):
    """The database cannot be used; one line naming host, port and database, never the password."""


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds the lease; `expires_in` is in seconds by the database clock (negative: lapsed).

    `holder` is the replica's name, `token` the holding process's own; `last_cycle_at` (database
    clock) is when a leader last finished a poll cycle, and `last_cycle_by` which replica.
    """

    holder: str
    fence: int
    expires_in: float
    token: str = ""
    last_cycle_at: datetime | None = None
    last_cycle_by: str | None = None


@dataclass(frozen=True)
class _SeenLease:
    """The lease row as a renewal found it, before its own update."""

    holder: str
    token: str
    live: bool
    expires_at: datetime


@dataclass(frozen=True)
class ClockReading:
    """Our clock against the database's, from one statement's round trip."""

    #: The database's clock minus ours, in seconds, against the round trip's midpoint.
    offset: float
    round_trip: float
    #: As the database judged it: our clock when we sent the statement against its own.
    too_far: bool


def read_clock(db_now: float, sent: float, received: float, bound: timedelta) -> ClockReading:
    """The reading from the database's clock `db_now` and ours at sending and receiving (Unix
    seconds); too far when beyond `bound`, exactly as the acquire statement decides."""
    return ClockReading(
        offset=db_now - (sent + received) / 2,
        round_trip=received - sent,
        too_far=abs(db_now - sent) > bound.total_seconds(),
    )


def _renewed_since(before: _SeenLease | None, seen: _SeenLease) -> bool:
    """Whether the holder seen before renewed its lease since: a live process, not a dead one."""
    return before is not None and before.token == seen.token and seen.expires_at > before.expires_at


class PostgresStore:
    """Notifier state in PostgreSQL for several replicas, of which the lease holder writes.

    One connection, used by one operation at a time; a dropped connection is replaced by the next
    operation (retried once when the old connection turned out dead), so a server restart costs
    the operations that ran while it was down, each failing within `connect_timeout`.

    Every lease renewal also measures this replica's clock against the database's
    (`clock_offset`, `trusted_now`), notices another process holding the lease under our name
    (`name_clash`) and reads when a leader last finished a cycle (`last_cycle_at`);
    `last_reachable_at` says when the database last answered.
    """

    def __init__(
        self,
        url: str,
        *,
        holder: str,
        lease_ttl: timedelta,
        connect_timeout: float = 10.0,
        token: str | None = None,
        max_clock_skew: timedelta = MAX_CLOCK_SKEW,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not holder:
            raise ValueError("holder must name this replica")
        if lease_ttl <= timedelta(0):
            raise ValueError("lease_ttl must be positive")
        self._url = url
        self._secrets = {url, *url_secrets(url)}
        self._host, self._port, dbname = _target(url)
        self._dbname = self._scrub(dbname)
        self.holder = holder
        #: This process's own part of the holder's identity: a namesake never renews our lease.
        self.token = token or secrets.token_hex(8)
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        self.max_clock_skew = max_clock_skew
        self._wall = wall_clock
        # Lease bookkeeping is local: has_lease() must answer without I/O.
        self._margin = min(1.0, lease_ttl.total_seconds() * 0.1)
        self._fence: int | None = None
        self._deadline: float | None = None
        self._last_saved: bytes | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._opened = False
        self._reachable_at: float | None = None
        self._offset: float | None = None
        self._offset_logged: float | None = None
        self._last_cycle: tuple[datetime, str | None] | None = None
        self._namesake: _SeenLease | None = None
        #: Whether the last renewal found our clock too far from the database's (not leading).
        self.clock_skewed = False
        #: Whether another live process holds the lease under this replica's name right now.
        self.name_clash = False
        #: How many such processes were found since start (each logged `replica_name_clash`).
        self.name_clashes = 0

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

    async def load_leased(self) -> tuple[NotifierState, int]:
        """The state and the fence it is loaded under, for a leader to save with that fence.

        The fence is read before the state: whatever another holder wrote before our lease began
        is in the state, and whatever it wrote later comes with a newer fence, which refuses the
        save. Raises LeaseLost when we do not hold the lease.
        """
        fence = self._fence
        if fence is None or not self.has_lease():
            raise LeaseLost(f"{self.holder} does not hold the lease at {self.where}")
        return await self.load(), fence

    async def save(self, state: NotifierState, *, fence: int | None = None) -> bool:
        """Write the document (not its mutes) when changed, only under the lease it was loaded
        under: `fence` (from `load_leased`; default the lease's current fence).

        True if written. Raises StaleFence, writing nothing and keeping the lease, when we now
        hold the lease under a newer fence than `fence`; LeaseLost, having written nothing, when
        the lease row is no longer ours (another holder, another fence, or lapsed by the database
        clock).
        """
        data = _document_bytes(state)
        current = self._fence
        if current is None:
            raise LeaseLost(f"{self.holder} does not hold the lease at {self.where}")
        wanted = current if fence is None else fence
        if wanted != current:
            raise self._stale(wanted, current)
        if data == self._last_saved:
            return False

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            cur = await conn.execute(
                _SAVE_DOCUMENT,
                {
                    "document": data.decode(),
                    "holder": self.holder,
                    "token": self.token,
                    "fence": wanted,
                },
            )
            if await cur.fetchone() is None:
                raise LeaseLost(
                    f"{self.holder} lost the lease at {self.where} (fence {wanted}); "
                    "state not saved"
                )

        try:
            await self._run("save", write)
        except LeaseLost:
            if self._fence is not None and self._fence != wanted:
                # A renewal took the lease again while this save waited: that lease stands.
                raise self._stale(wanted, self._fence) from None
            self._lose_lease("save")
            raise
        self._last_saved = data
        return True

    async def try_acquire(self) -> bool:
        """Take the lease when free or lapsed, or renew ours; False if another holds it or our
        clock is too far from the database's (`clock_skewed`, logged `clock_skew_too_large`).

        A lease lost and taken again comes with a new fence, like any takeover.
        """
        ttl = self.lease_ttl
        skew = self.max_clock_skew.total_seconds()

        async def acquire(
            conn: psycopg.AsyncConnection[Any],
        ) -> tuple[tuple[Any, ...] | None, float, float, float]:
            sent_at, sent_wall = time.monotonic(), self._wall()
            cur = await conn.execute(
                _ACQUIRE,
                {
                    "holder": self.holder,
                    "token": self.token,
                    "fence": -1 if self._fence is None else self._fence,
                    "ttl": ttl,
                    "sent_at": sent_wall,
                    "max_skew": skew,
                },
            )
            return await cur.fetchone(), sent_at, sent_wall, self._wall()

        row, sent_at, sent_wall, received_wall = await self._run("acquire lease", acquire)
        if row is None:
            raise PostgresStateError(f"PostgreSQL state at {self.where} has no lease row")
        fence, db_now, holder, token, live, expires_at, last_cycle_at, last_cycle_by = row
        reading = read_clock(float(db_now), sent_wall, received_wall, self.max_clock_skew)
        self._note_clock(reading)
        if last_cycle_at is not None:
            self._last_cycle = (as_utc(last_cycle_at), last_cycle_by)
        self._watch_namesake(_SeenLease(str(holder), str(token), bool(live), as_utc(expires_at)))
        if fence is None:
            if self._fence is not None:
                self._lose_lease("clock skew" if reading.too_far else "acquire")
            return False
        fence = int(fence)
        if fence != self._fence:
            log.info(
                "lease_acquired",
                where=self.where,
                holder=self.holder,
                fence=fence,
                token=self.token,
            )
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

    def holds(self, fence: int) -> bool:
        """Whether we may act now on state loaded under `fence`: the lease is ours and no other
        lease (ours or not) began since. What a leader's deliveries check, one by one."""
        return self.has_lease() and self._fence == fence

    async def record_cycle(self, *, fence: int) -> bool:
        """Stamp the lease row: a leader finished a poll cycle on state loaded under `fence`.

        False (nothing stamped) when the lease has moved on since. Every replica reads the stamp
        at its renewals (`last_cycle_at`).
        """

        async def stamp(conn: psycopg.AsyncConnection[Any]) -> datetime | None:
            cur = await conn.execute(
                _RECORD_CYCLE, {"holder": self.holder, "token": self.token, "fence": fence}
            )
            row = await cur.fetchone()
            return as_utc(row[0]) if row else None

        stamped = await self._run("record cycle", stamp)
        if stamped is None:
            return False
        self._last_cycle = (stamped, self.holder)
        return True

    @property
    def clock_offset(self) -> float | None:
        """The database's clock minus ours, in seconds, at the last renewal (None before one).

        Measured against the midpoint of the statement's round trip.
        """
        return self._offset

    def trusted_now(self) -> datetime:
        """Our clock corrected by the measured offset: the database's idea of now (ours until
        a renewal measured the offset)."""
        return datetime.fromtimestamp(self._wall() + (self._offset or 0.0), UTC)

    @property
    def last_reachable_at(self) -> datetime | None:
        """When the database last answered (by our clock); None if it never did."""
        if self._reachable_at is None:
            return None
        return datetime.fromtimestamp(self._reachable_at, UTC)

    @property
    def last_cycle_at(self) -> datetime | None:
        """When any leader last finished a poll cycle, by our clock (the database's stamp less
        the measured offset), as of our last renewal or cycle; None if none ever did."""
        if self._last_cycle is None:
            return None
        return self._last_cycle[0] - timedelta(seconds=self._offset or 0.0)

    @property
    def last_cycle_by(self) -> str | None:
        """Which replica (by name) finished that cycle."""
        return None if self._last_cycle is None else self._last_cycle[1]

    async def release(self) -> None:
        """Let the lease lapse now if it is ours, so a standby takes over at once."""
        fence = self._fence
        self._deadline = None
        self._fence = None
        if fence is None:
            return

        async def lapse(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE notifier_lease SET expires_at = now() WHERE id = 1 AND holder = %s "
                "AND holder_token = %s AND fence = %s AND expires_at > now()",
                (self.holder, self.token, fence),
            )

        await self._run("release lease", lapse)
        log.info("lease_released", where=self.where, holder=self.holder, fence=fence)

    async def lease(self) -> LeaseInfo | None:
        """The lease as the database sees it; None when no replica ever took it."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> LeaseInfo | None:
            cur = await conn.execute(
                "SELECT holder, fence, extract(epoch FROM expires_at - now())::float8, "
                "holder_token, last_cycle_at, last_cycle_by FROM notifier_lease WHERE id = 1"
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return None
            return LeaseInfo(
                holder=str(row[0]),
                fence=int(row[1]),
                expires_in=float(row[2]),
                token=str(row[3]),
                last_cycle_at=as_utc(row[4]) if row[4] is not None else None,
                last_cycle_by=row[5],
            )

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

    async def import_state(self, state: NotifierState, *, force: bool = False) -> str | None:
        """Replace the document and the mutes together, in one transaction (never one alone).

        Refused while another holder's lease is live, unless `force`: then that leader is fenced
        out. Every import starts a new fence, so state loaded before it can no longer be saved:
        the leader's next save fails, and its next renewal (within a third of the lease) retakes
        the lease under the new fence, stops its deliveries and reloads the imported state.
        Returns the name of the live leader fenced out, if any.
        """
        data = _document_bytes(state).decode()

        async def replace(conn: psycopg.AsyncConnection[Any]) -> str | None:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT holder, holder_token, fence, expires_at > now(), "
                    "extract(epoch FROM expires_at - now())::float8 "
                    "FROM notifier_lease WHERE id = 1 FOR UPDATE"
                )
                row = await cur.fetchone()
                if row is None:
                    raise PostgresStateError(f"PostgreSQL state at {self.where} has no lease row")
                holder, token, fence, live, remaining = row
                ours = holder == self.holder and token == self.token and fence == self._fence
                if live and not ours and not force:
                    raise PostgresStateError(
                        f"refusing to import into {self.where}: {holder} holds the lease "
                        f"(fence {fence}) for another {remaining:.0f}s; stop it or force"
                    )
                if not ours:
                    fence += 1
                    await conn.execute(
                        "UPDATE notifier_lease SET fence = %s WHERE id = 1", (fence,)
                    )
                await conn.execute(
                    _IMPORT_DOCUMENT, {"document": data, "holder": self.holder, "fence": fence}
                )
                await conn.execute("DELETE FROM notifier_mutes")
                async with conn.cursor() as cursor:
                    await cursor.executemany(_INSERT_MUTE, [_mute_row(m) for m in state.mutes])
                return str(holder) if live and not ours else None

        fenced_out = await self._run("import", replace)
        self._last_saved = None
        log.info(
            "state_imported",
            where=self.where,
            forced=force,
            mutes=len(state.mutes),
            fenced_out=fenced_out,
        )
        return fenced_out

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

    def _stale(self, loaded: int, current: int) -> StaleFence:
        log.warning(
            "save_fenced", where=self.where, holder=self.holder, loaded=loaded, fence=current
        )
        return StaleFence(
            f"{self.holder}: state loaded under fence {loaded} at {self.where}, the lease is "
            f"now at fence {current}; state not saved"
        )

    def _note_clock(self, reading: ClockReading) -> None:
        """Take in one reading of the database's clock: log the offset when it moved, and the
        refusal to lead when it begins and ends."""
        self._offset = reading.offset
        logged = self._offset_logged
        if logged is None or abs(reading.offset - logged) > OFFSET_LOG_STEP:
            self._offset_logged = reading.offset
            log.info(
                "clock_offset_measured",
                where=self.where,
                offset_seconds=round(reading.offset, 3),
                round_trip_seconds=round(reading.round_trip, 3),
            )
        if reading.too_far and not self.clock_skewed:
            log.error(
                "clock_skew_too_large",
                where=self.where,
                replica=self.holder,
                offset_seconds=round(reading.offset, 3),
                bound_seconds=self.max_clock_skew.total_seconds(),
                consequence="this replica does not lead until its clock is corrected (NTP)",
            )
        elif self.clock_skewed and not reading.too_far:
            log.info(
                "clock_skew_resolved", where=self.where, offset_seconds=round(reading.offset, 3)
            )
        self.clock_skewed = reading.too_far

    def _watch_namesake(self, seen: _SeenLease) -> None:
        """Notice another process holding the lease under our name: a clash once we saw it renew
        (a predecessor that died, as a restarted replica finds, never renews)."""
        if not (seen.live and seen.holder == self.holder and seen.token != self.token):
            if self.name_clash:
                log.info("replica_name_clash_over", where=self.where, replica=self.holder)
            self.name_clash = False
            self._namesake = None
            return
        before, self._namesake = self._namesake, seen
        if _renewed_since(before, seen) and not self.name_clash:
            self.name_clash = True
            self.name_clashes += 1
            log.error(
                "replica_name_clash",
                where=self.where,
                replica=self.holder,
                consequence="another live process holds the lease under this name; this one "
                "stands by: give every replica its own NOTIFIER_REPLICA_NAME",
            )

    async def _run(
        self, what: str, operation: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """Run `operation` on our connection, connecting first when needed.

        A connection found dead is replaced and the operation retried once (every operation here
        is safe to repeat); every failure becomes one PostgresStateError line. Any answer from
        the server, a refusal included, counts as the database being reachable.
        """
        if not self._opened:
            raise RuntimeError(f"{self!r} is not open")
        async with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                conn = await self._connect(what)
                try:
                    async with asyncio.timeout(self._operation_timeout):
                        result = await operation(conn)
                except TimeoutError:
                    await self._discard()
                    raise PostgresStateError(
                        f"PostgreSQL at {self.where}: {what} timed out after "
                        f"{self._operation_timeout:.0f}s"
                    ) from None
                except (LeaseLost, PostgresStateError):
                    self._reachable_at = self._wall()
                    raise
                except psycopg.Error as exc:
                    if not conn.broken and not conn.closed:
                        self._reachable_at = self._wall()
                        raise self._error(f"{what} failed", exc) from None
                    await self._discard()
                    if fresh or attempt == 2:
                        raise self._error(f"{what} failed", exc) from None
                    log.info("postgres_reconnecting", where=self.where, during=what)
                else:
                    self._reachable_at = self._wall()
                    return result
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


def url_secrets(url: str) -> set[str]:
    """What of a PostgreSQL URL no message or log may show: its password as libpq reads it and
    as written (raw, percent-decoded, percent-encoded), whatever characters it holds.

    As written is the text between the first ':' of the user information and the last '@': what
    a person meant, where libpq stops at the first '/' or '@' of an unencoded password.
    """
    found: set[str] = set()
    try:
        password = conninfo_to_dict(url).get("password")
    except (psycopg.Error, ValueError):
        password = None
    if password:
        found.add(str(password))
    _, scheme, rest = url.partition("://")
    if scheme and "@" in rest:
        user_info = rest.rpartition("@")[0]
        _, colon, written = user_info.partition(":")
        if colon and written:
            found |= {written, unquote(written), quote(written, safe="")}
    return {secret for secret in found if secret}


def _target(url: str) -> tuple[str, str, str]:
    """Host, port and database of `url` as libpq reads them, refusing a URL it would misread.

    An unencoded '/' or '@' in the password makes libpq read part of the password as the host,
    port or database, which messages name: such a URL is refused, naming nothing of it. libpq's
    own parse errors quote the offending text; only what precedes the quote is kept.
    """
    try:
        params = conninfo_to_dict(url)
    except (psycopg.Error, ValueError) as exc:
        kind = _first_line(exc).split('"', 1)[0].strip().rstrip(":").strip()
        raise PostgresStateError(
            f"invalid PostgreSQL URL: {kind or 'cannot be parsed'}; {_ENCODE_HINT}"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    if "@" in host + port + dbname or not re.fullmatch(r"[0-9]+(,[0-9]*)*", port):
        raise PostgresStateError(
            "invalid PostgreSQL URL: its host, port or database cannot be read as written; "
            f"{_ENCODE_HINT}"
        )
    return host, port, dbname
