"""Health: is polling working? A pure verdict over the recent cycles and the time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifier.service import CycleReport

#: Unhealthy when every poll failed in this many consecutive cycles...
FAILED_CYCLES_LIMIT = 3
#: ...or when no cycle finished for this many intervals (plus the request timeout).
STALL_INTERVALS = 3


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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
