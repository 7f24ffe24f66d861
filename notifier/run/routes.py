"""Where the routing table comes from: the routes file (read here, parsed by the pure
`route.routes_file`), or the destinations' environment variables (`run.destination_settings`)
when no routes file is given. Here in `run`, not in `route`, because it reads files and
`Settings`."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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


class WithSecretFiles(Mapping[str, str]):
    """`environ` where a variable NAME that is not set reads the file NAME_FILE names, as the
    settings do: `env:SLACK_BOT_TOKEN` in a routes file works with SLACK_BOT_TOKEN_FILE. A file
    is read only when its variable is asked for; one that cannot be read raises `ValueError`
    naming NAME_FILE and the path."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        if name in self._environ:
            return self._environ[name]
        path = self._environ.get(name + "_FILE", "").strip()
        if not path:
            raise KeyError(name)
        try:
            return read_secret_file(Path(path))
        except ValueError as exc:
            raise ValueError(f"{name}_FILE: {exc}") from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self._environ or bool(self._environ.get(name + "_FILE", "").strip())
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def load_routes(path: Path, environ: Mapping[str, str], *, allow_http: bool = False) -> Routes:
    """Read and validate a routes file, resolving `env:NAME` secrets from `environ` (or the file
    NAME_FILE names) and reading `file:PATH` secrets (`secret_file_reader`).

    Raises `RoutesError`: one line naming the file and the line/column or key path.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        where = path if path.is_absolute() else f"{path} (in {Path.cwd()})"
        raise RoutesError(
            f"{where}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    return parse_routes(
        raw,
        str(path),
        WithSecretFiles(environ),
        allow_http=allow_http,
        read_file=secret_file_reader(path),
    )


def env_references(path: Path) -> frozenset[str]:
    """The variables a routes file reads through `env:NAME` (none if it cannot be read now)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return frozenset()
    return frozenset(_env_names(document))


def _env_names(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("env:"):
        yield value.removeprefix("env:").strip()
    elif isinstance(value, dict):
        for item in value.values():
            yield from _env_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _env_names(item)
