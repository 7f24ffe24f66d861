"""The outbox: notifications waiting for destinations, and the message anchors of incidents.

Deterministic functions over the state, with the time passed in. They change the outbox entries
they are given in place (an entry is the state's own record) and return what they gave up on, so
that the cycle logs and counts it. Entries are emptied rather than removed during a cycle, so a
delivery worker's position in the outbox stays valid; `settle` removes them at its end.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from notifier.domain.models import MessageRef, Notification, NotifierState, OutboxEntry


@dataclass(frozen=True)
class Removal:
    """A notification given up on: "expired" (the whole entry, too old), "destination_gone"
    (only for `destination`, no longer configured), or "outbox_full" (the oldest waiting, for
    every destination in `undelivered`)."""

    entry: OutboxEntry
    reason: Literal["expired", "destination_gone", "outbox_full"]
    destination: str | None = None
    undelivered: tuple[str, ...] = ()
    #: The outbox's limit ("outbox_full").
    limit: int | None = None

    @property
    def event(self) -> str:
        """The log event that tells of it."""
        return "notification_expired" if self.reason == "expired" else "notification_dropped"

    def fields(self) -> dict[str, object]:
        """What the log line says: which notification, why, and for whom it stays undelivered."""
        entry, notification = self.entry, self.entry.notification
        about: dict[str, object] = {
            "notification_id": notification.id,
            "monitor_id": notification.event.monitor_id,
            "run_id": notification.event.run_id,
        }
        if self.reason == "destination_gone":
            reason = "its destination is no longer configured"
            return {"reason": reason, **about, "destination": self.destination}
        if self.reason == "outbox_full":
            about = {"reason": "outbox_full", "limit": self.limit, **about}
            undelivered: object = list(self.undelivered)
        else:
            undelivered = entry.pending
        fields = {**about, "undelivered_to": undelivered, "attempts": entry.attempts}
        if self.reason == "expired":
            fields["last_error"] = entry.last_error
        return fields


def unqueued(
    outbox: Iterable[OutboxEntry], notifications: Iterable[Notification]
) -> list[Notification]:
    """The notifications not in the outbox yet (a run detected again before it was delivered)."""
    queued = {entry.notification.id for entry in outbox}
    return [n for n in notifications if n.id not in queued]


def admit(outbox: list[OutboxEntry], notification: Notification, pending: list[str]) -> None:
    """Queue a notification for its destinations, behind everything already waiting."""
    outbox.append(OutboxEntry(notification=notification, pending=pending))


def expire(
    outbox: Iterable[OutboxEntry],
    now: datetime,
    *,
    expiry: timedelta,
    destinations: Collection[str],
) -> tuple[list[OutboxEntry], list[Removal]]:
    """The entries still worth keeping, and the removals in outbox order: entries detected more
    than `expiry` before `now`, and destinations no longer among `destinations`."""
    kept: list[OutboxEntry] = []
    removals: list[Removal] = []
    for entry in outbox:
        if now - entry.notification.detected_at > expiry:
            removals.append(Removal(entry, "expired"))
            continue
        for name in [p for p in entry.pending if p not in destinations]:
            removals.append(Removal(entry, "destination_gone", destination=name))
            entry.pending.remove(name)
        if entry.pending:
            kept.append(entry)
    return kept, removals


def trim(outbox: Iterable[OutboxEntry], limit: int) -> list[Removal]:
    """Keep at most `limit` notifications waiting: the oldest are emptied first."""
    waiting = [entry for entry in outbox if entry.pending]
    removals = []
    for entry in waiting[: max(0, len(waiting) - limit)]:
        removals.append(
            Removal(entry, "outbox_full", undelivered=tuple(entry.pending), limit=limit)
        )
        entry.pending.clear()
    return removals


def settle(outbox: Iterable[OutboxEntry]) -> list[OutboxEntry]:
    """The outbox without the entries every destination is done with (the cycle's end)."""
    return [entry for entry in outbox if entry.pending]


def anchor(state: NotifierState, name: str, notification: Notification) -> MessageRef | None:
    """Where the first message of the notification's incident went in `name`, if known."""
    if notification.incident is None:
        return None
    return state.messages.get(notification.incident.id, {}).get(name)


def record_sent(
    state: NotifierState, entry: OutboxEntry, name: str, posted: MessageRef | None
) -> None:
    """`name` accepted the entry's notification (at `posted`, when it says where): it no longer
    waits for it, and the incident's first message there becomes the incident's anchor."""
    if name in entry.pending:
        entry.pending.remove(name)
    notification = entry.notification
    if (
        posted is not None
        and notification.incident is not None
        and (notification.opens_incident or anchor(state, name, notification) is None)
    ):
        # The incident's first message here anchors its thread and its resolved update.
        state.messages.setdefault(notification.incident.id, {})[name] = posted


def refuse(entry: OutboxEntry, name: str) -> None:
    """`name` refused the entry's notification for good (it would refuse it again): it no
    longer waits for it, and no anchor is kept."""
    if name in entry.pending:
        entry.pending.remove(name)


def record_held(state: NotifierState, name: str, notification: Notification) -> None:
    """`name` (a destination that forgets a firing alert unless told again) accepted the
    notification: its incident's latest firing notification there is kept to post again every
    cycle, and a recovery ends that."""
    incident = notification.incident
    if incident is None:
        return
    if notification.kind != "recovered":
        state.held.setdefault(incident.id, {})[name] = notification
        return
    held = state.held.get(incident.id, {})
    held.pop(name, None)
    if not held:
        state.held.pop(incident.id, None)


def still_held(state: NotifierState, name: str) -> list[Notification]:
    """What `name` must be told again: the latest firing notification it was sent of each
    incident still open, oldest incident first."""
    open_ids = {m.incident.id for m in state.monitors.values() if m.incident is not None}
    held = [by[name] for i, by in state.held.items() if i in open_ids and name in by]
    return sorted(held, key=lambda n: n.incident.opened_at if n.incident else n.detected_at)


def prune_anchors(state: NotifierState) -> None:
    """Anchors (and held alerts) are kept while their incident is open or something about it
    waits."""
    live = {m.incident.id for m in state.monitors.values() if m.incident is not None}
    live.update(e.notification.incident.id for e in state.outbox if e.notification.incident)
    for incident_id in [i for i in state.messages if i not in live]:
        del state.messages[incident_id]
    for incident_id in [i for i in state.held if i not in live]:
        del state.held[incident_id]
