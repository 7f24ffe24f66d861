"""A local stand-in for the Datafold Monitors API, for `datafold-notifier demo` and the tests.

It speaks the published spec (auth, pagination, time filters, the monitors listing's order_by and
sort_order, FastAPI-style errors), lists runs in no particular time order, and can be told to
misbehave. It only says what the spec allows: run states and monitor types outside its enums are
refused when they are set. Runs follow a clock that tests may fake.

This module is the account and its faults; `notifier.demo.records` the records it holds,
`notifier.demo.server` the aiohttp application that serves it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from notifier.demo.records import (
    ENDPOINTS,
    MONITOR_TYPES,
    Clock,
    RecordedRequest,
    RunPlan,
    SimulatedMonitor,
    SimulatedRun,
    check_state,
    sorted_monitors,
    to_utc,
    utc_now,
)
from notifier.demo.server import simulator_app

if TYPE_CHECKING:
    from aiohttp import web

#: Outcomes of a scheduled run when the monitor has no script: mostly quiet, sometimes not.
_DEFAULT_OUTCOMES: dict[str, float] = {"ok": 0.8, "alert": 0.12, "error": 0.08}
_ERROR_MESSAGES: tuple[str, ...] = (
    'Query failed: relation "analytics.orders_staging" does not exist',
    "Query failed: permission denied for schema finance",
    "Connection to the data source timed out after 300 seconds",
    'Query failed: column "updated_at" does not exist',
)


@dataclass
class Fault:
    """A misbehaviour waiting for its requests: see `Simulator.inject_fault`."""

    endpoint: str
    monitor_id: int | None
    status: int
    times: int
    retry_after: str | None
    body: str | None
    content_type: str
    delay: float

    def matches(self, endpoint: str, monitor_id: int | None) -> bool:
        """Whether the next request to `endpoint` (about `monitor_id`) meets this fault."""
        return (
            self.times > 0
            and self.endpoint == endpoint
            and (self.monitor_id is None or self.monitor_id == monitor_id)
        )


class Simulator:
    """An in-memory Datafold account, served over HTTP by `app()` or `notifier.demo.server.serve`.

    Everything that changes with time is derived from `clock`, so a fake clock decides it fully.
    """

    def __init__(
        self,
        api_key: str = "demo-key",
        *,
        clock: Clock | None = None,
        seed: int = 0,
        latency: float = 0.0,
        record_requests: bool = True,
    ) -> None:
        self._authorization = f"Key {api_key}"
        self._clock: Clock = clock or utc_now
        self._seed = seed
        self._monitors: dict[int, SimulatedMonitor] = {}
        # Heaps of what happens next, so a request costs O(log n) however many monitors there are.
        self._due: list[tuple[datetime, int]] = []
        self._transitions: list[tuple[datetime, int, SimulatedRun]] = []
        self._faults: list[Fault] = []
        self._next_run_id = 1
        #: Seconds every answer waits, like a real API's latency (benchmarks).
        self.latency = latency
        self._record = record_requests
        self.requests: list[RecordedRequest] = []
        #: Requests per endpoint name (also when `record_requests` is off).
        self.request_counts: Counter[str] = Counter()

    @property
    def monitor_ids(self) -> list[int]:
        return list(self._monitors)

    def _now(self) -> datetime:
        return to_utc(self._clock())

    def _random(self, *key: object) -> random.Random:
        """A generator fixed by the seed and `key`, so outcomes do not depend on request timing."""
        return random.Random(":".join(map(str, (self._seed, *key))))

    def add_monitor(
        self,
        monitor_id: int,
        *,
        name: str | None = None,
        monitor_type: str = "diff",
        tags: Sequence[str] = (),
        owner: str | None = None,
        every: float | None = None,
        duration: float = 2.0,
        outcomes: Sequence[str] | None = None,
        first_after: float | None = None,
    ) -> None:
        """Add a monitor; with `every`, it starts a run each `every` seconds of clock time.

        The first run starts `first_after` seconds after the monitor is added (default: `every`).

        Each run is created, checking after `duration / 2` and finished after `duration` with the
        next of `outcomes` (cycled), or a seeded random outcome, mostly "ok", when none are given.
        """
        if monitor_id in self._monitors:
            raise ValueError(f"monitor {monitor_id} already exists")
        if monitor_type not in MONITOR_TYPES:
            raise ValueError(f"monitor_type must be one of {MONITOR_TYPES} (the spec's)")
        for outcome in outcomes or ():
            check_state(outcome)
        if every is not None and every <= 0:
            raise ValueError("every must be positive")
        if duration < 0:
            raise ValueError("duration must not be negative")
        if outcomes is not None and not outcomes:
            raise ValueError("outcomes must not be empty")
        self._monitors[monitor_id] = SimulatedMonitor(
            id=monitor_id,
            name=name,
            monitor_type=monitor_type,
            tags=tuple(tags),
            owner=owner,
            created_at=self._now(),
            every=every,
            duration=duration,
            outcomes=tuple(outcomes) if outcomes is not None else None,
        )
        if every is not None:
            first = every if first_after is None else first_after
            monitor = self._monitors[monitor_id]
            monitor.origin = self._now() + timedelta(seconds=first - every)
            heapq.heappush(self._due, (self._now() + timedelta(seconds=first), monitor_id))

    def set_tags(self, monitor_id: int, tags: Sequence[str]) -> None:
        """Retag a monitor (as a user editing it in Datafold would)."""
        self._monitor(monitor_id).tags = tuple(tags)

    def _monitor(self, monitor_id: int) -> SimulatedMonitor:
        try:
            return self._monitors[monitor_id]
        except KeyError:
            raise KeyError(f"no monitor {monitor_id}") from None

    def add_run(
        self,
        monitor_id: int,
        *,
        state: str | None = "created",
        started_at: datetime | None = None,
        diff_id: int | None = None,
        error: str | None = None,
        run_id: int | None = None,
    ) -> int:
        """Add a run exactly as given and return its ID (the next global one unless given).

        A run without `started_at` is filtered by its creation time, which is the clock's now.
        """
        monitor = self._monitor(monitor_id)
        if state is not None:
            check_state(state)
        self.advance()
        if run_id is None:
            run_id = self._next_run_id
        elif any(run_id in m.runs for m in self._monitors.values()):
            raise ValueError(f"run {run_id} already exists")
        self._next_run_id = max(self._next_run_id, run_id + 1)
        monitor.runs[run_id] = SimulatedRun(
            run_id=run_id,
            monitor_id=monitor_id,
            state=state,
            started_at=to_utc(started_at) if started_at else None,
            created_at=self._now(),
            diff_id=diff_id,
            error=error,
        )
        return run_id

    def set_run_state(
        self, monitor_id: int, run_id: int, state: str | None, *, error: str | None = None
    ) -> None:
        """Set a run's state and error message; a scheduled run stops following its plan."""
        if state is not None:
            check_state(state)
        try:
            run = self._monitor(monitor_id).runs[run_id]
        except KeyError:
            raise KeyError(f"no run {run_id} of monitor {monitor_id}") from None
        run.state, run.error, run.plan = state, error, None

    def advance(self) -> None:
        """Start the scheduled runs due by now and move unfinished ones along."""
        now = self._now()
        while self._due and self._due[0][0] <= now:
            due, monitor_id = heapq.heappop(self._due)
            monitor = self._monitors[monitor_id]
            assert monitor.every is not None
            monitor.scheduled += 1
            self._start_scheduled_run(monitor, monitor.scheduled, due)
            assert monitor.origin is not None
            following = monitor.origin + timedelta(seconds=monitor.every * (monitor.scheduled + 1))
            heapq.heappush(self._due, (following, monitor_id))
        while self._transitions and self._transitions[0][0] <= now:
            _, _, run = heapq.heappop(self._transitions)
            run.progress(now)

    def _start_scheduled_run(self, monitor: SimulatedMonitor, number: int, start: datetime) -> None:
        rng = self._random(monitor.id, number)
        if monitor.outcomes is not None:
            outcome = monitor.outcomes[(number - 1) % len(monitor.outcomes)]
        else:
            outcome = rng.choices(
                list(_DEFAULT_OUTCOMES), weights=list(_DEFAULT_OUTCOMES.values())
            )[0]
        run_id = self._next_run_id
        self._next_run_id += 1
        run = SimulatedRun(
            run_id=run_id,
            monitor_id=monitor.id,
            state="created",
            started_at=start,
            created_at=start,
            diff_id=50_000 + run_id if monitor.monitor_type == "diff" else None,
            plan=RunPlan(
                start=start,
                duration=monitor.duration,
                outcome=outcome,
                error=rng.choice(_ERROR_MESSAGES) if outcome == "error" else None,
            ),
        )
        monitor.runs[run_id] = run
        half = timedelta(seconds=monitor.duration / 2)
        for when in (start, start + half, start + 2 * half):
            heapq.heappush(self._transitions, (when, run_id, run))

    def inject_fault(
        self,
        *,
        monitor_id: int | None = None,
        endpoint: str = "runs",
        status: int = 500,
        times: int = 1,
        retry_after: str | None = None,
        body: str | None = None,
        delay: float = 0.0,
        content_type: str = "application/json",
    ) -> None:
        """Make the next `times` requests to `endpoint` (of `monitor_id`, or any) misbehave.

        They wait `delay` seconds, then answer `status` with `body` (default FastAPI's
        `{"detail": ...}`). Status 200 without a body only delays the normal answer.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}")
        if endpoint == "monitors" and monitor_id is not None:
            raise ValueError("the monitors listing belongs to no monitor")
        if times < 1 or delay < 0:
            raise ValueError("times must be positive and delay not negative")
        self._faults.append(
            Fault(endpoint, monitor_id, status, times, retry_after, body, content_type, delay)
        )

    def take_fault(self, endpoint: str, monitor_id: int | None) -> Fault | None:
        """The fault the next request to `endpoint` (about `monitor_id`) meets, if any, used up."""
        for fault in self._faults:
            if fault.matches(endpoint, monitor_id):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this simulator's state."""
        return simulator_app(self)

    def authorized(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header gets in."""
        return authorization == self._authorization

    def note_request(
        self,
        endpoint: str | None,
        method: str,
        path: str,
        query: Mapping[str, str],
        authorized: bool,
    ) -> None:
        """Count a request by endpoint name, and keep it when requests are recorded."""
        self.request_counts[endpoint or "other"] += 1
        if self._record:
            kept = {key: query[key] for key in query}
            self.requests.append(RecordedRequest(method, path, kept, authorized))

    def find_monitor(self, monitor_id: int) -> SimulatedMonitor | None:
        """The monitor, or None (the API answers 404)."""
        return self._monitors.get(monitor_id)

    def listed_monitors(
        self, tags: set[str], order_by: str | None, sort_order: str
    ) -> list[SimulatedMonitor]:
        """The monitors carrying every one of `tags`, in the listing's order."""
        listed = [m for m in self._monitors.values() if tags <= set(m.tags)]
        return sorted_monitors(listed, order_by, sort_order)

    def listed_runs(
        self, monitor: SimulatedMonitor, start: datetime | None, end: datetime | None
    ) -> list[SimulatedRun]:
        """The monitor's runs in [start, end], in a seeded shuffle that stays put between the
        pages of one listing (the API promises no order)."""

        def key(run: SimulatedRun) -> bytes:
            return hashlib.blake2b(f"{self._seed}:{run.run_id}".encode(), digest_size=8).digest()

        return sorted(
            (
                run
                for run in monitor.runs.values()
                if (start is None or run.timestamp >= start)
                and (end is None or run.timestamp <= end)
            ),
            key=key,
        )


def demo_simulator(api_key: str = "demo-key", *, clock: Clock | None = None) -> Simulator:
    """Three monitors running every 10-12 s, scripted so that the first alert finishes 25 s
    after the start and the first error 45 s after it; a mix of outcomes follows."""
    sim = Simulator(api_key, clock=clock)
    sim.add_monitor(
        101,
        name="orders: prod vs staging",
        monitor_type="diff",
        tags=("prod", "orders"),
        owner="data-eng@example.com",
        every=10,
        duration=5,
        outcomes=("ok", "alert", "ok", "ok", "ok", "alert", "ok", "ok", "ok"),
    )
    sim.add_monitor(
        102,
        name="revenue daily metric",
        monitor_type="metric",
        tags=("prod", "finance"),
        owner="analytics@example.com",
        every=10,
        duration=5,
        outcomes=("ok", "ok", "ok", "error", "ok", "ok", "ok", "alert", "ok", "ok"),
    )
    sim.add_monitor(
        103,
        name="users schema",
        monitor_type="schema",
        tags=("prod", "users"),
        owner="platform@example.com",
        every=12,
        duration=3,
        outcomes=("ok", "ok", "ok", "ok", "ok", "alert", "ok", "ok", "error", "ok"),
    )
    return sim
