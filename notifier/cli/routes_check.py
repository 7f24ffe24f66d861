"""`datafold-notifier check --routes FILE`: one routes file validated on its own, as CI or an
editor's save hook runs it, without DATAFOLD_API_KEY or any other setting.

`env:NAME` resolves from the environment and the env file (`--env-file`, else `./.env`), and a
value that is set is checked as the daemon checks it. A variable that is not set is no error
here: CI seldom holds the production secrets. The OK line names those variables; a stand-in
value of the right shape takes their place, so the rest of the file is still checked. Plain
`check` (and the daemon) still refuse them. `file:PATH` is read as the daemon reads it (relative
to the routes file's directory) and alike: a file that is not there (nothing at the path, or a
directory on the way missing) is named and stood in for; one that is there but unusable (a
directory, unreadable, empty, too large) is an error. NOTIFIER_ALLOW_HTTP is read as the daemon
reads it.

Exit codes: 0 valid, 1 invalid (one line naming the file and the key), 2 the file cannot be read
or NOTIFIER_ALLOW_HTTP is no boolean.
"""

from __future__ import annotations

import base64
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import TypeAdapter, ValidationError

from notifier.cli.exits import EXIT_FAILED, EXIT_OK, fail
from notifier.route.routes_file import RoutesError, parse_routes
from notifier.route.rules import Routes
from notifier.run.routes import secret_file_reader
from notifier.run.secret_files import SecretFileError

#: Stands in for an unset variable: an https URL passes as any secret except a signing secret.
STAND_IN_URL = "https://unset.invalid/"
#: Stands in for an unset webhook `secret` (Standard Webhooks: `whsec_` and base64 key bytes).
STAND_IN_WHSEC = "whsec_" + base64.b64encode(b"stand-in for an unset variable!!").decode()
_ENV_NAME = re.compile(r"env:\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_FILE_PATH = re.compile(r"file:\s*(\S.*?)\s*", re.DOTALL)
_ALLOW_HTTP = "NOTIFIER_ALLOW_HTTP"


def check_routes_file(path: Path, env_file: Path | None) -> int:
    """Validate the routes file at `path`; print one line (stdout if valid, stderr if not)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return fail(f"routes: {path}: cannot read it ({exc.strerror or type(exc).__name__})")
    dotenv = env_file or Path(".env")
    from_file = dotenv_values(dotenv) if dotenv.is_file() else {}
    environ = {k: v for k, v in from_file.items() if v is not None} | dict(os.environ)
    try:
        allow_http = _allow_http(environ)
    except ValueError as exc:
        return fail(f"configuration: {exc}")
    stand_ins = unset_references(raw, environ)
    absent: list[str] = []
    read_file = _standing_in_for_absent(secret_file_reader(path), file_stand_ins(raw), absent)
    try:
        routes = parse_routes(
            raw, str(path), environ | stand_ins, allow_http=allow_http, read_file=read_file
        )
    except RoutesError as exc:
        fail(f"routes: {exc}")
        return EXIT_FAILED
    notes = _unset_note(stand_ins) + _absent_note(absent)
    print(f"{path}: valid: {summary(routes)}{notes}", flush=True)
    return EXIT_OK


def unset_references(raw: bytes, environ: Mapping[str, str]) -> dict[str, str]:
    """Each variable the file names in `env:NAME` that `environ` lacks, with a stand-in value of
    the shape its field needs. A file that is no TOML has none (`parse_routes` says why)."""
    stand_ins: dict[str, str] = {}
    for reference, stand_in in _references(raw):
        match = _ENV_NAME.fullmatch(reference)
        if match is not None and match[1] not in environ:
            stand_ins.setdefault(match[1], stand_in)
    return stand_ins


def file_stand_ins(raw: bytes) -> dict[str, str]:
    """Each `file:PATH` the file names, by PATH as the models pass it to the reader, with a
    stand-in value of the shape its field needs, for when nothing is there."""
    stand_ins: dict[str, str] = {}
    for reference, stand_in in _references(raw):
        match = _FILE_PATH.fullmatch(reference)
        if match is not None:
            stand_ins.setdefault(match[1], stand_in)
    return stand_ins


def _references(raw: bytes) -> Iterator[tuple[str, str]]:
    """Every string of a destination's table (or in a list there), with a stand-in of the shape
    its key needs. A file that is no TOML has none (`parse_routes` says why)."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return
    destinations = data.get("destinations")
    for table in destinations.values() if isinstance(destinations, dict) else ():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            signing = key == "secret" and table.get("type") == "webhook"
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    yield text, STAND_IN_WHSEC if signing else STAND_IN_URL


def _standing_in_for_absent(
    read: Callable[[str], str], stand_ins: Mapping[str, str], absent: list[str]
) -> Callable[[str], str]:
    """`read`, but a file that is not there is noted in `absent` and stood in for."""

    def read_or_stand_in(path: str) -> str:
        try:
            return read(path)
        except SecretFileError as exc:
            if not exc.missing:
                raise
            absent.append(path)
            return stand_ins.get(path, STAND_IN_URL)

    return read_or_stand_in


def _allow_http(environ: Mapping[str, str]) -> bool:
    """NOTIFIER_ALLOW_HTTP as the settings read it (the name in any case, pydantic's booleans)."""
    values = [v for k, v in environ.items() if k.upper() == _ALLOW_HTTP]
    if not values:
        return False
    try:
        return TypeAdapter(bool).validate_python(values[-1].strip() or "false")
    except ValidationError:
        raise ValueError(f"{_ALLOW_HTTP}: not a boolean (use true or false)") from None


def summary(routes: Routes) -> str:
    """What the file defines, in a few words: `2 destinations, 3 routes and a default route`."""
    parts = [_count(len(routes.destinations), "destination"), _count(len(routes.routes), "route")]
    default = " and a default route" if routes.default is not None else ""
    return ", ".join(parts) + default


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _unset_note(stand_ins: Mapping[str, str]) -> str:
    if not stand_ins:
        return ""
    names = ", ".join(sorted(stand_ins))
    return f"; not set here, so their values were not checked: {names}"


def _absent_note(paths: list[str]) -> str:
    if not paths:
        return ""
    return f"; files not found here, so not checked: {', '.join(sorted(set(paths)))}"
