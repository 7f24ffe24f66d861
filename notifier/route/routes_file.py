"""The routes file: its TOML validated into `Routes`, and every problem told in one line that
names the file and the key or line (never a secret). Pure: `run.routes.load_routes` reads it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from notifier.route.destinations import DESTINATION_NAME, DESTINATION_TYPES, FileContext
from notifier.route.rules import DefaultRoute, Match, QuietHours, Route, Routes


class RoutesError(Exception):
    """A routes file problem, as one line naming the file and the key or line; never a secret."""


def parse_routes(
    raw: bytes,
    source: str,
    environ: Mapping[str, str],
    *,
    allow_http: bool = False,
    read_file: Callable[[str], str] | None = None,
) -> Routes:
    """Validate a routes file's bytes, resolving `env:NAME` secrets from `environ` and
    `file:PATH` secrets through `read_file` (see `FileContext`; None: `file:` is refused).

    Raises `RoutesError`: one line naming `source` (the file) and the line/column or key path.
    """
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"{source}: {exc}") from None
    except UnicodeDecodeError:
        raise RoutesError(f"{source}: not UTF-8 text") from None
    try:
        return Routes.model_validate(data, context=FileContext(environ, allow_http, read_file))
    except ValidationError as exc:
        raise RoutesError(f"{source}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Each problem as `key.path: message`, all on one line; inputs (maybe secrets) never shown."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        model = _model_at(loc[:-1])
        # The union tag pydantic adds after the destination name is no key in the file.
        if len(loc) >= 3 and loc[0] == "destinations" and loc[2] in DESTINATION_TYPES:
            del loc[2]
        message = str(error["msg"]).removeprefix("Value error, ")
        context = error.get("ctx") or {}
        match error["type"]:
            case "missing" if model is QuietHours and loc[-1] == "timezone":
                message = (
                    "field required: an IANA time zone such as 'Europe/Berlin' "
                    "(there is no implicit UTC; write 'UTC' for that)"
                )
            case "missing":
                message = "field required"
            case "extra_forbidden":
                message = _unknown_key(loc[-1], model)
            case "union_tag_invalid":
                loc.append("type")
                message = f"unknown type {str(context.get('tag'))[:40]!r} (use {_TYPE_CHOICES})"
            case "union_tag_not_found":
                loc.append("type")
                message = f"field required ({_TYPE_CHOICES})"
        path = _path(loc)
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


_TYPE_CHOICES = ", ".join(DESTINATION_TYPES)


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose keys live at `loc` (as pydantic gives it), to suggest a mistyped key."""
    match list(loc):
        case []:
            return Routes
        case ["routes", int()]:
            return Route
        case ["routes", int(), "match"]:
            return Match
        case ["routes", int(), "quiet_hours"] | ["default", "quiet_hours"]:
            return QuietHours
        case ["default"]:
            return DefaultRoute
        case ["destinations", str(), str(tag)]:
            return DESTINATION_TYPES.get(tag)
    return None


def _unknown_key(key: Any, model: type[BaseModel] | None) -> str:
    message = "unknown key"
    if model is None:
        return message
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"{message} (did you mean {close[0]}?)"
    return f"{message} (use {', '.join(allowed)})"


def _path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif DESTINATION_NAME.fullmatch(str(part)):
            path += f".{part}" if path else str(part)
        else:
            path += f"[{str(part)[:40]!r}]"
    return path
