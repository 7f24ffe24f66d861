"""The PostgreSQL schema: one migration per version, applied in one transaction at `open`."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog

from notifier.store.postgres.errors import PostgresStateError

log = structlog.get_logger("notifier.store.postgres")

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
    (
        # `outbox retry` and `outbox drop`: requests the leader applies at its next cycle.
        """CREATE TABLE notifier_outbox_requests (
            id text PRIMARY KEY,
            action text NOT NULL,
            notification_id text,
            destination text,
            requested_at timestamptz NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: psycopg.AsyncConnection[Any], address: str) -> None:
    """Bring the schema up to `SCHEMA_VERSION` (safe while other replicas do the same)."""
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
                f"PostgreSQL state at {address} has schema version {current}, newer "
                f"than this notifier knows ({SCHEMA_VERSION}): upgrade datafold-notifier"
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
            log.info("postgres_schema_migrated", where=address, version=version + 1)
        await conn.execute(
            "INSERT INTO notifier_schema_version (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
            (SCHEMA_VERSION,),
        )
