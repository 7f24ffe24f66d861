"""The simulated account's records: monitors and runs as the published spec shows them, and the
spec's enums. No HTTP here (`notifier.demo.server` serves them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Endpoint names for `inject_fault`: the route each one matches.
ENDPOINTS: dict[str, str] = {
    "monitors": "/api/v1/monitors",
    "monitor": "/api/v1/monitors/{id}",
    "runs": "/api/v1/monitors/{id}/runs",
    "run": "/api/v1/monitors/{id}/runs/{run_id}",
}
#: The spec's enums: `MonitorRunState`, a monitor's `monitor_type`, `SortableFields`, `sort_order`.
RUN_STATES: tuple[str, ...] = (
    "ok",
    "alert",
    "error",
    "learning",
    "checking",
    "created",
    "skipped",
    "cancelled",
    "queued",
)
MONITOR_TYPES: tuple[str, ...] = ("diff", "metric", "schema", "test")
SORTABLE_FIELDS: tuple[str, ...] = ("id", "name", "last_triggered", "last_run", "created_by")
SORT_ORDERS: tuple[str, ...] = ("asc", "desc")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received it, so a test can assert what a client sent."""

    method: str
    path: str
    query: dict[str, str]
    authorized: bool


def utc_now() -> datetime:
    """The real clock, in UTC (the default `Clock`)."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive one is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """Datafold writes UTC stamps with a `Z`."""
    return None if value is None else to_utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RunPlan:
    """How a scheduled run goes on: created, checking from half its duration, then its outcome."""

    start: datetime
    duration: float
    outcome: str
    error: str | None


@dataclass
class SimulatedRun:
    """One run as the simulated account holds it; a scheduled one follows its `plan`."""

    run_id: int
    monitor_id: int
    state: str | None
    started_at: datetime | None
    created_at: datetime
    diff_id: int | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    plan: RunPlan | None = None

    @property
    def timestamp(self) -> datetime:
        """What start_time/end_time compare against: the start, else the creation."""
        return self.started_at or self.created_at

    def listed(self) -> dict[str, Any]:
        """The run as the runs listing shows it (`ApiPublicMonitorRunOut`)."""
        return {
            "run_id": self.run_id,
            "monitor_id": self.monitor_id,
            "state": self.state,
            "started_at": iso(self.started_at),
            "diff_id": self.diff_id,
        }

    def progress(self, now: datetime) -> bool:
        """Move a scheduled run along to `now`; True once it has finished."""
        if self.plan is None:
            return True
        elapsed = (now - self.plan.start).total_seconds()
        if elapsed >= self.plan.duration:
            self.state, self.error, self.plan = self.plan.outcome, self.plan.error, None
            return True
        self.state = "checking" if elapsed >= self.plan.duration / 2 else "created"
        return False


@dataclass
class SimulatedMonitor:
    """One monitor of the simulated account, with its runs and, if scheduled, its schedule."""

    id: int
    name: str | None
    monitor_type: str
    tags: tuple[str, ...]
    owner: str | None
    created_at: datetime
    every: float | None
    duration: float
    outcomes: tuple[str, ...] | None
    scheduled: int = 0
    runs: dict[int, SimulatedRun] = field(default_factory=dict)
    #: Run n of the schedule starts at origin + n * every.
    origin: datetime | None = None

    def latest_run(self) -> SimulatedRun | None:
        return max(self.runs.values(), key=lambda r: (r.timestamp, r.run_id), default=None)

    def last_alert(self) -> datetime | None:
        return max((r.timestamp for r in self.runs.values() if r.state == "alert"), default=None)

    def sort_value(self, order_by: str) -> str | int | datetime | None:
        """What `order_by` orders by. The spec names the fields only: "last_triggered" is taken
        as the last alert and "created_by" as the owner, the simulator's only author."""
        if order_by == "name":
            return self.name
        if order_by == "last_triggered":
            return self.last_alert()
        if order_by == "last_run":
            latest = self.latest_run()
            return latest.timestamp if latest else None
        if order_by == "created_by":
            return self.owner
        return self.id

    def summary(self) -> dict[str, Any]:
        """ApiPublicGetMonitorOut, as `GET /api/v1/monitors` lists it."""
        latest = self.latest_run()
        return {
            "id": self.id,
            "name": self.name,
            "monitor_type": self.monitor_type,
            "tags": list(self.tags),
            "owner": self.owner,
            "enabled": True,
            "created_at": iso(self.created_at),
            "modified_at": iso(self.created_at),
            "last_run": iso(latest.timestamp) if latest else None,
            "last_alert": iso(self.last_alert()),
            "state": latest.state if latest else None,
        }

    def full(self) -> dict[str, Any]:
        """ApiPublicGetMonitorOutFull. The spec's schedules cannot say "every N seconds"."""
        schedule = (
            {"type": "none"} if self.every is None else {"type": "crontab", "cron": "* * * * *"}
        )
        return {
            **self.summary(),
            "description": f"Simulated {self.monitor_type} monitor",
            "schedule": schedule,
            "notifications": [],
        }


def check_state(state: str) -> None:
    """Refuse a state the spec's `MonitorRunState` does not have."""
    if state not in RUN_STATES:
        raise ValueError(f"a run state is one of {RUN_STATES} (the spec's MonitorRunState)")


def sorted_monitors(
    monitors: Sequence[SimulatedMonitor], order_by: str | None, sort_order: str
) -> list[SimulatedMonitor]:
    """As SQL would order them: nulls after every value going up and before them going down,
    ties by ID in the same direction. Without `order_by`, by ID going up whatever `sort_order`
    says (the spec leaves that order open; this one is stable for paging)."""
    if order_by is None:
        return sorted(monitors, key=lambda m: m.id)

    def key(monitor: SimulatedMonitor) -> tuple[bool, Any, int]:
        value = monitor.sort_value(order_by)
        return (value is None, value if value is not None else 0, monitor.id)

    return sorted(monitors, key=key, reverse=sort_order == "desc")
