"""What a command reads before it acts: the routes, whether a proxy is set, whether there is
work to do."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from notifier.route.routes_file import RoutesError
from notifier.route.rules import Routes
from notifier.run.config import ConfigError, SettingError
from notifier.run.destination_settings import NO_DESTINATION
from notifier.run.routes import load_routes, routes_from_settings
from notifier.run.settings import Settings


def read_routes(settings: Settings, env_file: Path | None) -> Routes:
    """The routes file's rules, or one default route to the destinations of the environment.

    `env:NAME` references in the file resolve against the environment and the env file.
    """
    if settings.routes_file is None:
        return routes_from_settings(settings)
    dotenv = env_file or Path(".env")
    file_values = dotenv_values(dotenv) if dotenv.is_file() else {}
    environ = {k: v for k, v in file_values.items() if v is not None} | dict(os.environ)
    return load_routes(settings.routes_file, environ, allow_http=settings.allow_http)


def proxy_configured() -> bool:
    """Whether aiohttp should read proxy settings from the environment (costly per request)."""
    names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    return any(os.environ.get(n) or os.environ.get(n.lower()) for n in names)


def require_work(settings: Settings, command: str) -> None:
    """Refuse a configuration with nothing to watch, or (`run`, `once`) nowhere to send."""
    if not settings.monitor_ids and not settings.monitor_tags:
        raise SettingError(
            "NOTIFIER_MONITOR_IDS: is empty: name at least one monitor ID "
            "(or tags in NOTIFIER_MONITOR_TAGS)"
        )
    if command in ("run", "once") and not settings.has_destination():
        raise SettingError(NO_DESTINATION)


def known_secrets(settings: Settings, env_file: Path | None) -> list[str]:
    """Every secret value the configuration holds, the routes file's included, for redaction in
    commands that do not need the routes (`outbox`, `mute`, `state`): an outbox entry's error
    may quote what a destination answered. A routes file that cannot be read adds none."""
    try:
        routes = read_routes(settings, env_file)
    except (RoutesError, ConfigError, ValueError):
        return list(settings.secrets())
    return [*settings.secrets(), *routes.secrets()]
