"""What an operator asks of the outbox (`outbox retry`, `outbox drop`), and how a cycle applies
it. Pure.

The daemon holds the outbox in memory and saves it after every cycle, so the command line never
edits it: it records a request beside the state, and the next cycle applies it at its start
(`apply_requests`) before anything is delivered. A request is idempotent: applied twice (a cycle
that stopped before its save), it changes nothing more.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notifier.domain.models import OutboxEntry

#: Requests waiting at most: a store refuses more (no daemon is taking them).
REQUESTS_MAX = 100
#: The longest notification ID or destination name a request names.
NAME_MAX = 200


class OutboxRequest(BaseModel):
    """One operator request. "retry": try what waits for `destination` (every destination when
    None) at the next cycle, even if it asked to be left alone (Retry-After). "drop": remove the
    notification `notification_id` from the outbox, for `destination` only when given."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(max_length=64)
    action: Literal["retry", "drop"]
    notification_id: str | None = Field(None, max_length=NAME_MAX)
    destination: str | None = Field(None, max_length=NAME_MAX)
    requested_at: datetime

    @property
    def target(self) -> str:
        """How logs and `outbox list` name what it acts on."""
        where = f"destination {self.destination}" if self.destination else "every destination"
        if self.action == "retry":
            return where
        return f"{self.notification_id} at {where}"


@dataclass(frozen=True)
class Applied:
    """What applying one request did (`event` "outbox_entry_dropped", "outbox_retry_requested")
    or why it was discarded ("outbox_request_discarded"): the cycle logs it."""

    request: OutboxRequest
    event: str
    details: dict[str, object] = field(default_factory=dict)

    def fields(self) -> dict[str, object]:
        """The log line's fields: the request, then what it did."""
        return {"request": self.request.id, "action": self.request.action, **self.details}


@dataclass(frozen=True)
class RequestsApplied:
    """The outbox after the requests, the destinations to try again despite a Retry-After, and
    what each request did, in request order."""

    outbox: list[OutboxEntry]
    resume: frozenset[str]
    applied: list[Applied]


def apply_requests(
    outbox: Iterable[OutboxEntry],
    requests: Iterable[OutboxRequest],
    destinations: Collection[str],
) -> RequestsApplied:
    """Apply `requests` oldest first to `outbox` (its entries are changed in place, as the
    outbox functions do). A request naming a notification not waiting, or a destination it does
    not wait for or that is not configured (`destinations`), is discarded with the reason."""
    kept = list(outbox)
    resume: set[str] = set()
    applied: list[Applied] = []
    for request in sorted(requests, key=lambda r: (r.requested_at, r.id)):
        if request.action == "retry":
            applied.append(_retry(request, kept, destinations, resume))
        else:
            applied.append(_drop(request, kept))
            kept = [entry for entry in kept if entry.pending]
    return RequestsApplied(kept, frozenset(resume), applied)


def _retry(
    request: OutboxRequest,
    outbox: list[OutboxEntry],
    destinations: Collection[str],
    resume: set[str],
) -> Applied:
    name = request.destination
    if name is not None and name not in destinations:
        return _discarded(request, "no such destination is configured")
    names = [name] if name is not None else sorted(destinations)
    resume.update(names)
    waiting = sum(1 for entry in outbox if any(n in entry.pending for n in names))
    return Applied(request, "outbox_retry_requested", {"destinations": names, "waiting": waiting})


def _drop(request: OutboxRequest, outbox: list[OutboxEntry]) -> Applied:
    entry = next((e for e in outbox if e.notification.id == request.notification_id), None)
    if entry is None:
        return _discarded(request, "no such notification is waiting")
    name = request.destination
    if name is not None and name not in entry.pending:
        return _discarded(request, "the notification is not waiting for that destination")
    dropped = [name] if name is not None else list(entry.pending)
    entry.pending[:] = [n for n in entry.pending if n not in dropped]
    event = entry.notification.event
    return Applied(
        request,
        "outbox_entry_dropped",
        {
            "notification_id": entry.notification.id,
            "monitor_id": event.monitor_id,
            "run_id": event.run_id,
            "undelivered_to": dropped,
            "still_waiting_for": list(entry.pending),
            "attempts": entry.attempts,
        },
    )


def _discarded(request: OutboxRequest, reason: str) -> Applied:
    about: dict[str, object] = {"reason": reason}
    if request.notification_id is not None:
        about["notification_id"] = request.notification_id
    if request.destination is not None:
        about["destination"] = request.destination
    return Applied(request, "outbox_request_discarded", about)


def waiting_for(outbox: Iterable[OutboxEntry], destination: str | None) -> list[OutboxEntry]:
    """The entries waiting for `destination` (for any destination when None): what a retry
    will try."""
    return [e for e in outbox if e.pending and (destination is None or destination in e.pending)]
