"""What `once --dry-run` runs a real cycle over: sinks that only record what they are handed, and
a store that reads the real state but never writes it.

The recording sinks keep the real destinations' names and shapes (a digest threshold, the
Alertmanager keep-alive), so routing, mutes, quiet hours, digests and the outbox decide exactly
as in a real cycle; only the sending and the saving are left out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from notifier.deliver.sink import CheckResult, DigestSink, HoldingSink, Sink
from notifier.domain.models import MessageRef, Mute, Notification, NotifierState
from notifier.store.store import StateStore

if TYPE_CHECKING:
    from notifier.domain.outbox_requests import OutboxRequest

Action = Literal["send", "digest", "hold"]


@dataclass(frozen=True)
class Recorded:
    """One delivery a destination would have got: a notification (`send`, with the message of
    its incident it would follow, if known), a digest of many, or the keep-alive (`hold`) of
    the open incidents' alerts."""

    action: Action
    notifications: tuple[Notification, ...]
    thread: MessageRef | None = None


class RecordingSink:
    """A destination that accepts everything and sends nothing; `recorded` lists what it got.

    `send` returns no message reference: nothing was posted that a later message could follow.
    """

    def __init__(self, name: str, *, digest_threshold: int | None = None) -> None:
        self.name = name
        self.digest_threshold = digest_threshold
        self.recorded: list[Recorded] = []

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        """Record the notification (and the message it would follow)."""
        self.recorded.append(Recorded("send", (notification,), thread))
        return None

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Record the digest."""
        self.recorded.append(Recorded("digest", tuple(notifications)))

    async def check(self) -> list[CheckResult]:
        """Nothing to probe: a dry run reaches no destination."""
        return [CheckResult(self.name, True, "dry run: records, sends nothing")]


class RecordingHoldingSink(RecordingSink):
    """A recording sink for a destination that is told every cycle what still fires."""

    async def hold(self, notifications: Sequence[Notification]) -> None:
        """Record the keep-alive."""
        self.recorded.append(Recorded("hold", tuple(notifications)))


def recording_sinks(sinks: Mapping[str, Sink]) -> dict[str, RecordingSink]:
    """A recording stand-in for each sink, by the same name, with the same digest threshold and
    keep-alive, so the cycle treats it as it would the real one."""
    stand_ins: dict[str, RecordingSink] = {}
    for name, sink in sinks.items():
        threshold = sink.digest_threshold if isinstance(sink, DigestSink) else None
        kind = RecordingHoldingSink if isinstance(sink, HoldingSink) else RecordingSink
        stand_ins[name] = kind(name, digest_threshold=threshold)
    return stand_ins


class UnsavedState:
    """The real store's state as a cycle's store that saves nothing (a `CycleStore`).

    It reads through `export_state`: no file lock and no PostgreSQL lease is taken, nothing is
    moved aside or migrated, so a running daemon is not disturbed. `waiting` names the
    notifications that were already in the outbox when it was read (retries, not news).
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.waiting: frozenset[str] = frozenset()

    async def load(self) -> NotifierState:
        """The saved state as it is now (empty when none was saved yet)."""
        state = await self._store.export_state() or NotifierState()
        self.waiting = frozenset(entry.notification.id for entry in state.outbox)
        return state

    async def save(self, state: NotifierState) -> bool:
        """Never written: a dry run leaves the state as it found it."""
        return False

    async def fresh_mutes(self) -> list[Mute] | None:
        """The mutes read with the state are the ones that apply."""
        return None

    async def outbox_requests(self) -> list[OutboxRequest]:
        """The waiting `outbox retry`/`drop` requests: applied to this cycle as `once` would."""
        return await self._store.outbox_requests()

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        """Left waiting: the cycle they were applied to saved nothing."""
