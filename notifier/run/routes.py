"""Where the routing table comes from: the routes file (read here, parsed by the pure
`route.routes_file`), or the destinations' environment variables (`run.destination_settings`)
when no routes file is given. Here in `run`, not in `route`, because it reads files and
`Settings`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from notifier.route.routes_file import RoutesError, parse_routes
from notifier.route.rules import DefaultRoute, Routes
from notifier.run.secret_files import read_secret_file
from notifier.run.settings import Settings


def routes_from_settings(settings: Settings) -> Routes:
    """The destinations' environment variables as one default route to every destination they
    configure, each under its stable name ("slack", "slack-webhook", "webhook-…", "pagerduty",
    "teams", "email", "alertmanager", "apprise"), so outbox entries stay deliverable."""
    destinations = settings.environment_destinations()
    default = DefaultRoute(to=list(destinations)) if destinations else None
    return Routes(destinations=destinations, default=default)


def secret_file_reader(routes_file: Path) -> Callable[[str], str]:
    """How the routes file's `file:PATH` is read: PATH relative to the routes file's directory
    (so the file and its secrets move together), as `run.secret_files` reads NAME_FILE."""

    def read(path: str) -> str:
        return read_secret_file(routes_file.parent / path)

    return read


def load_routes(path: Path, environ: Mapping[str, str], *, allow_http: bool = False) -> Routes:
    """Read and validate a routes file, resolving `env:NAME` secrets from `environ` and reading
    `file:PATH` secrets (`secret_file_reader`).

    Raises `RoutesError`: one line naming the file and the line/column or key path.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RoutesError(
            f"{path}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    return parse_routes(
        raw, str(path), environ, allow_http=allow_http, read_file=secret_file_reader(path)
    )
