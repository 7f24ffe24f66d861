"""The domain: monitor runs as Datafold lists them, and the notifications made of them.

Pure: stdlib and pydantic only. Every adapter and the core speak these types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

#: States of a run that has not finished yet. Datafold's list is open: `queued` came later.
IN_PROGRESS_STATES: frozenset[str] = frozenset({"created", "queued", "checking", "learning"})
#: Finished states that are not worth a notification by default.
QUIET_STATES: frozenset[str] = frozenset({"ok", "skipped", "cancelled"})
#: Finished states that are, by default (`NOTIFIER_NOTIFY_STATES`).
DEFAULT_NOTIFY_STATES: frozenset[str] = frozenset({"alert", "error"})
KNOWN_STATES: frozenset[str] = IN_PROGRESS_STATES | QUIET_STATES | DEFAULT_NOTIFY_STATES

#: Everything kept and sent is bounded, whatever Datafold answers: texts are cut to these
#: lengths when read (an error message keeps its start and says what was cut), and a monitor
#: keeps at most `TAGS_MAX` tags.
STATE_MAX = 64
NAME_MAX = 300
TAG_MAX = 200
TAGS_MAX = 100
OWNER_MAX = 320
ERROR_MAX = 12_000
WARNINGS_MAX = 20
WARNING_MAX = 500


def cut_text(value: str, limit: int) -> str:
    """`value` if it fits, else its start and a note of how much was cut, `limit` chars in all."""
    if len(value) <= limit:
        return value
    note = ""
    for _ in range(3):  # the note's length depends on the count it states: settle it
        kept = max(0, limit - len(note))
        note = f" … [{len(value) - kept} more characters cut]"
    kept = max(0, limit - len(note))
    return value[:kept] + note


def _cut_to(limit: int) -> BeforeValidator:
    """A field validator: a string is cut to `limit`; other values are validated as usual."""
    return BeforeValidator(
        lambda value: cut_text(value, limit) if isinstance(value, str) else value
    )


def _texts(most: int, limit: int) -> BeforeValidator:
    """A field validator for a list of texts: null is empty, at most `most` items, each cut."""

    def bound(value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            return [cut_text(v, limit) if isinstance(v, str) else v for v in value[:most]]
        return value

    return BeforeValidator(bound)


def is_in_progress(state: str | None) -> bool:
    """A run with no state yet counts as just created."""
    return state is None or state in IN_PROGRESS_STATES


def as_utc(value: datetime) -> datetime:
    """Datafold stamps are UTC; a stamp without an offset is read as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tolerant_datetime(value: Any) -> datetime | None:
    """A timestamp that does not parse counts as unknown instead of failing the whole answer.

    So does one whose UTC equivalent falls outside years 1 to 9999 (OverflowError).
    """
    try:
        if isinstance(value, datetime):
            return as_utc(value)
        if isinstance(value, str):
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        return None
    return None


class _Lean(BaseModel):
    """A model made by the ten thousand (one per monitor). pydantic gives each instance a set of
    the fields it was given (`model_fields_set`: 728 bytes once a model has five fields), which
    nothing here reads; every instance shares one set of all its fields instead, which setting
    a field leaves as it is (pydantic only ever adds names to it, and copies it to copy one)."""

    _all_fields: ClassVar[set[str]] = set()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._all_fields = set(cls.model_fields)

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "__pydantic_fields_set__", self._all_fields)


class MonitorRun(BaseModel):
    """One run of a monitor as `GET /api/v1/monitors/{id}/runs` lists it.

    Only `run_id` and `monitor_id` are required by the published schema; state is an open string so
    that a state we do not know (such as a future one) never crashes anything.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: int
    monitor_id: int
    #: A state longer than this is no state Datafold has: the run is unreadable.
    state: str | None = Field(None, max_length=STATE_MAX)
    started_at: datetime | None = None
    diff_id: int | None = None

    @field_validator("started_at", mode="before")
    @classmethod
    def _parse_started_at(cls, value: Any) -> datetime | None:
        return _tolerant_datetime(value)


class RunDetail(MonitorRun):
    """`GET /api/v1/monitors/{id}/runs/{run_id}`: a run with its error message."""

    error: Annotated[str | None, _cut_to(ERROR_MAX)] = None
    warnings: Annotated[list[str], _texts(WARNINGS_MAX, WARNING_MAX)] = Field(default_factory=list)


class MonitorInfo(_Lean):
    """What a notification says about a monitor (`GET /api/v1/monitors/{id}`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    name: Annotated[str | None, _cut_to(NAME_MAX)] = None
    monitor_type: Annotated[str | None, _cut_to(STATE_MAX)] = None
    tags: Annotated[list[str], _texts(TAGS_MAX, TAG_MAX)] = Field(default_factory=list)
    owner: Annotated[str | None, _cut_to(OWNER_MAX)] = None
    enabled: bool | None = None

    @property
    def title(self) -> str:
        """The name people know the monitor by, or its ID when it has none."""
        return self.name or f"Monitor {self.id}"


class MonitorSummary(MonitorInfo):
    """A monitor as `GET /api/v1/monitors` lists it: with its latest run's time and state.

    The pair (last_run, state) is the change feed: while it stays the same, nothing new started
    or finished at the head of the monitor's runs.
    """

    last_run: datetime | None = None
    state: str | None = None

    @field_validator("last_run", mode="before")
    @classmethod
    def _parse_last_run(cls, value: Any) -> datetime | None:
        return _tolerant_datetime(value)

    @property
    def feed_key(self) -> str:
        """A compact, comparable form of (last_run, state)."""
        stamp = self.last_run.isoformat() if self.last_run else "-"
        return f"{stamp}|{self.state or '-'}"


class RunEvent(BaseModel):
    """Detection's verdict: this run reached a state worth telling someone about."""

    model_config = ConfigDict(frozen=True)

    monitor_id: int
    run_id: int
    state: str
    started_at: datetime | None = None
    diff_id: int | None = None

    @property
    def key(self) -> str:
        """Stable identity of the event; the webhook-id and the outbox key derive from it."""
        return f"{self.monitor_id}-{self.run_id}-{self.state}"


class Links(BaseModel):
    """Where in Datafold a person can look at the run."""

    model_config = ConfigDict(frozen=True)

    monitor: str | None = None
    diff: str | None = None


#: What a notification is about: a run's own state (alert, error), a failing monitor passing
#: again, or an alert still open after the reminder interval. Routes match on these.
EventKind = Literal["alert", "error", "recovered", "reminder"]
EVENT_KINDS: tuple[EventKind, ...] = ("alert", "error", "recovered", "reminder")


class Incident(BaseModel):
    """A monitor failing: from its first notified alert/error run until a newer `ok` run.

    `id` is the ID of the notification that opened it; Slack threads and updates hang off it.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    opened_at: datetime
    #: The run whose notification opened the incident, and the latest failing run notified.
    first: RunEvent
    last: RunEvent
    #: When an alert, error or reminder about it was last queued (reminders count from here).
    last_notified_at: datetime
    reminders: int = 0
    #: Failing runs notified in it so far, the first included (routes' `min_consecutive_failures`).
    failures: int = 1


class Notification(BaseModel):
    """Everything needed to render a message, fixed when the event is detected.

    Kept whole in the outbox, so a retry after a restart needs no further API call. `kind`
    "run": `event` is the alert/error run; "recovered": `event` is the `ok` run and `incident`
    the one it closes; "reminder": `event` is the incident's latest failing run.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["run", "recovered", "reminder"] = "run"
    event: RunEvent
    monitor: MonitorInfo
    error_message: str | None = None
    links: Links = Field(default_factory=Links)
    detected_at: datetime

    #: The incident this notification belongs to, as of its detection (None: none tracked).
    incident: Incident | None = None

    @property
    def event_kind(self) -> str:
        """The kind routes match: the run's state for a run, else "recovered" or "reminder"."""
        return self.event.state if self.kind == "run" else self.kind

    @property
    def opens_incident(self) -> bool:
        """Whether this is the first notification of its incident (its message is the anchor)."""
        return self.incident is not None and self.incident.id == self.id


class MessageRef(BaseModel):
    """Where a destination put a message (Slack: channel ID and `ts`), to update or thread it."""

    model_config = ConfigDict(frozen=True)

    channel: str
    ts: str


class Mute(BaseModel):
    """Silence for one monitor or every monitor with a tag, until a time. Set by `mute`."""

    model_config = ConfigDict(frozen=True)

    id: str
    monitor_id: int | None = None
    tag: str | None = None
    until: datetime
    reason: str | None = None
    created_at: datetime

    def covers(self, monitor: MonitorInfo, now: datetime) -> bool:
        """Whether this mute silences an event about `monitor` at `now` (tags ignore case)."""
        if now >= self.until:
            return False
        if self.monitor_id is not None:
            return monitor.id == self.monitor_id
        if self.tag is not None:
            wanted = self.tag.strip().casefold()
            return any(tag.strip().casefold() == wanted for tag in monitor.tags)
        return False

    @property
    def target(self) -> str:
        """How `check` and logs name what is muted."""
        return f"monitor {self.monitor_id}" if self.monitor_id is not None else f"tag {self.tag}"


class TrackedRun(_Lean):
    """What the notifier remembers of one run: its last state and the states already handled.

    `handled` lists the notify-states this run was notified for, or silenced in (history at the
    first poll); a state in it is never notified again. Only runs that are in progress or have
    handled states are remembered, so the state stays small.
    """

    state: str | None = None
    handled: list[str] = Field(default_factory=list)
    first_seen: datetime
    last_seen: datetime


class MonitorState(_Lean):
    """Per-monitor memory. `watch_since`: runs that started before it are history, not news."""

    watch_since: datetime
    baselined: bool = False
    #: Our clock at the last successful poll: the next listing reaches back from here.
    last_polled_at: datetime | None = None
    #: The change feed's (last_run, state) as of the last successful poll (feed mode).
    feed_key: str | None = None
    runs: dict[int, TrackedRun] = Field(default_factory=dict)
    #: The open incident: set by a notified alert/error run, closed by a newer `ok` run.
    incident: Incident | None = None


class OutboxEntry(BaseModel):
    """A notification some destination has not accepted yet; retried every cycle until expiry."""

    notification: Notification
    pending: list[str]
    attempts: int = 0
    last_error: str | None = None


STATE_VERSION = 1


class NotifierState(BaseModel):
    """The whole state file: monitors' memory, the outbox, message anchors and mutes."""

    version: int = STATE_VERSION
    monitors: dict[int, MonitorState] = Field(default_factory=dict)
    outbox: list[OutboxEntry] = Field(default_factory=list)
    #: Incident ID → destination name → where its first message went (updates, thread replies).
    messages: dict[str, dict[str, MessageRef]] = Field(default_factory=dict)
    #: Written by `mute`/`unmute`; the daemon only reads them.
    mutes: list[Mute] = Field(default_factory=list)
    #: Incident ID → destination name → the latest firing notification it was sent, for the
    #: destinations that forget an alert unless told again (Alertmanager): posted every cycle
    #: while the incident is open.
    held: dict[str, dict[str, Notification]] = Field(default_factory=dict)
