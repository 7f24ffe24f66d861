"""The state as a JSON document: parsed and validated (in full for `state import`), and read
from or written to a file atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import ValidationError

from notifier.domain.models import STATE_VERSION, NotifierState
from notifier.domain.text import one_line
from notifier.store.store import StateError

#: The largest file `state import` reads: a state takes about 200 bytes per monitor.
IMPORT_MAX_BYTES = 256 * 1024 * 1024
#: Every whole number in a state fits PostgreSQL's bigint (IDs, counters, the version).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class StateProblem(ValueError):
    """Why some bytes are no state this notifier can use, as a phrase that follows the file's
    name ("is not JSON (...)"); `newer` when they come from a newer notifier."""

    def __init__(self, problem: str, *, newer: bool = False) -> None:
        super().__init__(problem)
        self.newer = newer


def parse_state(raw: bytes, *, strict: bool = False) -> NotifierState:
    """`raw` as a state of this notifier's version, or `StateProblem` saying why not.

    `strict` (what `state import` asks): the version must be given, and no unknown field, time
    without a time zone or number beyond 64 bits may appear anywhere, since the daemon would fail
    on it later. A file from a newer notifier is `newer` either way.
    """
    if not raw.strip():
        raise StateProblem("is empty")
    try:
        # pydantic's parser, not json.loads: it stops at 200 levels of nesting instead of
        # raising RecursionError, and reads numbers of any length.
        document = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise StateProblem(f"is not JSON ({one_line(str(exc), 120)})") from None
    if not isinstance(document, dict):
        raise StateProblem(
            f"is not a notifier state (a JSON {_json_kind(document)}, not an object)"
        )
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > STATE_VERSION:
        raise StateProblem(
            f"has version {one_line(str(version), 24)}, newer than this notifier understands "
            f"({STATE_VERSION}): upgrade datafold-notifier",
            newer=True,
        )
    if strict and "version" not in document:
        raise StateProblem("is not a notifier state (it has no version)")
    if strict and (type(version) is not int or version < 1):
        raise StateProblem(
            f"is not a notifier state (its version {one_line(json.dumps(version), 24)} is not a "
            "version number)"
        )
    try:
        state = NotifierState.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _path(first.get("loc", ()))
        message = one_line(str(first.get("msg", "invalid")), 120)
        raise StateProblem(f"is not a notifier state (at {where}: {message})") from None
    if state.version > STATE_VERSION:  # a version written as text, "2"
        raise StateProblem(
            f"has version {state.version}, newer than this notifier understands "
            f"({STATE_VERSION}): upgrade datafold-notifier",
            newer=True,
        )
    if strict:
        problem = _unknown_field(document, state.model_dump(mode="json")) or _unusable_value(
            state.model_dump()
        )
        if problem is not None:
            raise StateProblem(f"is not a notifier state ({problem})")
    return state


def read_state_file(path: Path, *, max_bytes: int = IMPORT_MAX_BYTES) -> NotifierState:
    """The state in `path`, validated in full (`parse_state(strict=True)`) before anyone acts on
    it; `StateError`, one line naming the file, when it is missing, no regular file, larger than
    `max_bytes` or no state of this notifier's version."""
    name = f"state file {path}"
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise StateError(f"{name} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{name} is not a regular file")
        if info.st_size > max_bytes:
            raise StateError(
                f"{name} is {_size(info.st_size)}, larger than a state can be ({_size(max_bytes)})"
            )
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)  # the file may have grown since stat
    except FileNotFoundError:
        raise StateError(f"{name} does not exist") from None
    except OSError as exc:
        raise StateError(f"cannot read {name}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > max_bytes:
        raise StateError(f"{name} is larger than a state can be ({_size(max_bytes)})")
    try:
        return parse_state(raw, strict=True)
    except StateProblem as exc:
        raise StateError(f"{name} {exc}") from None


def write_state_file(path: Path, state: NotifierState) -> None:
    """Write `state` to `path` atomically with mode 0600 (`state export`): no lock, and no
    directory is created; `StateError`, one line naming the file, when it cannot be written."""
    if path.is_dir():
        raise StateError(f"cannot write state file {path}: it is a directory")
    write_atomically(path, state.model_dump_json(indent=None).encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file beside `path` (mode 0600), fsync, rename, fsync the directory: `path` is either
    its old self or `data`, whenever the process dies."""
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StateError(f"cannot write state file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write state file {path}: {exc.strerror}") from None
    _fsync_directory(directory)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _path(loc: tuple[int | str, ...] | list[Any]) -> str:
    return one_line(".".join(str(part) for part in loc), 80) or "top level"


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.0f} MiB" if count >= 1024 * 1024 else f"{count} bytes"


def _unknown_field(document: Any, known: Any, loc: tuple[Any, ...] = ()) -> str | None:
    """The first key of `document` that the state (`known`, dumped as JSON) does not have."""
    if isinstance(document, dict) and isinstance(known, dict):
        for key, value in document.items():
            if key not in known:
                return f"unknown field {_path((*loc, key))}"
            found = _unknown_field(value, known[key], (*loc, key))
            if found is not None:
                return found
    elif isinstance(document, list) and isinstance(known, list):
        for index, (value, kept) in enumerate(zip(document, known, strict=False)):
            found = _unknown_field(value, kept, (*loc, index))
            if found is not None:
                return found
    return None


def _unusable_value(value: Any, loc: tuple[Any, ...] = ()) -> str | None:
    """The first time without a time zone or number beyond 64 bits in a dumped state."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unusable_value(key, (*loc, key)) or _unusable_value(item, (*loc, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unusable_value(item, (*loc, index))
            if found is not None:
                return found
    elif isinstance(value, datetime) and value.utcoffset() is None:
        return f"a time without a time zone at {_path(loc)}"
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (_INT_MIN <= value <= _INT_MAX)
    ):
        return f"a number beyond 64 bits at {_path(loc)}"
    return None


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
