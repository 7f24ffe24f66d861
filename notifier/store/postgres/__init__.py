"""The state in PostgreSQL, shared by replicas: one holds a lease and polls, the others stand by.

`store.py` keeps the state (a document and the mutes), `lease.py` the lease with its fence,
`connection.py` the one connection, `schema.py` the migrations, `watch.py` what renewals tell
about clocks and namesakes, `url.py` how a URL is read without showing its password.
"""

from __future__ import annotations

from notifier.store.postgres.errors import LeaseLost, PostgresStateError, StaleFence
from notifier.store.postgres.lease import MAX_CLOCK_SKEW, LeaseInfo
from notifier.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from notifier.store.postgres.store import PostgresStore
from notifier.store.postgres.url import url_secrets
from notifier.store.postgres.watch import ClockReading, read_clock

__all__ = [
    "MAX_CLOCK_SKEW",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ClockReading",
    "LeaseInfo",
    "LeaseLost",
    "PostgresStateError",
    "PostgresStore",
    "StaleFence",
    "read_clock",
    "url_secrets",
]
