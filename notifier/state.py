"""The state file: versioned JSON, written atomically, one daemon at a time (file lock)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import structlog
from filelock import FileLock, Timeout
from pydantic import ValidationError

from notifier.models import STATE_VERSION, Mute, NotifierState

log = structlog.get_logger(__name__)


class StateError(Exception):
    """The state file cannot be used; the message is one line that names the file."""


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
            return NotifierState.model_validate_json(raw)
        except ValidationError:
            raise StateError(
                f"state file {self.path} is corrupt; `run` will move it aside and start afresh"
            ) from None

    def load(self) -> NotifierState:
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
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return self._set_aside(f"not JSON ({exc})")
        if not isinstance(document, dict):
            return self._set_aside("not a JSON object")
        version = document.get("version")
        if isinstance(version, int) and version > STATE_VERSION:
            raise StateError(
                f"state file {self.path} has version {version}, newer than this notifier "
                f"understands ({STATE_VERSION}): upgrade datafold-notifier"
            )
        try:
            state = NotifierState.model_validate(document)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            return self._set_aside(f"unexpected content at {where or 'top level'}")
        self._last_saved = raw
        self._known = self._identity()
        return state

    def fresh_mutes(self) -> list[Mute] | None:
        """The file's mutes, if someone else (`mute`) wrote it since this process last did."""
        if self._identity() == self._known:
            return None
        try:
            document = json.loads(self.path.read_bytes())
            mutes = [Mute.model_validate(m) for m in document.get("mutes", [])]
        except (OSError, ValueError, AttributeError) as exc:
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
            if state.version > STATE_VERSION:
                raise StateError(f"state file {self.path} is from a newer datafold-notifier")
            state.mutes = change(list(state.mutes))
            self._write(state.model_dump_json(indent=None).encode())
            return state.mutes

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _exclusive_write(self) -> contextlib.AbstractContextManager[None]:
        """The short lock around every write (the daemon's saves, `mute`, `unmute`)."""
        busy = f"state file {self.path}: timed out waiting for {self._write_lock.lock_file}"
        return _holding(self._write_lock, self.path, busy)

    def save(self, state: NotifierState) -> bool:
        """Write atomically (temp file, fsync, rename) when the content changed; True if written.

        The file is created with mode 0600 (mkstemp); on failure the previous file is untouched.
        """
        with self._exclusive_write():
            mutes = self.fresh_mutes()
            if mutes is not None:
                # `mute` changed the file since we last wrote it: its mutes win over ours.
                state.mutes = mutes
            data = state.model_dump_json(indent=None).encode()
            if data == self._last_saved:
                return False
            self._write(data)
            return True

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        log.debug("state_saving", path=str(self.path), bytes=len(data))
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StateError(f"cannot write state file {self.path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateError(f"cannot write state file {self.path}: {exc.strerror}") from None
        _fsync_directory(directory)
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
