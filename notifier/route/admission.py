"""Admission: which destinations get a notification now, or why none does (pure).

A mute covering the monitor silences it first; otherwise the routing rules (quiet hours applied)
choose its destinations among those configured. The cycle logs and counts each outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from notifier.domain.models import Mute, Notification
from notifier.route.rules import RouteDecision

#: A routing decision for one notification at one time (rules, quiet hours).
Router = Callable[[Notification, datetime], RouteDecision]

Outcome = Literal["queued", "muted", "quiet", "unrouted"]

UNROUTED = "no route and no default route sends it anywhere"


@dataclass(frozen=True)
class Admission:
    """The verdict on one notification. "queued": wait in the outbox for `pending` (`quiet`
    names routes that withheld other destinations); "muted": `mute` covers it; "quiet": every
    matching route is in quiet hours (`quiet`); "unrouted": nothing sends it anywhere."""

    outcome: Outcome
    pending: list[str] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)
    mute: Mute | None = None

    def told(self) -> tuple[str, dict[str, object]] | None:
        """The log event and fields that tell of this verdict; None for a plain "queued"."""
        if self.mute is not None:
            mute = self.mute
            until = mute.until.isoformat()
            fields: dict[str, object] = {
                "mute": mute.id,
                "muted": mute.target,
                "until": until,
                "reason": mute.reason,
            }
            return "notification_muted", fields
        if self.outcome == "unrouted":
            return "notification_unrouted", {"reason": UNROUTED}
        if not self.quiet:
            return None
        if self.outcome == "quiet":
            return "notification_quiet", {"routes": self.quiet}
        return "notification_quiet", {"routes": self.quiet, "still_sent_to": self.pending}


def covering_mute(notification: Notification, mutes: Iterable[Mute], now: datetime) -> Mute | None:
    """The first mute that silences the notification's monitor at `now`, if any."""
    return next((m for m in mutes if m.covers(notification.monitor, now)), None)


def admit(
    notification: Notification,
    *,
    mutes: Iterable[Mute],
    route: Router,
    destinations: Collection[str],
    now: datetime,
) -> Admission:
    """Mutes first (a muted notification is not routed at all), then the route's destinations
    that are configured; the route is asked only when no mute covers the notification."""
    mute = covering_mute(notification, mutes, now)
    if mute is not None:
        return Admission("muted", mute=mute)
    decision = route(notification, now)
    pending = [name for name in decision.to if name in destinations]
    if pending:
        return Admission("queued", pending=pending, quiet=decision.quiet)
    if decision.quiet:
        return Admission("quiet", quiet=decision.quiet)
    return Admission("unrouted")
