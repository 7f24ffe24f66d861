"""Wiring and lifecycle: build the adapters from settings, schedule cycles, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import aiohttp
import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier import __version__
from notifier.bounded_http import BoundedResponse
from notifier.deliver.sink import Sink
from notifier.deliver.sinks.slack import ChannelPacer, SlackBotSink, SlackWebhookSink
from notifier.deliver.sinks.webhook import WebhookSink
from notifier.detect.runs import DetectionPolicy
from notifier.domain.models import Notification
from notifier.domain.report import CycleReport
from notifier.fetch.datafold import DatafoldClient
from notifier.route.destinations import SlackDestination, SlackWebhookDestination
from notifier.route.rules import RouteDecision, Routes, route_event
from notifier.run.cycle import Notifier, ServiceConfig
from notifier.run.health import HealthTracker
from notifier.run.metrics import Metrics
from notifier.run.routes import routes_from_settings
from notifier.run.settings import Settings
from notifier.run.status_server import serve_status, status_app
from notifier.run.systemd import SystemdNotify
from notifier.store.file import StateError, StateFile
from notifier.store.store import StateStore

if TYPE_CHECKING:  # psycopg costs ~20 MB: imported only when NOTIFIER_STATE_URL is set
    from notifier.run.leadership import LeasedNotifier
    from notifier.store.postgres import PostgresStore

log = structlog.get_logger(__name__)


def service_config(settings: Settings, *, spread: bool = True) -> ServiceConfig:
    """The cycle's view of the settings; `spread=False` for one-shot cycles that should be quick."""
    lookback = timedelta(seconds=settings.lookback_seconds)
    return ServiceConfig(
        monitor_ids=tuple(settings.monitor_ids),
        policy=DetectionPolicy(
            notify_states=frozenset(settings.notify_states),
            retention=max(2 * lookback, timedelta(hours=1)),
            in_progress_limit=timedelta(hours=24),
            first_start_lookback=timedelta(seconds=settings.first_start_lookback_seconds),
            stamp_granularity=min(lookback / 4, timedelta(minutes=5)),
        ),
        lookback=lookback,
        outbox_expiry=timedelta(seconds=settings.outbox_expiry_seconds),
        catchup_limit=timedelta(seconds=settings.catchup_limit_seconds),
        host=settings.datafold_host,
        monitor_url_template=settings.monitor_url_template,
        monitor_cache=timedelta(seconds=settings.monitor_cache_seconds),
        spread=timedelta(seconds=settings.poll_spread if spread else 0.0),
        mode=settings.poll_mode,
        sweep=timedelta(seconds=settings.feed_sweep_seconds),
        monitor_tags=tuple(settings.monitor_tags),
        discovery_interval=timedelta(seconds=settings.discovery_interval_seconds),
        reminder_interval=(
            timedelta(seconds=settings.reminder_interval_seconds)
            if settings.reminder_interval_seconds > 0
            else None
        ),
        retry_after_cap=timedelta(seconds=settings.retry_after_cap),
        outbox_max=settings.outbox_max_entries,
    )


#: Below this, our clock and Datafold's are taken to agree (its `Date` header has whole seconds).
CLOCK_OFFSET_MIN = 2.0
#: Beyond this, a `Date` header is not believed (a proxy's broken clock, a hostile answer): the
#: cycle keeps our own clock rather than judge every run by it.
CLOCK_OFFSET_MAX = 6 * 3600.0


def datafold_offset(client: DatafoldClient) -> Callable[[], float]:
    """How far Datafold's clock is ahead of ours (seconds), as its `Date` headers show it and as
    far as it is believed: 0 within the headers' resolution, and 0 past `CLOCK_OFFSET_MAX` (a
    proxy's broken clock, a hostile answer; logged once as an error). The cycle runs on our clock;
    the offset only widens listing windows and moves a first listing's history cutoff, so a
    replica an hour fast or slow neither misses runs nor takes history for news, and a wrong
    offset can only make a listing longer."""
    disbelieved = False

    def offset() -> float:
        nonlocal disbelieved
        measured = client.clock_offset
        if measured is None or abs(measured) < CLOCK_OFFSET_MIN:
            return 0.0
        if abs(measured) > CLOCK_OFFSET_MAX:
            if not disbelieved:
                disbelieved = True
                log.error(
                    "clock_offset_untrusted",
                    against="datafold",
                    offset_seconds=round(measured, 1),
                    bound_seconds=CLOCK_OFFSET_MAX,
                    action="not applied; check this machine's clock and any proxy",
                )
            return 0.0
        disbelieved = False
        return measured

    return offset


def build_sinks(
    routes: Routes, settings: Settings, session: aiohttp.ClientSession
) -> dict[str, Sink]:
    """The explicit registry: one sink per destination of the routes, by its stable name."""
    sinks: dict[str, Sink] = {}
    timeout = settings.request_timeout_seconds
    # One pacer for every Slack sink: destinations sharing a channel share its 1 message/s.
    rate = settings.slack_messages_per_second
    # aiolimiter's bucket holds max_rate messages: at least one, so slower rates stretch time.
    pacer = ChannelPacer(max_rate=max(rate, 1.0), time_period=max(1.0, 1.0 / rate))
    for name, destination in routes.destinations.items():
        if isinstance(destination, SlackDestination):
            sinks[name] = SlackBotSink(
                destination.token.get_secret_value(),
                destination.channel,
                base_url=settings.slack_api_url,
                session=session,
                timeout=int(timeout),
                name=name,
                thread=destination.thread,
                mentions=destination.mentions,
                mention_owner=destination.mention_owner,
                digest_threshold=destination.digest_threshold,
                pacer=pacer,
            )
        elif isinstance(destination, SlackWebhookDestination):
            sinks[name] = SlackWebhookSink(
                destination.url.get_secret_value(),
                session=session,
                timeout=int(timeout),
                name=name,
                mentions=destination.mentions,
                digest_threshold=destination.digest_threshold,
                pacer=pacer,
            )
        else:
            sinks[name] = WebhookSink(
                destination.url.get_secret_value(),
                secret=[secret.get_secret_value() for secret in destination.secrets],
                session=session,
                timeout=timeout,
                name=name,
                payload_format=destination.format,
                external_url=settings.datafold_host,
            )
    return sinks


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verification always on: the system's CAs, plus NOTIFIER_CA_BUNDLE's when set."""
    context = ssl.create_default_context()
    if settings.ca_bundle is not None:
        context.load_verify_locations(cafile=str(settings.ca_bundle))
    return context


@dataclass
class Runtime:
    """The adapters of one process: HTTP session, Datafold client, sinks and the state store
    (a file, or PostgreSQL when NOTIFIER_STATE_URL is set)."""

    settings: Settings
    routes: Routes
    session: aiohttp.ClientSession
    client: DatafoldClient
    sinks: dict[str, Sink]
    store: StateFile | PostgresStore


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    routes: Routes | None = None,
    *,
    extra_sinks: dict[str, Sink] | None = None,
    trust_env: bool = False,
) -> AsyncIterator[Runtime]:
    """Open the shared HTTP session and build every adapter; close them on the way out.

    `trust_env` makes aiohttp honour HTTP(S)_PROXY/NO_PROXY; it costs a thread hop per request,
    so the CLI turns it on only when a proxy variable is set.
    """
    # slack_sdk applies its own timeout only to sessions it creates, so the shared one has it.
    ssl_context = tls_context(settings)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context),
        headers={"User-Agent": f"datafold-notifier/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=settings.request_timeout_seconds),
        trust_env=trust_env,
        # Slack's answers are read through it: none may be larger than a megabyte.
        response_class=BoundedResponse,
    )
    try:
        client = DatafoldClient(
            session,
            settings.datafold_host,
            settings.datafold_api_key.get_secret_value(),
            page_size=settings.page_size,
            max_concurrency=settings.max_concurrency,
            max_requests_per_second=settings.max_requests_per_second,
            request_timeout=settings.request_timeout_seconds,
            max_retry_after=settings.retry_after_cap,
            max_response_bytes=settings.max_response_bytes,
        )
        routes = routes if routes is not None else routes_from_settings(settings)
        sinks = {**(extra_sinks or {}), **build_sinks(routes, settings, session)}
        offset = await client.probe_clock()
        if offset is not None and abs(offset) >= CLOCK_OFFSET_MIN:
            log.warning(
                "clock_offset",
                against="datafold",
                offset_seconds=round(offset, 1),
                action="listings reach back by it; first listings judge history on its clock",
            )
        async with open_store(settings) as store:
            yield Runtime(settings, routes, session, client, sinks, store)
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[StateFile | PostgresStore]:
    """The state file, or PostgreSQL (connected, schema migrated) when NOTIFIER_STATE_URL is set."""
    if settings.state_url is None:
        yield StateFile(settings.state_file)
        return
    from notifier.store.postgres import PostgresStore

    store = PostgresStore(
        settings.state_url.get_secret_value(),
        holder=settings.replica,
        lease_ttl=timedelta(seconds=settings.lease),
        connect_timeout=min(10.0, settings.request_timeout_seconds),
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def make_notifier(
    runtime: Runtime,
    *,
    spread: bool = True,
    store: StateStore | None = None,
    may_deliver: Callable[[], bool] | None = None,
) -> Notifier:
    """A notifier over the runtime's adapters and the state file (hold its lock, then `load`),
    or over `store` (the state a leader read from PostgreSQL).

    Sinks that are not destinations of the routes (the demo's console) get every notification.
    """
    config = service_config(runtime.settings, spread=spread)
    routes = runtime.routes
    unrouted = [name for name in runtime.sinks if name not in routes.destinations]

    def route(notification: Notification, now: datetime) -> RouteDecision:
        decision = route_event(routes, notification.monitor, notification.event_kind, now)
        return RouteDecision(to=[*decision.to, *unrouted], quiet=decision.quiet)

    if store is None:
        if not isinstance(runtime.store, StateFile):
            raise TypeError("with PostgreSQL the notifier runs under a lease: make_leased")
        store = runtime.store
    return Notifier(
        runtime.client,
        store,
        runtime.sinks,
        config,
        source_offset=datafold_offset(runtime.client),
        route=route,
        hold_without_details=runtime.settings.routes_file is not None,
        may_deliver=may_deliver,
    )


def make_leased(runtime: Runtime, *, spread: bool = True) -> LeasedNotifier:
    """The notifier of one replica sharing PostgreSQL: it acts only while holding the lease."""
    from notifier.run.leadership import LeasedNotifier

    pg = runtime.store
    if isinstance(pg, StateFile):
        raise TypeError("a leased notifier needs the PostgreSQL store")
    return LeasedNotifier(
        pg,
        # Deliveries stop at the first check once the lease may have lapsed or a new lease
        # began: the fence the state was loaded under must still be the lease's.
        lambda elected: make_notifier(
            runtime, spread=spread, store=elected, may_deliver=elected.may_deliver
        ),
    )


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
    """Where /healthz and /metrics are served (NOTIFIER_HEALTH_HOST/PORT)."""

    host: str
    port: int


class StatusError(Exception):
    """The health/metrics listener could not start; one line naming the setting."""


class Daemon:
    """Runs a cycle every interval until SIGTERM/SIGINT, then drains within the grace period.

    Cycles never overlap: a cycle still running when the next is due makes that one skipped and
    logged. A second signal exits at once; the state file is never half-written either way,
    because every save is an atomic rename. SIGHUP is logged and ignored (`stop_on_hangup`: a
    graceful stop, for the demo, whose terminal is gone). Health, metrics and systemd
    notification hang off the cycle reports.
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
        self._current: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._stop_on_hangup = stop_on_hangup

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
            stack.callback(scheduler.shutdown, wait=False)
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
        app = status_app(self.health, self.metrics, self._clock)
        try:
            bound = await stack.enter_async_context(serve_status(app, host, port))
        except OSError as exc:
            raise StatusError(
                f"NOTIFIER_HEALTH_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        log.info("status_listening", host=host, port=bound, paths=["/healthz", "/metrics"])

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
        try:
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
            if self._systemd is not None:
                self._systemd.status(
                    f"{len(report.polled)} monitors polled, {len(report.failed)} failed, "
                    f"outbox {report.outbox_size}"
                )
        finally:
            self._current = None

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
        log.info(
            "signal_received",
            signal="SIGHUP",
            action="ignored",
            reason="reload is not supported yet; the daemon goes on",
        )


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(signum)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
