"""What the PostgreSQL store raises: the database unusable, or the lease no longer ours."""

from __future__ import annotations

from notifier.store.store import StateError


class LeaseLost(Exception):
    """This replica no longer holds the lease; nothing was written."""


class StaleFence(LeaseLost):
    """The state was loaded under an older lease than the one now held; nothing was written.

    The lease is still ours: the caller discards what it built on that state and reloads.
    """


class PostgresStateError(StateError):
    """The database cannot be used; one line naming host, port and database, never the password."""
