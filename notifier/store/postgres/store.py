"""The notifier's state in PostgreSQL: one document and a table of mutes, written by the lease
holder only, under the fence its state was loaded under.

A leader's save checks that fence under a row lock in the same statement as the write. Mutes
and outbox requests need no lease: `mute`, `unmute` and `outbox retry/drop` write them beside the
running leader, which reads them every cycle.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import psycopg
import structlog
from pydantic import ValidationError

from notifier.domain.models import STATE_VERSION, Mute, NotifierState, as_utc
from notifier.domain.mutes import MuteSelector, lift, with_mute
from notifier.domain.outbox_requests import REQUESTS_MAX, OutboxRequest
from notifier.store.postgres.errors import LeaseLost, PostgresStateError
from notifier.store.postgres.lease import PostgresLease

log = structlog.get_logger("notifier.store.postgres")

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

_INSERT_MUTE = """
INSERT INTO notifier_mutes (id, monitor_id, tag, until, reason, created_at)
VALUES (%(id)s, %(monitor_id)s, %(tag)s, %(until)s, %(reason)s, %(created_at)s)
ON CONFLICT (id) DO UPDATE SET monitor_id = EXCLUDED.monitor_id, tag = EXCLUDED.tag,
    until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at
"""

# Refused (no row) when `max` requests already wait: a lock keeps two adders from both passing.
_INSERT_REQUEST = """
INSERT INTO notifier_outbox_requests (id, action, notification_id, destination, requested_at)
SELECT %(id)s, %(action)s, %(notification_id)s, %(destination)s, %(requested_at)s
WHERE (SELECT count(*) FROM notifier_outbox_requests) < %(max)s
RETURNING 1
"""

_SELECT_REQUESTS = (
    "SELECT id, action, notification_id, destination, requested_at "
    "FROM notifier_outbox_requests ORDER BY requested_at, id"
)

_SELECT_MUTES = (
    "SELECT id, monitor_id, tag, until, reason, created_at FROM notifier_mutes "
    "ORDER BY created_at, id"
)


class PostgresStore(PostgresLease):
    """Notifier state in PostgreSQL for several replicas, of which the lease holder writes.

    A `StateStore`: `load`/`save` for a single daemon holding the lease, `load_leased` and
    `save(fence=...)` for a leader (`run/leadership.py`), mutes and `state export/import` for the
    command line, which need no lease.
    """

    @property
    def where(self) -> str:
        """How messages name the store: "PostgreSQL host:port/dbname"."""
        return f"PostgreSQL {self.address}"

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
            raise LeaseLost(f"{self.holder} does not hold the lease at {self.address}")
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
            raise LeaseLost(f"{self.holder} does not hold the lease at {self.address}")
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
                    f"{self.holder} lost the lease at {self.address} (fence {wanted}); "
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

    async def fresh_mutes(self) -> list[Mute]:
        """The mutes as they are now: `mute` and `unmute` write them beside the leader."""
        return await self.mutes()

    async def mutes(self) -> list[Mute]:
        """Every mute, oldest first."""
        return await self._run("read mutes", _read_mutes)

    async def add_mute(self, mute: Mute, now: datetime) -> None:
        """Set `mute` as `with_mute` says (replacing one with its ID, dropping those run out by
        `now`), in one transaction. Needs no lease."""

        async def insert(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                before = await _lock_mutes(conn)
                after = with_mute(before, mute, now)
                await _delete_mutes(conn, before, after)
                await conn.execute(_INSERT_MUTE, _mute_row(mute))

        await self._run("add mute", insert)

    async def remove_mutes(self, selector: MuteSelector, now: datetime) -> list[Mute]:
        """Lift the mutes `selector` matches as `lift` says (dropping those run out by `now`), in
        one transaction; returns the lifted ones. Needs no lease."""

        async def remove(conn: psycopg.AsyncConnection[Any]) -> list[Mute]:
            async with conn.transaction():
                before = await _lock_mutes(conn)
                kept, lifted = lift(before, selector, now)
                await _delete_mutes(conn, before, kept)
                return lifted

        return await self._run("remove mutes", remove)

    async def outbox_requests(self) -> list[OutboxRequest]:
        """The requests `outbox retry/drop` left for the leader's next cycle, oldest first."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> list[OutboxRequest]:
            cur = await conn.execute(_SELECT_REQUESTS)
            return [
                OutboxRequest(
                    id=row[0],
                    action=row[1],
                    notification_id=row[2],
                    destination=row[3],
                    requested_at=as_utc(row[4]),
                )
                for row in await cur.fetchall()
            ]

        return await self._run("read outbox requests", read)

    async def request_outbox(self, request: OutboxRequest) -> None:
        """Leave `request` for the leader's next cycle. Needs no lease."""

        async def insert(conn: psycopg.AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                await conn.execute(
                    "LOCK TABLE notifier_outbox_requests IN SHARE ROW EXCLUSIVE MODE"
                )
                cur = await conn.execute(
                    _INSERT_REQUEST, {**request.model_dump(), "max": REQUESTS_MAX}
                )
                return await cur.fetchone() is not None

        if not await self._run("add outbox request", insert):
            raise PostgresStateError(
                f"PostgreSQL state at {self.address}: {REQUESTS_MAX} outbox requests already "
                "wait for a cycle; is a leader running?"
            )

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        """Delete the requests with these IDs (those added meanwhile stay)."""
        if not ids:
            return

        async def delete(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "DELETE FROM notifier_outbox_requests WHERE id = ANY(%s)", (list(ids),)
            )

        await self._run("settle outbox requests", delete)

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
                    raise PostgresStateError(f"PostgreSQL state at {self.address} has no lease row")
                holder, token, fence, live, remaining = row
                ours = holder == self.holder and token == self.token and fence == self._fence
                if live and not ours and not force:
                    raise PostgresStateError(
                        f"refusing to import into {self.address}: {holder} holds the lease "
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
            where=self.address,
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
                    f"PostgreSQL state at {self.address} is not a notifier state "
                    f"(unexpected content at {where})"
                ) from None
        else:
            version = state.version
            if version <= STATE_VERSION:
                return state
        raise PostgresStateError(
            f"PostgreSQL state at {self.address} has version {version}, newer than this "
            f"notifier understands ({STATE_VERSION}): upgrade datafold-notifier"
        )


async def _lock_mutes(conn: psycopg.AsyncConnection[Any]) -> list[Mute]:
    """The mutes, with the table locked against other writers until the transaction ends."""
    await conn.execute("LOCK TABLE notifier_mutes IN SHARE ROW EXCLUSIVE MODE")
    return await _read_mutes(conn)


async def _delete_mutes(
    conn: psycopg.AsyncConnection[Any], before: list[Mute], after: list[Mute]
) -> None:
    """Delete the mutes of `before` that `after` no longer has."""
    kept = {mute.id for mute in after}
    gone = [mute.id for mute in before if mute.id not in kept]
    if gone:
        await conn.execute("DELETE FROM notifier_mutes WHERE id = ANY(%s)", (gone,))


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
