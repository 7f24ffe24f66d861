"""The state file: versioned JSON, written atomically, one daemon at a time (file lock)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pydantic_core
import structlog
from filelock import FileLock, Timeout
from pydantic import TypeAdapter, ValidationError

from notifier.domain.models import STATE_VERSION, Mute, NotifierState
from notifier.domain.mutes import MuteSelector, lift, with_mute
from notifier.domain.outbox_requests import REQUESTS_MAX, OutboxRequest
from notifier.store.document import (
    IMPORT_MAX_BYTES,
    StateProblem,
    parse_state,
    read_state_file,
    write_atomically,
    write_state_file,
)
from notifier.store.store import StateError

__all__ = [
    "IMPORT_MAX_BYTES",
    "StateError",
    "StateFile",
    "StateProblem",
    "parse_state",
    "read_state_file",
    "write_state_file",
]

log = structlog.get_logger(__name__)

_REQUESTS = TypeAdapter(list[OutboxRequest])
#: The largest requests file read: `REQUESTS_MAX` requests take well under this.
_REQUESTS_FILE_MAX = 1024 * 1024


class StateFile:
    """Load and save `NotifierState` at `path`.

    A corrupt file (not JSON, or not the shape of a state) is moved aside to
    `<path>.corrupt-<UTC time>` with an error log, and the notifier starts afresh: every monitor
    is re-baselined silently. A file from a newer notifier is refused, never overwritten.

    Two locks: `<path>.lock`, held by the daemon for its lifetime, and `<path>.write.lock`, held
    briefly around every write. `mute`/`unmute` take only the second, so they can change the
    mutes while a daemon runs; the daemon adopts them (`fresh_mutes`) and keeps them when saving.
    The outbox requests of `outbox retry/drop` live beside it in `<path>.requests.json`, written
    under the same short lock; the daemon applies them at its next cycle.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = FileLock(f"{path}.lock", timeout=0)
        self._write_lock = FileLock(f"{path}.write.lock", timeout=30)
        self.requests_path = path.with_name(f"{path.name}.requests.json")
        #: A digest of what the file holds as this process last read or wrote it (a state of
        #: 10,000 monitors is 2 MB: no need to keep a copy to see that nothing changed).
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

    @property
    def where(self) -> str:
        """The file's path, as messages name it."""
        return str(self.path)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the daemon's lock (`locked`) while the block runs."""
        with self.locked():
            yield

    async def close(self) -> None:
        """Nothing is held open between operations: each one opens the file itself."""

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
                    self._last_saved = _digest(raw)
                    self._known = self._identity()
                    return state
        try:
            state = parse_state(raw)
        except StateProblem as exc:
            if exc.newer:
                raise StateError(f"state file {self.path} {exc}") from None
            return self._set_aside(str(exc))
        self._last_saved = _digest(raw)
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
            self._write(state_json(state))
            return state.mutes

    async def mutes(self) -> list[Mute]:
        """Every mute in the file, oldest first."""
        state = self.peek()
        return [] if state is None else sorted(state.mutes, key=lambda m: (m.created_at, m.id))

    async def add_mute(self, mute: Mute, now: datetime) -> None:
        """Set `mute` beside a running daemon (`update_mutes`), as `with_mute` says."""
        self.update_mutes(lambda mutes: with_mute(mutes, mute, now))

    async def remove_mutes(self, selector: MuteSelector, now: datetime) -> list[Mute]:
        """Lift the mutes `selector` matches beside a running daemon, as `lift` says."""
        lifted: list[Mute] = []

        def change(mutes: list[Mute]) -> list[Mute]:
            kept, found = lift(mutes, selector, now)
            lifted.extend(found)
            return kept

        self.update_mutes(change)
        return lifted

    async def outbox_requests(self) -> list[OutboxRequest]:
        """The requests in `<path>.requests.json`, oldest first (none when there is no file)."""
        return sorted(self._read_requests(), key=lambda r: (r.requested_at, r.id))

    async def request_outbox(self, request: OutboxRequest) -> None:
        """Add `request` to the requests file, safely beside a running daemon."""
        with self._exclusive_write():
            requests = self._read_requests()
            if len(requests) >= REQUESTS_MAX:
                raise StateError(
                    f"{self.requests_path}: {len(requests)} outbox requests already wait for "
                    "a cycle; is a daemon (or `once`) running?"
                )
            self._write_requests([*requests, request])

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        """Remove the requests with these IDs (requests added meanwhile stay)."""
        if not ids:
            return
        with self._exclusive_write():
            requests = self._read_requests()
            left = [r for r in requests if r.id not in ids]
            if len(left) != len(requests):
                self._write_requests(left)

    def _read_requests(self) -> list[OutboxRequest]:
        where = self.requests_path
        try:
            with where.open("rb") as handle:
                raw = handle.read(_REQUESTS_FILE_MAX + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"cannot read {where}: {exc.strerror}") from None
        if len(raw) > _REQUESTS_FILE_MAX:
            raise StateError(f"{where} is larger than {_REQUESTS_FILE_MAX} bytes")
        try:
            return _REQUESTS.validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            at = ".".join(str(part) for part in first.get("loc", ())) or "top level"
            raise StateError(f"{where} is no list of outbox requests (at {at})") from None

    def _write_requests(self, requests: list[OutboxRequest]) -> None:
        if not requests:
            try:
                self.requests_path.unlink(missing_ok=True)
            except OSError as exc:
                raise StateError(f"cannot remove {self.requests_path}: {exc.strerror}") from None
            return
        write_atomically(self.requests_path, _REQUESTS.dump_json(requests))

    async def export_state(self) -> NotifierState | None:
        """The file's state as it is (`peek`); None when there is no file yet."""
        return self.peek()

    async def import_state(self, state: NotifierState, *, force: bool = False) -> str | None:
        """Write `state` whole under the daemon's lock, so never under a running daemon; there
        is no leader to fence out, and `force` cannot take a lock from a live process."""
        with self.locked():
            self.replace(state)
        return None

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
            data = state_json(state)
            if _digest(data) == self._last_saved:
                return False
            self._write(data)
            return True

    def replace(self, state: NotifierState) -> None:
        """Write `state` whole, its mutes included, whatever the file holds (`state import`)."""
        with self._exclusive_write():
            self._write(state_json(state))

    def _write(self, data: bytes) -> None:
        log.debug("state_saving", path=str(self.path), bytes=len(data))
        write_atomically(self.path, data)
        self._last_saved = _digest(data)
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


def state_json(state: NotifierState) -> bytes:
    """`state` as the file holds it: `model_dump_json()`, made as bytes in one step (no 2 MB
    text to encode again)."""
    return state.__pydantic_serializer__.to_json(state)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


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
