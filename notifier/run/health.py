"""Health: is polling working? A pure verdict over the recent cycles and the time."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifier.domain.report import CycleReport

#: Unhealthy when every poll failed in this many consecutive cycles...
FAILED_CYCLES_LIMIT = 3
#: ...or when no cycle finished for this many intervals (plus the request timeout).
STALL_INTERVALS = 3
#: With PostgreSQL: unhealthy when the database has not answered for this many leases, or no
#: replica at all has finished a cycle for that long (or `STALL_INTERVALS`, if longer).
CLUSTER_LEASES = 3


@dataclass(frozen=True)
class ClusterView:
    """What one replica sharing PostgreSQL knows of them all, by its own clock: when the database
    last answered, and when any leader last finished a poll cycle."""

    database_answered_at: datetime | None
    last_cycle_at: datetime | None
    last_cycle_by: str | None
    lease: timedelta
    #: How long one database operation may take before it counts as failed.
    patience: timedelta = timedelta(seconds=10)


@dataclass(frozen=True)
class Verdict:
    """`healthy` maps to HTTP 200/503; `body` is the small JSON document /healthz returns."""

    healthy: bool
    body: dict[str, Any]


@dataclass
class HealthTracker:
    """Remembers the last few cycles; `verdict(now)` says whether the daemon is doing its job."""

    started_at: datetime
    interval: timedelta
    slack: timedelta = timedelta(seconds=30)
    recent: deque[CycleReport] = field(default_factory=lambda: deque(maxlen=FAILED_CYCLES_LIMIT))
    last_finished: datetime | None = None
    last_success: datetime | None = None
    cycles: int = 0
    status: str = "running"
    #: With PostgreSQL (high availability): how the replicas as a whole are doing.
    cluster: Callable[[], ClusterView] | None = None

    def record(self, report: CycleReport) -> None:
        """Take in a finished cycle."""
        self.cycles += 1
        if self.status in ("running", "standby"):
            self.status = "standby" if report.standby else "running"
        self.recent.append(report)
        self.last_finished = report.finished_at or report.started_at
        if report.polled:
            self.last_success = self.last_finished

    def verdict(self, now: datetime) -> Verdict:
        """200 while polling works (and while starting up); 503 with the reason otherwise."""
        stall_limit = STALL_INTERVALS * self.interval + self.slack
        body: dict[str, Any] = {
            "status": self.status,
            "cycles": self.cycles,
            "last_cycle_at": _iso(self.last_finished),
            "last_successful_poll_at": _iso(self.last_success),
        }
        if self.recent:
            latest = self.recent[-1]
            body["monitors_polled"] = len(latest.polled)
            body["monitors_failed"] = len(latest.failed)
            body["outbox"] = latest.outbox_size
            deferred = {
                name: {"until": _iso(d.until), "reason": d.reason}
                for name, d in latest.deferred.items()
                if d.until > now
            }
            if deferred:
                # Waiting at a destination's own request is not ill health, but worth seeing.
                body["destinations_deferred"] = deferred
        if self.status == "stopping":
            return Verdict(True, body)
        if self.cluster is not None:
            problem = self._cluster_problem(self.cluster(), now, body)
            if problem is not None:
                return Verdict(False, {**body, "status": "unhealthy", "reason": problem})
        reference = self.last_finished or self.started_at
        if now - reference > stall_limit:
            waited = int((now - reference).total_seconds())
            what = (
                "no cycle has finished"
                if self.last_finished
                else "the first cycle has not finished"
            )
            return Verdict(
                False, {**body, "status": "unhealthy", "reason": f"{what} for {waited} s"}
            )
        if len(self.recent) == FAILED_CYCLES_LIMIT and all(r.all_failed for r in self.recent):
            kinds = sorted({kind for r in self.recent for kind in r.failed.values()})
            reason = (
                f"every poll failed in the last {FAILED_CYCLES_LIMIT} cycles ({', '.join(kinds)})"
            )
            return Verdict(False, {**body, "status": "unhealthy", "reason": reason})
        if self.last_finished is None:
            body["status"] = "starting"
        return Verdict(True, body)

    def _cluster_problem(
        self, view: ClusterView, now: datetime, body: dict[str, Any]
    ) -> str | None:
        """A standby answers for the whole: the database gone quiet, or nobody polling, for
        several leases is unhealthy on every replica, so that someone notices."""
        body["database_answered_at"] = _iso(view.database_answered_at)
        body["last_cycle_anywhere_at"] = _iso(view.last_cycle_at)
        body["last_cycle_by"] = view.last_cycle_by
        limit = CLUSTER_LEASES * view.lease + view.patience
        quiet = now - max(view.database_answered_at or self.started_at, self.started_at)
        if quiet > limit:
            return f"the database has not answered for {int(quiet.total_seconds())} s"
        limit = max(limit, STALL_INTERVALS * self.interval + self.slack)
        idle = now - max(view.last_cycle_at or self.started_at, self.started_at)
        if idle > limit:
            return f"no replica has finished a poll cycle for {int(idle.total_seconds())} s"
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
