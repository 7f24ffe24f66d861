"""The push trigger's decisions (issue 17, point 1): whether a caller knows the token, which
monitor a webhook's body names, and what waits to be polled. No I/O, no clock: `now` comes in.

A trigger is only a hint to poll now; polling stays the source of truth. Nothing in a body is
trusted beyond one monitor ID, and that only picks what to poll among the watched monitors.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

#: Bytes of a trigger's body read at most; a longer one is refused (413) unread.
MAX_BODY_BYTES = 4096
#: A shorter NOTIFIER_TRIGGER_TOKEN is refused: it stands alone between the Internet and a poll.
MIN_TOKEN_LENGTH = 16
#: The token goes in a URL path: the characters that need no escaping there (RFC 3986
#: "unreserved"), so that the path and the header carry it alike.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")
#: A triggered full cycle (no monitor named) starts no sooner than this after the last cycle
#: began: all-monitors triggers cost at most one full cycle a minute on top of none.
FULL_CYCLE_GAP = timedelta(seconds=60)
#: Segments of NOTIFIER_TRIGGER_MONITOR_FIELD at most, and characters of each.
MAX_FIELD_DEPTH, MAX_FIELD_SEGMENT = 8, 100
#: Monitors waiting for a triggered poll at most; past it, a trigger asks for a full cycle.
MAX_PENDING = 10_000
#: The largest monitor ID taken (Datafold's IDs are positive 64-bit integers).
MAX_MONITOR_ID = 2**63 - 1
#: A monitor's triggered polls start at least this far apart: a flood naming one monitor gets
#: it polled 12 times a minute at most, and leaves the rest of the bucket to the others.
MONITOR_GAP = timedelta(seconds=5)

Outcome = Literal["accepted", "ignored"]


@dataclass(frozen=True)
class TriggerConfig:
    """The trigger's settings, taken from `Settings` once; `token` never shows in a repr."""

    token: str = field(repr=False)
    monitor_field: tuple[str, ...] = ("monitor_id",)
    max_polls_per_minute: int = 60
    #: Whether a regular cycle lists every monitor's runs (poll mode), so that it does what a
    #: trigger waiting since before it began asked for. In feed mode it may not list them.
    cycles_list_every_monitor: bool = True
    #: The least time between two triggered polls of one monitor (`MONITOR_GAP`).
    monitor_gap: timedelta = MONITOR_GAP


def token_matches(given: str | None, token: str) -> bool:
    """Whether `given` is the token, compared in constant time (for tokens of one length)."""
    return hmac.compare_digest((given or "").encode(), token.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def token_problem(token: str) -> str | None:
    """Why `token` cannot be the trigger's token (never quoting it), or None."""
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"is shorter than {MIN_TOKEN_LENGTH} characters; use a long random one "
            "(openssl rand -hex 32)"
        )
    if not TOKEN_PATTERN.fullmatch(token):
        return "may hold only letters, digits and - . _ ~ (it goes in a URL path)"
    return None


def parse_field_path(text: str) -> tuple[str, ...]:
    """NOTIFIER_TRIGGER_MONITOR_FIELD as its segments ("monitor.id" → ("monitor", "id"));
    ValueError, in one line, for an empty segment or a path too deep or too long."""
    segments = tuple(part.strip() for part in text.strip().split("."))
    if not all(segments):
        raise ValueError("give a dotted path into the JSON body, such as monitor_id or monitor.id")
    if len(segments) > MAX_FIELD_DEPTH or any(len(s) > MAX_FIELD_SEGMENT for s in segments):
        raise ValueError(
            f"at most {MAX_FIELD_DEPTH} segments of at most {MAX_FIELD_SEGMENT} characters"
        )
    return segments


def monitor_id_of(value: object) -> int | None:
    """A monitor ID given as a JSON number (whole) or a decimal string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
            return None
        value = int(text)
    if isinstance(value, int) and 0 < value <= MAX_MONITOR_ID:
        return value
    return None


def monitor_in_body(body: bytes, path: tuple[str, ...]) -> int | None:
    """The monitor ID at `path` in a JSON body; None (every watched monitor) when the body is
    not JSON, the field is missing or its value is not a monitor ID."""
    if not body.strip():
        return None
    try:
        value: object = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    for segment in path:
        if not isinstance(value, dict) or segment not in value:
            return None
        value = value[segment]
    return monitor_id_of(value)


def triggered(monitor_id: int | None, watched: Collection[int] | None) -> Outcome:
    """Whether a trigger is taken: every monitor (None), or one watched; `watched` None (not known
    yet, as before a new leader's first cycle) takes it, and the partial cycle filters."""
    if monitor_id is None or watched is None or monitor_id in watched:
        return "accepted"
    return "ignored"


def full_cycle_at(last_start: datetime | None, now: datetime, gap: timedelta) -> datetime:
    """When a triggered full cycle may start: now, or `gap` after the last cycle began."""
    if last_start is None:
        return now
    return max(now, last_start + gap)


@dataclass
class TriggerQueue:
    """What triggers asked for and was not polled yet: monitors each once however often
    triggered, with when it was last asked for; and whether a full cycle was.

    Newest first: a trigger renews its monitor's place, and `take` serves the most recently
    triggered monitors first, so that after a flood a real alert's trigger does not wait behind
    the backlog (polling, the source of truth, still finds what a hint left waiting). A monitor
    taken is not taken again within `gap` (its later triggers wait): one monitor cannot spend
    the bucket. Bounded: past `limit` monitors waiting, a trigger for another one asks for a
    full cycle instead, which polls it too.
    """

    pending: dict[int, datetime] = field(default_factory=dict)
    everything: bool = False
    limit: int = MAX_PENDING
    gap: timedelta = MONITOR_GAP
    #: When each monitor was last taken, for those taken within `gap`.
    taken_at: dict[int, datetime] = field(default_factory=dict)

    def add(self, monitor_id: int | None, now: datetime) -> None:
        """A trigger for `monitor_id`, or for every monitor (None), arriving at `now`."""
        if monitor_id is None or (
            monitor_id not in self.pending and len(self.pending) >= self.limit
        ):
            self.everything = True
        else:
            self.pending.pop(monitor_id, None)  # to the newest end
            self.pending[monitor_id] = now

    def _forget_old(self, now: datetime) -> None:
        # A take "in the future" (the clock stepped back) is forgotten too: a gap never lasts
        # longer than `gap`, whatever the clock does.
        self.taken_at = {
            m: at for m, at in self.taken_at.items() if timedelta(0) <= now - at < self.gap
        }

    def ready(self, now: datetime) -> int:
        """How many waiting monitors `take` would hand out now (those not within their gap)."""
        self._forget_old(now)
        return len(self.pending) - sum(1 for m in self.taken_at if m in self.pending)

    def due_in(self, now: datetime) -> float:
        """Seconds until a waiting monitor may be taken: 0 when one may now (or none waits)."""
        if self.ready(now) or not self.pending:
            return 0.0
        soonest = min(self.taken_at[m] for m in self.pending)
        return max((soonest + self.gap - now).total_seconds(), 0.0)

    def take(self, capacity: int, now: datetime) -> list[int]:
        """Up to `capacity` waiting monitors, newest first, leaving those taken within the gap;
        removed from the queue, the rest wait."""
        self._forget_old(now)
        taken: list[int] = []
        for monitor_id in reversed(self.pending):
            if len(taken) >= capacity:
                break
            if monitor_id not in self.taken_at:
                taken.append(monitor_id)
        for monitor_id in taken:
            del self.pending[monitor_id]
            self.taken_at[monitor_id] = now
        return taken

    def give_back(self, monitor_ids: Collection[int], now: datetime) -> None:
        """Monitors taken but not polled after all: waiting again, with no gap to keep."""
        for monitor_id in monitor_ids:
            self.taken_at.pop(monitor_id, None)
            self.add(monitor_id, now)

    def take_everything(self) -> bool:
        """Whether a full cycle was asked for since the last call."""
        asked, self.everything = self.everything, False
        return asked

    def polled(self, monitor_ids: Collection[int], started_at: datetime) -> list[int]:
        """A cycle that began at `started_at` polled `monitor_ids`: those last triggered before
        it began need no poll of their own any more (removed, and returned); those triggered
        since still get theirs."""
        done = [m for m in monitor_ids if m in self.pending and self.pending[m] < started_at]
        for monitor_id in done:
            del self.pending[monitor_id]
        return done
