"""The lease: of several replicas sharing the database, the one holding it leads.

The lease is a single row whose expiry is reckoned by the database clock. Its holder is a name
(NOTIFIER_REPLICA_NAME) and a token drawn by each process, so two processes with one name never
share it. `fence` grows on every takeover, retake and forced import; a leader's state carries the
fence it was loaded under (see `store.py`), so state loaded under an older lease can never
overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog

from notifier.domain.models import as_utc
from notifier.store.postgres.connection import PostgresConnection
from notifier.store.postgres.errors import PostgresStateError, StaleFence
from notifier.store.postgres.schema import migrate
from notifier.store.postgres.watch import ReplicaWatch, SeenLease, read_clock
from notifier.store.store import StoreBusy

log = structlog.get_logger("notifier.store.postgres")

#: A replica whose clock is further than this from the database's does not lead.
MAX_CLOCK_SKEW = timedelta(minutes=5)

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


class PostgresLease(PostgresConnection):
    """The database connection and this replica's lease on it (`try_acquire`, `release`).

    Every lease renewal also measures this replica's clock against the database's
    (`clock_offset`, `trusted_now`), notices another process holding the lease under our name
    (`name_clash`) and reads when a leader last finished a cycle (`last_cycle_at`).
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
        super().__init__(url, holder=holder, connect_timeout=connect_timeout, wall_clock=wall_clock)
        #: This process's own part of the holder's identity: a namesake never renews our lease.
        self.token = token or secrets.token_hex(8)
        self.lease_ttl = lease_ttl
        self.max_clock_skew = max_clock_skew
        # Lease bookkeeping is local: has_lease() must answer without I/O.
        self._margin = min(1.0, lease_ttl.total_seconds() * 0.1)
        self._fence: int | None = None
        self._deadline: float | None = None
        #: The document as last loaded or saved; forgotten when a new lease begins.
        self._last_saved: bytes | None = None
        self._last_cycle: tuple[datetime, str | None] | None = None
        self._watch = ReplicaWatch(self.address, holder, self.token, max_clock_skew)

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe while other replicas do the same)."""
        self._opened = True
        try:
            await self._run("open", lambda conn: migrate(conn, self.address))
        except BaseException:
            self._opened = False
            await self.close()
            raise

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
            raise PostgresStateError(f"PostgreSQL state at {self.address} has no lease row")
        fence, db_now, holder, token, live, expires_at, last_cycle_at, last_cycle_by = row
        reading = read_clock(float(db_now), sent_wall, received_wall, self.max_clock_skew)
        self._watch.note_clock(reading)
        if last_cycle_at is not None:
            self._last_cycle = (as_utc(last_cycle_at), last_cycle_by)
        self._watch.see_holder(SeenLease(str(holder), str(token), bool(live), as_utc(expires_at)))
        if fence is None:
            if self._fence is not None:
                self._lose_lease("clock skew" if reading.too_far else "acquire")
            return False
        fence = int(fence)
        if fence != self._fence:
            log.info(
                "lease_acquired",
                where=self.address,
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
        return self._watch.offset

    def trusted_now(self) -> datetime:
        """Our clock corrected by the measured offset: the database's idea of now (ours until
        a renewal measured the offset)."""
        return datetime.fromtimestamp(self._wall() + (self._watch.offset or 0.0), UTC)

    @property
    def last_cycle_at(self) -> datetime | None:
        """When any leader last finished a poll cycle, by our clock (the database's stamp less
        the measured offset), as of our last renewal or cycle; None if none ever did."""
        if self._last_cycle is None:
            return None
        return self._last_cycle[0] - timedelta(seconds=self._watch.offset or 0.0)

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
        log.info("lease_released", where=self.address, holder=self.holder, fence=fence)

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

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the lease while the block runs (`once`): taken at the start (`StoreBusy` when
        another replica holds it), renewed every third of its length, released at the end."""
        if not await self.try_acquire():
            raise StoreBusy("another replica holds the lease")

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_ttl.total_seconds() / 3)
                try:
                    await self.try_acquire()
                except PostgresStateError as exc:
                    log.warning("lease_renewal_failed", error=str(exc), leading=self.has_lease())

        renewal = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewal.cancel()  # first, so that no renewal takes the lease back while it lapses
            await asyncio.gather(renewal, return_exceptions=True)
            try:
                await self.release()
            except PostgresStateError as exc:
                log.warning("lease_release_failed", error=str(exc))

    @property
    def clock_skewed(self) -> bool:
        """Whether the last renewal found our clock too far from the database's (not leading)."""
        return self._watch.clock_skewed

    @property
    def name_clash(self) -> bool:
        """Whether another live process holds the lease under this replica's name right now."""
        return self._watch.name_clash

    @property
    def name_clashes(self) -> int:
        """How many such processes were found since start (each logged `replica_name_clash`)."""
        return self._watch.name_clashes

    def _lose_lease(self, during: str) -> None:
        if self._fence is not None:
            log.warning(
                "lease_lost",
                where=self.address,
                holder=self.holder,
                fence=self._fence,
                during=during,
            )
        self._fence = None
        self._deadline = None

    def _stale(self, loaded: int, current: int) -> StaleFence:
        log.warning(
            "save_fenced", where=self.address, holder=self.holder, loaded=loaded, fence=current
        )
        return StaleFence(
            f"{self.holder}: state loaded under fence {loaded} at {self.address}, the lease is "
            f"now at fence {current}; state not saved"
        )
