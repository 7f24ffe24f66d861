"""The state file: versioned JSON, written atomically, one daemon at a time (file lock)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic_core
import structlog
from filelock import FileLock, Timeout
from pydantic import ValidationError

from notifier.domain.models import STATE_VERSION, Mute, NotifierState

log = structlog.get_logger(__name__)


#: The largest file `state import` reads: a state takes about 200 bytes per monitor.
IMPORT_MAX_BYTES = 256 * 1024 * 1024
#: Every whole number in a state fits PostgreSQL's bigint (IDs, counters, the version).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class StateError(Exception):
    """The state file cannot be used; the message is one line that names the file."""


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
        raise StateProblem(f"is not JSON ({_clip(str(exc))})") from None
    if not isinstance(document, dict):
        raise StateProblem(
            f"is not a notifier state (a JSON {_json_kind(document)}, not an object)"
        )
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > STATE_VERSION:
        raise StateProblem(
            f"has version {_clip(str(version), 24)}, newer than this notifier understands "
            f"({STATE_VERSION}): upgrade datafold-notifier",
            newer=True,
        )
    if strict and "version" not in document:
        raise StateProblem("is not a notifier state (it has no version)")
    if strict and (type(version) is not int or version < 1):
        raise StateProblem(
            f"is not a notifier state (its version {_clip(json.dumps(version), 24)} is not a "
            "version number)"
        )
    try:
        state = NotifierState.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _path(first.get("loc", ()))
        raise StateProblem(
            f"is not a notifier state (at {where}: {_clip(str(first.get('msg', 'invalid')))})"
        ) from None
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
    _write_atomically(path, state.model_dump_json(indent=None).encode())


class StateFile:
    """Load and save `NotifierState` at `path`.

    A corrupt file (not JSON, or not the shape of a state) is moved aside to
    `<path>.corrupt-<UTC time>` with an error log, and the notifier starts afresh: every monitor
    is re-baselined silently. A file from a newer notifier is refused, never overwritten.

    Two locks: `<path>.lock`, held by the daemon for its lifetime, and `<path>.write.lock`, held
    briefly around every write. `mute`/`unmute` take only the second, so they can change the
    mutes while a daemon runs; the daemon adopts them (`fresh_mutes`) and keeps them when saving.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = FileLock(f"{path}.lock", timeout=0)
        self._write_lock = FileLock(f"{path}.write.lock", timeout=30)
        self._last_saved: bytes | None = None
        #: (inode, size, mtime) of the file as this process last read or wrote it.
        self._known: tuple[int, int, int] | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock that keeps a second daemon off this file."""
        busy = (
            f"state file {self.path} is in use by another datafold-notifier "
            f"(lock {self._lock.lock_file})"
        )
        with _holding(self._lock, self.path, busy):
            # Under the write lock no one else writes here: a temp file is what a save killed
            # before its rename left behind (the state file itself is whole either way).
            with self._exclusive_write():
                for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                    stale.unlink(missing_ok=True)
            yield

    def peek(self) -> NotifierState | None:
        """Read without side effects (for `check`): None when there is no file yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        try:
            return parse_state(raw)
        except StateProblem as exc:
            if exc.newer:
                raise StateError(f"state file {self.path} {exc}") from None
            raise StateError(
                f"state file {self.path} {exc}: it is corrupt, and `run` will move it aside and "
                "start afresh"
            ) from None

    async def load(self) -> NotifierState:
        """The saved state, or an empty one when there is none yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return NotifierState()
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        with _no_gc():
            # The common case in one pass: pydantic parses and validates the JSON itself.
            try:
                state = NotifierState.model_validate_json(raw)
            except ValidationError:
                pass
            else:
                if state.version <= STATE_VERSION:
                    self._last_saved = raw
                    self._known = self._identity()
                    return state
        try:
            state = parse_state(raw)
        except StateProblem as exc:
            if exc.newer:
                raise StateError(f"state file {self.path} {exc}") from None
            return self._set_aside(str(exc))
        self._last_saved = raw
        self._known = self._identity()
        return state

    async def fresh_mutes(self) -> list[Mute] | None:
        """The file's mutes, if someone else (`mute`) wrote it since this process last did."""
        return self._fresh_mutes()

    def _fresh_mutes(self) -> list[Mute] | None:
        if self._identity() == self._known:
            return None
        try:
            document = pydantic_core.from_json(self.path.read_bytes())
            mutes = [Mute.model_validate(m) for m in document.get("mutes", [])]
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise StateError(
                f"cannot read the mutes in {self.path}: {type(exc).__name__}"
            ) from None
        return mutes

    def update_mutes(self, change: Callable[[list[Mute]], list[Mute]]) -> list[Mute]:
        """Apply `change` to the file's mutes and write it back, safely beside a running daemon.

        Used by `mute`/`unmute`. A corrupt or newer file is refused, not set aside.
        """
        with self._exclusive_write():
            state = self.peek() or NotifierState()
            state.mutes = change(list(state.mutes))
            self._write(state.model_dump_json(indent=None).encode())
            return state.mutes

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _exclusive_write(self) -> contextlib.AbstractContextManager[None]:
        """The short lock around every write (the daemon's saves, `mute`, `unmute`)."""
        busy = f"state file {self.path}: timed out waiting for {self._write_lock.lock_file}"
        return _holding(self._write_lock, self.path, busy)

    async def save(self, state: NotifierState) -> bool:
        """Write atomically (temp file, fsync, rename) when the content changed; True if written.

        The file is created with mode 0600 (mkstemp); on failure the previous file is untouched.
        """
        with self._exclusive_write():
            mutes = self._fresh_mutes()
            if mutes is not None:
                # `mute` changed the file since we last wrote it: its mutes win over ours.
                state.mutes = mutes
            data = state.model_dump_json(indent=None).encode()
            if data == self._last_saved:
                return False
            self._write(data)
            return True

    def replace(self, state: NotifierState) -> None:
        """Write `state` whole, its mutes included, whatever the file holds (`state import`)."""
        with self._exclusive_write():
            self._write(state.model_dump_json(indent=None).encode())

    def _write(self, data: bytes) -> None:
        log.debug("state_saving", path=str(self.path), bytes=len(data))
        _write_atomically(self.path, data)
        self._last_saved = data
        self._known = self._identity()
        log.debug("state_saved", path=str(self.path))

    def _set_aside(self, problem: str) -> NotifierState:
        stamp = self._clock().strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise StateError(
                f"state file {self.path} is corrupt ({problem}) and cannot be moved aside: "
                f"{exc.strerror}"
            ) from None
        log.error(
            "state_file_corrupt",
            path=str(self.path),
            problem=problem,
            moved_to=str(aside),
            consequence="starting afresh: monitors are re-baselined, the old outbox is not sent",
        )
        return NotifierState()


def _write_atomically(path: Path, data: bytes) -> None:
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


def _clip(text: str, limit: int = 120) -> str:
    """One line of at most `limit` characters, for a message that echoes the file."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _path(loc: tuple[int | str, ...] | list[Any]) -> str:
    return _clip(".".join(str(part) for part in loc), 80) or "top level"


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


@contextlib.contextmanager
def _holding(lock: FileLock, path: Path, busy: str) -> Iterator[None]:
    """Hold `lock` (creating the state's directory first); `busy` is the error when it is taken."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise StateError(busy) from None
    except OSError as exc:
        raise StateError(f"cannot lock state file {path}: {exc.strerror}") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large state is built: it allocates many small
    objects and nothing cyclic, and full collections would make loading grow quadratically."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
