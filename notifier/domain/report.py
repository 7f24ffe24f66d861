"""What one cycle did: `once` takes its exit code from it; logs, health and metrics its figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class CycleReport:
    """What one cycle did; `once` derives its exit code from it, logs and metrics their figures."""

    polled: list[int] = field(default_factory=list)
    #: Monitors the change feed showed unchanged, so their runs were not listed (feed mode).
    unchanged: int = 0
    #: The feed could not be read and every monitor was polled instead.
    feed_failed: bool = False
    #: Listing the monitors of NOTIFIER_MONITOR_TAGS failed (the kind of error).
    discovery_failed: str | None = None
    failed: dict[int, str] = field(default_factory=dict)
    key_refused: bool = False
    runs_seen: int = 0
    events: int = 0
    #: By event kind: alert, error, recovered, reminder.
    events_by_state: Counter[str] = field(default_factory=Counter)
    #: Events not sent because a mute covered them, or every matching route was in quiet hours.
    muted: int = 0
    quieted: int = 0
    #: Notifications sent as part of a digest (each also counts in `delivered`).
    digested: int = 0
    delivered: int = 0
    delivery_failures: int = 0
    sent_by_destination: Counter[str] = field(default_factory=Counter)
    failed_by_destination: Counter[str] = field(default_factory=Counter)
    expired: int = 0
    #: Notifications dropped undelivered because the outbox was full (the oldest go first).
    dropped: int = 0
    #: Notifications a destination refused for good (it would refuse them again): dropped there.
    refused: int = 0
    #: By destination: open incidents it was told again still fire (Alertmanager's keep-alive).
    kept_firing: Counter[str] = field(default_factory=Counter)
    outbox_size: int = 0
    #: Monitors watched this cycle (configured and found by tag).
    monitors: int = 0
    #: Destinations that asked to be left alone (Retry-After), with until when and why.
    deferred: dict[str, Deferral] = field(default_factory=dict)
    state_saved: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: A replica without the lease did nothing (high availability).
    standby: bool = False

    def fail(self, monitor_id: int, reason: str) -> None:
        """Count a monitor as failed this cycle (`reason`: the error's kind), not as polled."""
        if monitor_id in self.polled:
            self.polled.remove(monitor_id)
        self.failed[monitor_id] = reason

    def summary(self) -> dict[str, object]:
        """The figures the `cycle_finished` log line gives (once `finished_at` is set)."""
        took = (
            (self.finished_at - self.started_at).total_seconds()
            if self.finished_at and self.started_at
            else 0.0
        )
        return {
            "monitors_polled": len(self.polled),
            "monitors_failed": len(self.failed),
            "events": self.events,
            "muted": self.muted + self.quieted,
            "delivered": self.delivered,
            "delivery_failures": self.delivery_failures,
            "outbox": self.outbox_size,
            "duration_seconds": round(took, 3),
        }

    @property
    def all_failed(self) -> bool:
        """No monitor could be polled at all (and there was one to poll, or to discover)."""
        return not self.polled and bool(self.failed or self.discovery_failed)


@dataclass(frozen=True)
class Deferral:
    """A destination asked to wait (HTTP 429 or 503 with Retry-After): it is not tried before
    `until`; its notifications wait in the outbox, and nothing else waits for it."""

    until: datetime
    reason: str

    @classmethod
    def asked(cls, retry_after: float, reason: str, now: datetime, cap: timedelta) -> Deferral:
        """A destination's Retry-After of `retry_after` seconds at `now`, capped at `cap`."""
        wait = timedelta(seconds=min(retry_after, cap.total_seconds()))
        return cls(until=now + wait, reason=reason)

    def holds(self, now: datetime) -> bool:
        """Whether the destination is still to be left alone at `now`."""
        return now < self.until

    def short_wait(self, now: datetime, longest: timedelta) -> float | None:
        """Seconds left at `now` when at most `longest` (worth waiting for within the cycle);
        None when longer."""
        left = self.until - now
        return max(0.0, left.total_seconds()) if left <= longest else None
