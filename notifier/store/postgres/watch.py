"""What each lease renewal tells a replica about the others: how far its clock is from the
database's, and whether another live process holds the lease under its name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

log = structlog.get_logger("notifier.store.postgres")

#: A measured clock offset is logged again once it moved by more than this many seconds.
OFFSET_LOG_STEP = 1.0


@dataclass(frozen=True)
class SeenLease:
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


def renewed_since(before: SeenLease | None, seen: SeenLease) -> bool:
    """Whether the holder seen before renewed its lease since: a live process, not a dead one."""
    return before is not None and before.token == seen.token and seen.expires_at > before.expires_at


class ReplicaWatch:
    """Takes in what each renewal saw, and logs when it changes: the clock offset, a clock too
    far to lead, another live process holding the lease under this replica's name."""

    def __init__(self, address: str, holder: str, token: str, max_clock_skew: timedelta) -> None:
        self.address = address
        self.holder = holder
        self.token = token
        self.max_clock_skew = max_clock_skew
        #: The database's clock minus ours, in seconds, at the last renewal (None before one).
        self.offset: float | None = None
        self._offset_logged: float | None = None
        self._namesake: SeenLease | None = None
        #: Whether the last renewal found our clock too far from the database's (not leading).
        self.clock_skewed = False
        #: Whether another live process holds the lease under this replica's name right now.
        self.name_clash = False
        #: How many such processes were found since start (each logged `replica_name_clash`).
        self.name_clashes = 0

    def note_clock(self, reading: ClockReading) -> None:
        """Take in one reading of the database's clock: log the offset when it moved, and the
        refusal to lead when it begins and ends."""
        self.offset = reading.offset
        logged = self._offset_logged
        if logged is None or abs(reading.offset - logged) > OFFSET_LOG_STEP:
            self._offset_logged = reading.offset
            log.info(
                "clock_offset_measured",
                where=self.address,
                offset_seconds=round(reading.offset, 3),
                round_trip_seconds=round(reading.round_trip, 3),
            )
        if reading.too_far and not self.clock_skewed:
            log.error(
                "clock_skew_too_large",
                where=self.address,
                replica=self.holder,
                offset_seconds=round(reading.offset, 3),
                bound_seconds=self.max_clock_skew.total_seconds(),
                consequence="this replica does not lead until its clock is corrected (NTP)",
            )
        elif self.clock_skewed and not reading.too_far:
            log.info(
                "clock_skew_resolved", where=self.address, offset_seconds=round(reading.offset, 3)
            )
        self.clock_skewed = reading.too_far

    def see_holder(self, seen: SeenLease) -> None:
        """Notice another process holding the lease under our name: a clash once we saw it renew
        (a predecessor that died, as a restarted replica finds, never renews)."""
        if not (seen.live and seen.holder == self.holder and seen.token != self.token):
            if self.name_clash:
                log.info("replica_name_clash_over", where=self.address, replica=self.holder)
            self.name_clash = False
            self._namesake = None
            return
        before, self._namesake = self._namesake, seen
        if renewed_since(before, seen) and not self.name_clash:
            self.name_clash = True
            self.name_clashes += 1
            log.error(
                "replica_name_clash",
                where=self.address,
                replica=self.holder,
                consequence="another live process holds the lease under this name; this one "
                "stands by: give every replica its own NOTIFIER_REPLICA_NAME",
            )
