"""The wiring: build the adapters from settings, and the one place that knows which state store
(a file, or PostgreSQL) and which cycle runner (a notifier, or a leased one) a command uses."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import structlog

from notifier import __version__
from notifier.bounded_http import BoundedResponse
from notifier.deliver.sink import Sink
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.pacer import ChannelPacer
from notifier.deliver.sinks.registry import build_sink
from notifier.domain.models import Notification
from notifier.fetch.datafold import DatafoldClient
from notifier.route.admission import Router
from notifier.route.rules import RouteDecision, Routes, route_event
from notifier.run.clock_offset import CLOCK_OFFSET_MIN, datafold_offset
from notifier.run.cycle import Notifier
from notifier.run.daemon import CycleRunner, Daemon
from notifier.run.health import ClusterView
from notifier.run.reload import ConfigReloader, Reconfigurable
from notifier.run.routes import routes_from_settings
from notifier.run.service_config import service_config
from notifier.run.settings import Settings
from notifier.store.file import StateFile
from notifier.store.store import CycleStore, StateStore

if TYPE_CHECKING:  # psycopg costs ~20 MB: imported only when NOTIFIER_STATE_URL is set
    from notifier.run.leadership import LeasedNotifier
    from notifier.store.postgres import PostgresStore

log = structlog.get_logger(__name__)


def build_sinks(
    routes: Routes,
    settings: Settings,
    session: aiohttp.ClientSession,
    tls: ssl.SSLContext | None = None,
) -> dict[str, Sink]:
    """One sink per destination of the routes, by its stable name, built by its kind's factory.

    `tls` is the process's trust (the HTTP session's), for sinks that open their own connections
    (SMTP); None leaves them the system's defaults."""
    rate = settings.slack_messages_per_second
    context = SinkContext(
        session=session,
        timeout=settings.request_timeout_seconds,
        # One pacer for every Slack sink: destinations sharing a channel share its 1 message/s.
        # aiolimiter's bucket holds max_rate messages: at least one, so slower rates stretch time.
        slack_pacer=ChannelPacer(max_rate=max(rate, 1.0), time_period=max(1.0, 1.0 / rate)),
        slack_api_url=settings.slack_api_url,
        external_url=settings.datafold_host,
        tls=tls,
        poll_interval=settings.poll_interval_seconds,
    )
    return {
        name: build_sink(name, destination, context)
        for name, destination in routes.destinations.items()
    }


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verification always on: the system's CAs, plus NOTIFIER_CA_BUNDLE's when set."""
    context = ssl.create_default_context()
    if settings.ca_bundle is not None:
        context.load_verify_locations(cafile=str(settings.ca_bundle))
    return context


def http_session(
    settings: Settings, tls: ssl.SSLContext, *, trust_env: bool = False
) -> aiohttp.ClientSession:
    """The process's one HTTP session (Datafold and the HTTP destinations); the caller closes it.
    `trust_env`: see `open_runtime`."""
    # slack_sdk applies its own timeout only to sessions it creates, so the shared one has it.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls),
        headers={"User-Agent": f"datafold-notifier/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=settings.request_timeout_seconds),
        trust_env=trust_env,
        # Slack's answers are read through it: none may be larger than a megabyte.
        response_class=BoundedResponse,
    )


def datafold_client(settings: Settings, session: aiohttp.ClientSession) -> DatafoldClient:
    """The Datafold API client over `session`, bounded as the settings say."""
    return DatafoldClient(
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


@dataclass
class Runtime:
    """The adapters of one process: HTTP session, Datafold client, sinks and the state store
    (a file, or PostgreSQL when NOTIFIER_STATE_URL is set)."""

    settings: Settings
    routes: Routes
    session: aiohttp.ClientSession
    client: DatafoldClient
    sinks: dict[str, Sink]
    store: StateStore
    #: Where the settings were read from (--env-file; None: ./.env): a reload reads it again.
    env_file: Path | None = None


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    routes: Routes | None = None,
    *,
    extra_sinks: dict[str, Sink] | None = None,
    trust_env: bool = False,
    env_file: Path | None = None,
) -> AsyncIterator[Runtime]:
    """Open the shared HTTP session and build every adapter; close them on the way out.

    `trust_env` makes aiohttp honour HTTP(S)_PROXY/NO_PROXY; it costs a thread hop per request,
    so the CLI turns it on only when a proxy variable is set. `env_file`: the settings' file
    (--env-file), which a reload reads again.
    """
    ssl_context = tls_context(settings)
    session = http_session(settings, ssl_context, trust_env=trust_env)
    try:
        client = datafold_client(settings, session)
        routes = routes if routes is not None else routes_from_settings(settings)
        sinks = {**(extra_sinks or {}), **build_sinks(routes, settings, session, ssl_context)}
        offset = await client.probe_clock()
        if offset is not None and abs(offset) >= CLOCK_OFFSET_MIN:
            log.warning(
                "clock_offset",
                against="datafold",
                offset_seconds=round(offset, 1),
                action="listings reach back by it; first listings judge history on its clock",
            )
        async with open_store(settings) as store:
            yield Runtime(settings, routes, session, client, sinks, store, env_file)
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[StateStore]:
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
    store: CycleStore | None = None,
    may_deliver: Callable[[], bool] | None = None,
) -> Notifier:
    """A notifier over the runtime's adapters and the state file (hold its lock, then `load`),
    or over `store` (the state a leader read from PostgreSQL).

    Sinks that are not destinations of the routes (the demo's console) get every notification.
    """
    config = service_config(runtime.settings, spread=spread)
    if store is None:
        if _postgres(runtime.store) is not None:
            raise TypeError("with PostgreSQL the notifier runs under a lease: make_leased")
        store = runtime.store
    return Notifier(
        runtime.client,
        store,
        runtime.sinks,
        config,
        source_offset=datafold_offset(runtime.client),
        route=router(runtime),
        hold_without_details=runtime.settings.routes_file is not None,
        may_deliver=may_deliver,
    )


def router(runtime: Runtime) -> Router:
    """Where a notification goes: by the runtime's routes as they are now (a reload gives the
    notifier a new router), plus every sink the routes do not name (the demo's console)."""
    routes = runtime.routes
    unrouted = [name for name in runtime.sinks if name not in routes.destinations]

    def route(notification: Notification, now: datetime) -> RouteDecision:
        incident = notification.incident
        failures = 1 if incident is None else incident.failures
        monitor, kind = notification.monitor, notification.event_kind
        decision = route_event(routes, monitor, kind, now, failures=failures)
        return RouteDecision(to=[*decision.to, *unrouted], quiet=decision.quiet)

    return route


def make_leased(runtime: Runtime, *, spread: bool = True) -> LeasedNotifier:
    """The notifier of one replica sharing PostgreSQL: it acts only while holding the lease."""
    from notifier.run.leadership import LeasedNotifier

    pg = _postgres(runtime.store)
    if pg is None:
        raise TypeError("a leased notifier needs the PostgreSQL store")
    return LeasedNotifier(
        pg,
        # Deliveries stop at the first check once the lease may have lapsed or a new lease
        # began: the fence the state was loaded under must still be the lease's.
        lambda elected: make_notifier(
            runtime, spread=spread, store=elected, may_deliver=elected.may_deliver
        ),
    )


@contextlib.asynccontextmanager
async def cycle_runner(runtime: Runtime, *, once: bool = False) -> AsyncIterator[CycleRunner]:
    """What runs the cycles of `run` (and the demo), or the one cycle of `once`, on the state it
    has loaded, holding what it must hold meanwhile.

    A state file: its lock, for as long as the block runs. PostgreSQL: for `run`, a leased
    notifier, whose daemon takes and keeps the lease; for `once`, the lease taken at once
    (`StoreBusy` when another replica holds it) and released at the end.
    """
    pg = _postgres(runtime.store)
    if pg is None:
        async with runtime.store.exclusive():
            notifier = make_notifier(runtime, spread=not once)
            await notifier.load()  # a state it cannot use stops the command here
            yield notifier
        return
    leased = make_leased(runtime, spread=not once)
    if not once:
        yield leased
        return
    async with pg.exclusive():  # stops renewing, then lets the lease lapse
        try:
            yield leased
        finally:
            leased.forget()


def watch_store(daemon: Daemon, runtime: Runtime) -> None:
    """Hang what PostgreSQL tells about the cluster (its clock, namesakes, who last polled) on
    the daemon's metrics and health; a state file tells nothing more. And (the demo's daemon
    excepted) let SIGHUP and POST /-/reload reload the configuration (`run.reload`), and serve
    the push trigger when NOTIFIER_TRIGGER_TOKEN is set (`run.trigger_loop`)."""
    if (trigger := runtime.settings.trigger) is not None:
        daemon.enable_trigger(trigger)
    if not daemon.stops_on_hangup:
        daemon.reloader = ConfigReloader(
            runtime,
            build_sinks=lambda s, r: build_sinks(r, s, runtime.session, tls_context(s)),
            follow=lambda: follow_runtime(daemon.runner, runtime),
            env_file=runtime.env_file,
        )
        daemon.reloader.check_source()
    pg = _postgres(runtime.store)
    if pg is None:
        return
    daemon.metrics.watch_clock("database", lambda: pg.clock_offset)
    daemon.metrics.watch_name_clashes(lambda: pg.name_clashes)
    daemon.health.cluster = lambda: ClusterView(
        database_answered_at=pg.last_reachable_at,
        last_cycle_at=pg.last_cycle_at,
        last_cycle_by=pg.last_cycle_by,
        lease=pg.lease_ttl,
        patience=timedelta(seconds=pg.connect_timeout),
    )


def follow_runtime(runner: object, runtime: Runtime) -> None:
    """The cycle runner takes up the runtime's reloaded settings, routes and sinks."""
    if isinstance(runner, Reconfigurable):
        hold = runtime.settings.routes_file is not None
        runner.reconfigure(
            runtime.sinks, service_config(runtime.settings), router(runtime), hold=hold
        )


async def leader_note(store: StateStore) -> str:
    """What `check` adds to the state's line: who holds the PostgreSQL lease (nothing for a
    file)."""
    pg = _postgres(store)
    if pg is None:
        return ""
    lease = await pg.lease()
    if lease is not None and lease.holder and lease.expires_in > 0:
        return f"; leader {lease.holder} (lease {lease.expires_in:.0f} s left)"
    return "; no leader holds the lease"


def _postgres(store: StateStore) -> PostgresStore | None:
    """`store` as the PostgreSQL store, when it is one (psycopg is loaded only then)."""
    if isinstance(store, StateFile):
        return None
    from notifier.store.postgres import PostgresStore

    return store if isinstance(store, PostgresStore) else None
