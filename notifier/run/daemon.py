"""Lifecycle: schedule cycles, serve health and metrics, stop gracefully on a signal.

What runs the cycles is built by the wiring (`run/wiring.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier import __version__
from notifier.domain.report import CycleReport
from notifier.run.health import HealthTracker
from notifier.run.metrics import Metrics
from notifier.run.reload import ConfigReloader, ReloadError
from notifier.run.status_server import StatusSources, serve_status, status_app
from notifier.run.status_view import RECENT_CYCLES
from notifier.run.systemd import SystemdNotify
from notifier.run.trigger import FULL_CYCLE_GAP, TriggerConfig, full_cycle_at
from notifier.run.trigger_http import TriggerEndpoint
from notifier.run.trigger_loop import PartialCycles, TriggerLoop
from notifier.store.store import StateError

log = structlog.get_logger(__name__)


@runtime_checkable
class Leader(Protocol):
    """A cycle runner that must hold a lease to act (`LeasedNotifier`)."""

    async def keep_lease(self, elected: Callable[[], None]) -> None: ...

    async def release(self) -> None: ...


class CycleRunner(Protocol):
    """What the daemon schedules: a `Notifier`, or a `LeasedNotifier` (high availability)."""

    async def run_cycle(self) -> CycleReport: ...

    async def save(self) -> bool: ...


@dataclass
class StatusListener:
    """Where /healthz, /metrics and the status page are served (NOTIFIER_HEALTH_HOST/PORT)."""

    host: str
    port: int


class StatusError(Exception):
    """The health/metrics listener could not start; one line naming the setting."""


class Daemon:
    """Runs a cycle every interval until SIGTERM/SIGINT, then drains within the grace period.

    Cycles never overlap: a cycle still running when the next is due makes that one skipped and
    logged. A second signal exits at once; the state file is never half-written either way,
    because every save is an atomic rename. SIGHUP (and POST /-/reload) reloads the configuration
    with a `reloader`, adopted between cycles; without one it is logged and ignored
    (`stop_on_hangup`: a graceful stop, for the demo, whose terminal is gone). Health, metrics
    and systemd notification hang off the cycle reports.
    """

    def __init__(
        self,
        notifier: CycleRunner,
        *,
        interval: float,
        grace: float,
        listener: StatusListener | None = None,
        systemd: SystemdNotify | None = None,
        clock: Callable[[], datetime] | None = None,
        stop_on_hangup: bool = False,
    ) -> None:
        self._notifier = notifier
        self._interval = interval
        self._grace = grace
        self._listener = listener
        self._systemd = systemd
        self._clock = clock or (lambda: datetime.now(UTC))
        self.metrics = Metrics()
        self.health = HealthTracker(started_at=self._clock(), interval=timedelta(seconds=interval))
        #: The latest cycle reports, oldest first, for the status page.
        self.cycles: deque[CycleReport] = deque(maxlen=RECENT_CYCLES)
        self._current: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._stop_on_hangup = stop_on_hangup
        #: Reads and builds a new configuration (SIGHUP, POST /-/reload); None: no reloading.
        self.reloader: ConfigReloader | None = None
        #: Held by a cycle, and by a reload while it swaps the configuration: never mid-cycle.
        self._cycle_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[str | None]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        #: The push trigger (`enable_trigger`; NOTIFIER_TRIGGER_TOKEN), or None.
        self.trigger: TriggerLoop | None = None
        #: When the last cycle began, and whether a triggered one waits for the running one.
        self._last_start: datetime | None = None
        self._full_cycle_after = False
        #: The least time from a cycle's start to a full cycle a trigger asks for.
        self.full_cycle_gap = FULL_CYCLE_GAP
        self.metrics.config_loaded(self._clock())

    @property
    def runner(self) -> CycleRunner:
        """What runs the cycles."""
        return self._notifier

    @property
    def stops_on_hangup(self) -> bool:
        """Whether SIGHUP stops the daemon (the demo) rather than reload it."""
        return self._stop_on_hangup

    def enable_trigger(self, config: TriggerConfig) -> None:
        """Serve the push trigger on the status listener (which it needs), polling through the
        cycle runner's partial cycles under the cycle lock."""
        if self._listener is None:
            raise StatusError("NOTIFIER_TRIGGER_TOKEN needs NOTIFIER_HEALTH_PORT")
        if not isinstance(self._notifier, PartialCycles):
            raise TypeError("this cycle runner cannot poll some monitors only")
        self.trigger = TriggerLoop(
            self._notifier,
            config,
            lock=self._cycle_lock,
            record=self.metrics.record_partial,
            full_cycle=self._full_cycle_soon,
            clock=self._clock,
            count_polls=self.metrics.triggered_polls.inc,
        )

    def request_stop(self) -> None:
        """Begin a graceful stop (what the first SIGTERM/SIGINT does)."""
        self._stop.set()

    async def run(self) -> int:
        """Schedule cycles until asked to stop; return the process exit code."""
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            await self._start_listener(stack)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
            loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
            stack.callback(_remove_signal_handlers, loop)
            scheduler = AsyncIOScheduler(timezone=UTC)
            scheduler.add_job(
                self._cycle,
                IntervalTrigger(seconds=self._interval, timezone=UTC),
                id="poll-cycle",
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
            scheduler.start()
            self._scheduler = scheduler
            stack.callback(scheduler.shutdown, wait=False)
            stack.push_async_callback(self._cancel_reloads)
            triggers = asyncio.create_task(self.trigger.run()) if self.trigger else None
            if isinstance(self._notifier, Leader):
                keeper = asyncio.create_task(
                    self._notifier.keep_lease(
                        lambda: scheduler.modify_job("poll-cycle", next_run_time=datetime.now(UTC))
                    )
                )
                stack.push_async_callback(_cancel, keeper)
            log.info("daemon_started", interval_seconds=self._interval, version=__version__)
            if self._systemd is not None:
                self._systemd.ready()
                watchdog = asyncio.create_task(self._systemd.watchdog())
                stack.push_async_callback(_cancel, watchdog)
            await self._stop.wait()
            log.info("daemon_stopping", grace_seconds=self._grace)
            self.health.status = "stopping"
            if self._systemd is not None:
                self._systemd.stopping()
            scheduler.pause()
            if self.trigger is not None and triggers is not None:
                await self.trigger.stop(triggers, self._grace)
            await self._drain()
        try:
            await self._notifier.save()
        except StateError as exc:
            log.error("state_save_failed", error=str(exc))
            return 2  # the state file cannot be used, as for the other commands
        finally:
            if isinstance(self._notifier, Leader):
                await self._notifier.release()
        log.info("daemon_stopped")
        return 0

    async def _start_listener(self, stack: contextlib.AsyncExitStack) -> None:
        if self._listener is None:
            return
        host, port = self._listener.host, self._listener.port
        sources = StatusSources.of(self._notifier, self.cycles)
        trigger = None
        if self.trigger is not None:
            outcomes = self.metrics.triggers
            trigger = TriggerEndpoint(
                self.trigger.config,
                self.trigger.offer,
                sources.leading,
                lambda outcome: outcomes.labels(outcome=outcome).inc(),
            )
        app = status_app(
            self.health, self.metrics, self._clock, sources, reload=self.reload, trigger=trigger
        )
        try:
            bound = await stack.enter_async_context(serve_status(app, host, port))
        except OSError as exc:
            raise StatusError(
                f"NOTIFIER_HEALTH_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        paths = ["/", "/api/status", "/healthz", "/metrics", "/-/reload"]
        paths += ["/trigger"] if trigger is not None else []
        log.info("status_listening", host=host, port=bound, paths=paths)

    async def _drain(self) -> None:
        current = self._current
        if current is None or current.done():
            return
        done, _ = await asyncio.wait({current}, timeout=self._grace)
        if not done:
            log.warning("cycle_cancelled", reason="grace period over")
            current.cancel()
            await asyncio.gather(current, return_exceptions=True)

    async def _cycle(self) -> None:
        self._current = asyncio.current_task()
        self._last_start = self._clock()
        try:
            async with self._cycle_lock:
                report = await self._notifier.run_cycle()
        except StateError as exc:
            log.error("state_save_failed", error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cycle_failed")
        else:
            self.metrics.record(report)
            self.health.record(report)
            self.cycles.append(report)
            if self.trigger is not None:
                self.trigger.cycle_finished(report)
            if self._systemd is not None:
                self._systemd.status(
                    f"{len(report.polled)} monitors polled, {len(report.failed)} failed, "
                    f"outbox {report.outbox_size}"
                )
        finally:
            self._current = None
            if self._full_cycle_after:
                self._full_cycle_after = False
                self._full_cycle_soon()

    def _full_cycle_soon(self) -> None:
        """A trigger for every monitor: move the regular cycle up to now, or to `full_cycle_gap`
        after the last one began; one running now (begun before the trigger) is followed by
        another, so a cycle already due sooner is left alone and cycles never overlap."""
        scheduler = self._scheduler
        if scheduler is None or self._stop.is_set():
            return
        if self._current is not None:
            self._full_cycle_after = True
            return
        job = scheduler.get_job("poll-cycle")
        at = full_cycle_at(self._last_start, self._clock(), self.full_cycle_gap)
        if job is not None and job.next_run_time is not None and job.next_run_time > at:
            scheduler.modify_job("poll-cycle", next_run_time=at)
            log.info("cycle_triggered", at=at.isoformat())

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        self.metrics.cycles_skipped.inc()
        log.warning(
            "cycle_skipped",
            reason="the previous cycle is still running",
            interval_seconds=self._interval,
        )

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon_killed", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("signal_received", signal=signal.Signals(signum).name)
        self._stop.set()

    def _on_hangup(self) -> None:
        """SIGHUP (a closed terminal, `kill -HUP`, a reload by habit) would kill the daemon
        undrained by default: it goes on instead."""
        if self._stop_on_hangup:
            self._on_signal(signal.SIGHUP)
            return
        if self.reloader is None:
            # (The demo's daemon, and a daemon built without a configuration source.)
            reason = "reload is not supported yet here: no configuration source; it goes on"
            log.info("signal_received", signal="SIGHUP", action="ignored", reason=reason)
            return
        log.info("signal_received", signal="SIGHUP", action="reload")
        task = asyncio.create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> str | None:
        """Read, check and build the configuration anew, then adopt it once no cycle runs.

        Returns why it was refused (logged as `config_reload_failed`; the running configuration
        stays), or None. Reloads run one after the other, each reading the files afresh.
        """
        async with self._reload_lock:
            try:
                if self.reloader is None:
                    raise ReloadError("this daemon does not reload its configuration")
                new = self.reloader.prepare()
            except ReloadError as exc:
                log.error("config_reload_failed", reason=str(exc))
                self.metrics.config_reload_successful.set(0)
                return str(exc)
            async with self._cycle_lock:
                summary = self.reloader.apply(new)
                self._reschedule(new.settings.poll_interval_seconds)
                self._grace = new.settings.shutdown_grace_seconds
            self.metrics.config_loaded(self._clock())
            log.info("config_reloaded", **summary)
            return None

    def _reschedule(self, interval: float) -> None:
        """A new poll interval: the next cycle is due one new interval from now."""
        if interval == self._interval:
            return
        self._interval = interval
        self.health.interval = timedelta(seconds=interval)
        if self._scheduler is not None:
            trigger = IntervalTrigger(seconds=interval, timezone=UTC)
            self._scheduler.reschedule_job("poll-cycle", trigger=trigger)

    async def _cancel_reloads(self) -> None:
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(signum)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
