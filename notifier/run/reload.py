"""Reloading the configuration while the daemon runs (SIGHUP, POST /-/reload on the health port).

A reload reads the env file and the routes file again, checks them as start-up does (no network:
a reload never waits on a server), builds the new destinations off to the side, and only then
hands them over; the daemon adopts them between two cycles. Anything wrong, and the running
configuration stays: `ReloadError` says why in one line. Settings bound to what was opened at
start (the state store, the Datafold client, the health listener) cannot change live: a reload
that changes one is refused, naming it, as Alertmanager refuses an invalid configuration whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog
from dotenv import dotenv_values

from notifier.deliver.sink import Sink
from notifier.route.admission import Router
from notifier.route.routes_file import RoutesError
from notifier.route.rules import Routes
from notifier.run.config import ConfigError, load_settings
from notifier.run.destination_settings import NO_DESTINATION, DestinationSettings
from notifier.run.logs import SecretRedactor, configure_logging
from notifier.run.routes import load_routes, routes_from_settings
from notifier.run.service_config import ServiceConfig
from notifier.run.settings import Settings

if TYPE_CHECKING:
    from notifier.run.wiring import Runtime

log = structlog.get_logger(__name__)

#: Settings a reload may change, besides every destination's (`DestinationSettings`). The others
#: (Datafold host and key, state file or URL, replica name and lease, health host and port, the
#: push trigger's token, field and cap, lookbacks, HTTP limits, CA bundle, poll mode) are bound
#: to what was opened at start.
LIVE_SETTINGS = frozenset(
    {
        "monitor_ids",
        "monitor_tags",
        "discovery_interval_seconds",
        "poll_interval_seconds",
        "poll_spread_seconds",
        "reminder_interval_seconds",
        "notify_states",
        "outbox_expiry_seconds",
        "outbox_max_entries",
        "feed_sweep_seconds",
        "monitor_url_template",
        "shutdown_grace_seconds",
        "routes_file",
        "allow_http",
        "log_level",
        "log_format",
    }
)


class ReloadError(Exception):
    """Why a reload was refused, in one line with no secret; the running configuration stays."""


@runtime_checkable
class Reconfigurable(Protocol):
    """A cycle runner that adopts new destinations, routing and cycle settings between cycles
    (`Notifier`, `LeasedNotifier`)."""

    def reconfigure(
        self,
        sinks: Mapping[str, Sink],
        config: ServiceConfig,
        route: Router,
        *,
        hold: bool,
    ) -> None: ...


def variable(field: str) -> str:
    """The environment variable of a `Settings` field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


def fixed_changes(old: Settings, new: Settings) -> list[str]:
    """The variables that differ between `old` and `new` but cannot change without a restart."""
    live = LIVE_SETTINGS | set(DestinationSettings.model_fields)
    return sorted(
        variable(field)
        for field in Settings.model_fields
        if field not in live and getattr(old, field) != getattr(new, field)
    )


def live_changes(old: Settings, new: Settings) -> list[str]:
    """The variables a reload changes (names only: values may be secrets)."""
    return sorted(
        variable(field)
        for field in Settings.model_fields
        if getattr(old, field) != getattr(new, field)
    )


def read_configuration(
    env_file: Path | None, environ: Mapping[str, str]
) -> tuple[Settings, Routes]:
    """The settings and routes as `run` reads them at start, with the same checks: `ConfigError`
    or `RoutesError`, one line each."""
    settings = load_settings(env_file)
    if not settings.monitor_ids and not settings.monitor_tags:
        raise ConfigError(
            "NOTIFIER_MONITOR_IDS: is empty: name at least one monitor ID "
            "(or tags in NOTIFIER_MONITOR_TAGS)"
        )
    if not settings.has_destination():
        raise ConfigError(NO_DESTINATION)
    if settings.routes_file is None:
        return settings, routes_from_settings(settings)
    dotenv = env_file or Path(".env")
    file_values = dotenv_values(dotenv) if dotenv.is_file() else {}
    merged = {k: v for k, v in file_values.items() if v is not None} | dict(environ)
    return settings, load_routes(settings.routes_file, merged, allow_http=settings.allow_http)


@dataclass(frozen=True)
class Reconfiguration:
    """A new configuration, checked and built, not yet adopted."""

    settings: Settings
    routes: Routes
    sinks: dict[str, Sink]
    changed: list[str]

    def summary(self, before: Routes) -> dict[str, object]:
        """What the `config_reloaded` log line tells (names, never values)."""
        old, new = set(before.destinations), set(self.routes.destinations)
        return {
            "changed": self.changed,
            "destinations": sorted(new),
            "destinations_added": sorted(new - old),
            "destinations_removed": sorted(old - new),
            "routes": len(self.routes.routes),
        }


class ConfigReloader:
    """Reads and builds a new configuration (`prepare`), then adopts it into the runtime
    (`apply`, which the daemon calls between cycles).

    `build_sinks` makes the destinations of new settings and routes (over the runtime's HTTP
    session); `follow` makes the cycle runner take up the runtime's new settings, routes and
    sinks. Sinks of the runtime that no route names (the demo's console) are kept.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        build_sinks: Callable[[Settings, Routes], dict[str, Sink]],
        follow: Callable[[], None],
        env_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._runtime = runtime
        self._build_sinks = build_sinks
        self._follow = follow
        self._env_file = env_file
        self._environ = dict(os.environ if environ is None else environ)
        #: Why reloading cannot work in this process, if it cannot (see `check_source`).
        self.unavailable: str | None = None

    def check_source(self) -> None:
        """Read the configuration once at start: reading it again must give the one the daemon
        runs, or a reload would read another source than start-up did (`unavailable` says so)."""
        try:
            settings, routes = read_configuration(self._env_file, self._environ)
        except (ConfigError, RoutesError) as exc:
            self.unavailable = f"the configuration cannot be read again: {exc}"
        else:
            if settings != self._runtime.settings or routes != self._runtime.routes:
                where = self._env_file or Path(".env")
                self.unavailable = (
                    f"reading {where} and the environment again does not give the "
                    "configuration the daemon started with; restart it to change it"
                )
        if self.unavailable is not None:
            log.warning("config_reload_unavailable", reason=self.unavailable)

    def prepare(self) -> Reconfiguration:
        """The new configuration, fully checked and built; `ReloadError` if anything is wrong."""
        if self.unavailable is not None:
            raise ReloadError(f"reload is not available: {self.unavailable}")
        try:
            settings, routes = read_configuration(self._env_file, self._environ)
        except (ConfigError, RoutesError) as exc:
            raise ReloadError(str(exc)) from None
        current = self._runtime.settings
        fixed = fixed_changes(current, settings)
        if fixed:
            raise ReloadError(f"{', '.join(fixed)}: cannot change without a restart")
        kept = {
            name: sink
            for name, sink in self._runtime.sinks.items()
            if name not in self._runtime.routes.destinations
        }
        try:
            sinks = {**kept, **self._build_sinks(settings, routes)}
        except Exception as exc:  # a destination's factory refused its configuration
            secrets = SecretRedactor([*settings.secrets(), *routes.secrets()])
            raise ReloadError(secrets.redact(f"destinations: {exc}")) from None
        return Reconfiguration(settings, routes, sinks, live_changes(current, settings))

    def apply(self, new: Reconfiguration) -> dict[str, object]:
        """Adopt `new` (between cycles): the runtime, the cycle runner and the log settings.
        Returns what the `config_reloaded` line tells."""
        runtime = self._runtime
        summary = new.summary(runtime.routes)
        secrets = [*runtime.settings.secrets(), *runtime.routes.secrets()]
        runtime.settings, runtime.routes, runtime.sinks = new.settings, new.routes, new.sinks
        self._follow()
        # Old secrets stay redacted too: a message about a removed destination may still show.
        configure_logging(
            level=new.settings.log_level,
            fmt=new.settings.log_format,
            secrets=[*secrets, *new.settings.secrets(), *new.routes.secrets()],
        )
        return summary
