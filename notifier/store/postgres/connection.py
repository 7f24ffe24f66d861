"""One connection to the notifier's PostgreSQL database, used by one operation at a time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import structlog

from notifier.store.postgres.errors import LeaseLost, PostgresStateError
from notifier.store.postgres.url import first_line, target, url_secrets

log = structlog.get_logger("notifier.store.postgres")

T = TypeVar("T")

#: Server-side bounds for our session: no statement, lock wait or idle transaction lasts longer,
#: so a dead replica's open transaction cannot hold the lease row for ever.
STATEMENT_TIMEOUT = timedelta(seconds=30)
LOCK_TIMEOUT = timedelta(seconds=10)
IDLE_IN_TRANSACTION_TIMEOUT = timedelta(seconds=10)


class PostgresConnection:
    """The database at `url`, named in messages by `address` and never by its password.

    One connection, used by one operation at a time; a dropped connection is replaced by the next
    operation (retried once when the old connection turned out dead), so a server restart costs
    the operations that ran while it was down, each failing within `connect_timeout`.
    `last_reachable_at` says when the database last answered.
    """

    def __init__(
        self,
        url: str,
        *,
        holder: str,
        connect_timeout: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secrets = {url, *url_secrets(url)}
        self._host, self._port, dbname = target(url)
        self._dbname = self._scrub(dbname)
        self.holder = holder
        self.connect_timeout = connect_timeout
        self._wall = wall_clock
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._opened = False
        self._reachable_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self._host!r}, port={self._port!r}, "
            f"dbname={self._dbname!r}, holder={self.holder!r})"
        )

    @property
    def address(self) -> str:
        """How messages name the database: host:port/dbname."""
        return f"{self._host}:{self._port}/{self._dbname}"

    async def close(self) -> None:
        """Drop the connection; the lease is left as it is (see `release`)."""
        async with self._lock:
            await self._discard()
        self._opened = False

    @property
    def last_reachable_at(self) -> datetime | None:
        """When the database last answered (by our clock); None if it never did."""
        if self._reachable_at is None:
            return None
        return datetime.fromtimestamp(self._reachable_at, UTC)

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
                        f"PostgreSQL at {self.address}: {what} timed out after "
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
                    log.info("postgres_reconnecting", where=self.address, during=what)
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
                f"PostgreSQL at {self.address}: cannot connect ({what}): "
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
            f"PostgreSQL at {self.address}: {what}: {self._scrub(first_line(exc))}"
        )

    def _scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _millis(value: timedelta) -> str:
    return str(int(value.total_seconds() * 1000))
