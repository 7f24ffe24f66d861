"""`run` and `once`: the daemon, or one cycle, over the adapters the wiring builds."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from notifier.cli.config import proxy_configured
from notifier.cli.exits import EXIT_FAILED, EXIT_OK
from notifier.domain.report import CycleReport
from notifier.route.rules import Routes
from notifier.run.daemon import CycleRunner, Daemon, StatusListener
from notifier.run.settings import Settings
from notifier.run.systemd import SystemdNotify
from notifier.run.wiring import Runtime, cycle_runner, open_runtime, watch_store
from notifier.store.store import StoreBusy

log = structlog.get_logger("notifier.cli")


async def once(settings: Settings, routes: Routes) -> int:
    """One cycle with delivery; 1 when no monitor could be polled or the lease was not ours."""
    async with open_runtime(settings, routes, trust_env=proxy_configured()) as runtime:
        try:
            async with cycle_runner(runtime, once=True) as runner:
                report = await runner.run_cycle()
        except StoreBusy as exc:
            log.error("once_failed", reason=str(exc))
            return EXIT_FAILED
        if report.standby:
            log.error("once_failed", reason="the lease lapsed during the cycle")
            return EXIT_FAILED
    return cycle_outcome(report)


def cycle_outcome(report: CycleReport) -> int:
    """A one-shot cycle's exit code: 1 (logged why) when no monitor could be polled."""
    if report.key_refused and report.all_failed:
        log.error("once_failed", reason="Datafold refused the API key")
        return EXIT_FAILED
    if report.all_failed:
        log.error("once_failed", reason="no monitor could be polled")
        return EXIT_FAILED
    return EXIT_OK


async def run(settings: Settings, routes: Routes, env_file: Path | None = None) -> int:
    """The daemon, until SIGTERM/SIGINT; SIGHUP reads `env_file` (or ./.env) again."""
    async with (
        open_runtime(settings, routes, trust_env=proxy_configured(), env_file=env_file) as runtime,
        cycle_runner(runtime) as runner,
    ):
        return await make_daemon(settings, runtime, runner).run()


def make_daemon(
    settings: Settings, runtime: Runtime, runner: CycleRunner, *, stop_on_hangup: bool = False
) -> Daemon:
    """The daemon over `runner`, with its status listener, systemd and clock watches."""
    listener = None
    if settings.health_port is not None:
        listener = StatusListener(settings.health_host, settings.health_port)
    daemon = Daemon(
        runner,
        interval=settings.poll_interval_seconds,
        grace=settings.shutdown_grace_seconds,
        listener=listener,
        systemd=SystemdNotify.from_environ(os.environ, os.getpid()),
        stop_on_hangup=stop_on_hangup,
    )
    daemon.metrics.watch_clock("datafold", lambda: runtime.client.clock_offset)
    watch_store(daemon, runtime)
    return daemon
