"""Routing: which named destinations an event goes to, and when a route keeps quiet.

Pure: stdlib, pydantic and `notifier.domain`. The time comes in as `now`; monitor names come from
Datafold and are matched in bounded time (`notifier.route.patterns`). The routes file is read by
`notifier.route.routes_file`; the destination kinds live in `notifier.route.destinations`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier.domain.models import EVENT_KINDS, EventKind, MonitorInfo
from notifier.route.destinations import (
    DESTINATION_NAME,
    Destination,
    StrictModel,
    file_context,
)
from notifier.route.destinations.fields import NoticeSwitches
from notifier.route.patterns import NamePattern

_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: Day names in `datetime.weekday()` order.
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Match(StrictModel):
    """Conditions on a monitor and the event kind: every given one must hold; within a list, any
    value. Comparisons ignore case, except `name_regex` (write `(?i)` for that)."""

    monitor_ids: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)
    tags: list[str] | None = Field(None, min_length=1)
    all_tags: list[str] | None = Field(None, min_length=1)
    types: list[str] | None = Field(None, min_length=1)
    owners: list[str] | None = Field(None, min_length=1)
    name: NamePattern | None = None
    name_regex: NamePattern | None = None
    kinds: list[EventKind] | None = Field(None, min_length=1)

    @field_validator("name", mode="before")
    @classmethod
    def _compile_glob(cls, value: Any) -> Any:
        return NamePattern.glob(value) if isinstance(value, str) else value

    @field_validator("name_regex", mode="before")
    @classmethod
    def _compile_regex(cls, value: Any) -> Any:
        return NamePattern.regex(value) if isinstance(value, str) else value

    def matches(self, monitor: MonitorInfo, kind: str) -> bool:
        """Whether an event of `kind` about `monitor` meets every given condition."""
        tags = _folded(monitor.tags)
        return (
            (self.monitor_ids is None or monitor.id in self.monitor_ids)
            and (self.tags is None or not tags.isdisjoint(_folded(self.tags)))
            and (self.all_tags is None or _folded(self.all_tags) <= tags)
            and (self.types is None or _folded_in(monitor.monitor_type, self.types))
            and (self.owners is None or _folded_in(monitor.owner, self.owners))
            and self._name_matches(monitor.name)
            and (self.kinds is None or kind in self.kinds)
        )

    def _name_matches(self, name: str | None) -> bool:
        """A name condition never matches a monitor without a name (or with a too long one)."""
        if self.name is None and self.name_regex is None:
            return True
        if name is None:
            return False
        return (self.name is None or self.name.matches(name)) and (
            self.name_regex is None or self.name_regex.matches(name)
        )


def _folded(values: Iterable[str]) -> set[str]:
    return {value.strip().casefold() for value in values}


def _folded_in(value: str | None, values: Iterable[str]) -> bool:
    return value is not None and value.strip().casefold() in _folded(values)


def _checked_day(value: str) -> str:
    day = value.strip().casefold()
    if day not in _DAYS:
        raise ValueError(f"{value[:40]!r} is not a day (use {', '.join(_DAYS)})")
    return day


class QuietHours(StrictModel):
    """A daily window of local wall-clock time in `timezone` during which a route sends nothing.

    A window may cross midnight (start > end); `days` then names the day it starts on.
    """

    start: time
    end: time
    timezone: str
    days: list[Annotated[str, AfterValidator(_checked_day)]] | None = Field(None, min_length=1)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        # A TOML local time (22:00:00, unquoted) is accepted too, if it is a whole minute.
        if (
            isinstance(value, time)
            and value.tzinfo is None
            and value == value.replace(second=0, microsecond=0)
        ):
            return value
        found = _HH_MM.fullmatch(value.strip()) if isinstance(value, str) else None
        if found is None:
            shown = f"{value[:40]!r} is " if isinstance(value, str) else ""
            raise ValueError(f'{shown}not a time of day: write "HH:MM", 00:00 to 23:59')
        return time(int(found[1]), int(found[2]))

    @field_validator("timezone", mode="before")
    @classmethod
    def _check_zone(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        key = value.strip()
        try:
            ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            hint = "an IANA name such as 'Europe/Berlin', 'America/New_York' or 'UTC'"
            if not available_timezones():
                hint = "no time zone database was found: install the tzdata package"
            raise ValueError(f"unknown time zone {value[:60]!r} ({hint})") from None
        return key

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start:%H:%M}: a window needs a length "
                "(to cross midnight, give a start later than the end)"
            )
        return self

    def covers(self, now: datetime) -> bool:
        """Whether the aware instant `now` falls inside the window, on the local wall clock, so
        the window follows daylight-saving shifts."""
        local = now.astimezone(ZoneInfo(self.timezone))
        clock = local.time()  # naive wall-clock time; `fold` plays no part in comparing
        days = _DAYS if self.days is None else self.days
        if self.start < self.end:
            return self.start <= clock < self.end and _DAYS[local.weekday()] in days
        if clock >= self.start:
            return _DAYS[local.weekday()] in days
        started = (local - timedelta(days=1)).weekday()
        return clock < self.end and _DAYS[started] in days

    def describe(self) -> str:
        """The window in one phrase for `check`, e.g. `22:00-07:00 Europe/Berlin mon-fri`."""
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone} {_day_ranges(self.days)}"


def _day_ranges(days: Sequence[str] | None) -> str:
    """`mon-fri, sun` for a set of days; `every day` for all (or none given)."""
    indexes = sorted({_DAYS.index(day) for day in days or _DAYS})
    if len(indexes) == len(_DAYS):
        return "every day"
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DAYS[run[0]]}-{_DAYS[run[-1]]}")
        else:
            parts += [_DAYS[index] for index in run]
    return ", ".join(parts)


class Route(NoticeSwitches):
    """Where matching events go. First match wins unless `continue` is true; `to = []` drops.
    Inside its quiet hours a matching route still counts as matched but sends nothing; an event
    its `notify`/`min_consecutive_failures` hold back counts as matched too."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    name: str | None = Field(None, min_length=1)
    match: Match = Field(default_factory=Match)
    to: list[str]
    continue_: bool = Field(False, alias="continue")
    quiet_hours: QuietHours | None = None

    def label(self, index: int) -> str:
        """How logs and `check` name the route: its name, or its place in the file."""
        return self.name or f"routes[{index}]"


class DefaultRoute(NoticeSwitches):
    """Where events that no route matched go (nowhere inside its quiet hours)."""

    to: list[str]
    quiet_hours: QuietHours | None = None


class Routes(StrictModel):
    """The validated routing table: named destinations, ordered routes and an optional default."""

    destinations: dict[str, Destination] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default: DefaultRoute | None = None

    @model_validator(mode="after")
    def _check_names(self, info: ValidationInfo) -> Self:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for name in self.destinations:
            if not DESTINATION_NAME.fullmatch(name):
                problems.append(
                    f"destinations[{name[:40]!r}]: a destination name uses only letters, digits, "
                    "- and _"
                )
            elif name.casefold() in seen:
                problems.append(
                    f"destinations.{name}: duplicate of destination {seen[name.casefold()]} "
                    "(names differing only in case would be confused)"
                )
            seen.setdefault(name.casefold(), name)
        known = ", ".join(self.destinations) or "none is defined"
        targets = [(f"routes[{i}].to", route.to) for i, route in enumerate(self.routes)]
        if self.default is not None:
            targets.append(("default.to", self.default.to))
        for where, names in targets:
            for index, target in enumerate(names):
                if target not in self.destinations:
                    problems.append(
                        f"{where}[{index}]: unknown destination {target[:40]!r} (known: {known})"
                    )
        route_names: dict[str, int] = {}
        for index, route in enumerate(self.routes):
            if route.name is not None and route.name in route_names:
                problems.append(
                    f"routes[{index}].name: {route.name[:40]!r} is already the name of "
                    f"routes[{route_names[route.name]}]"
                )
            if route.name is not None:
                route_names.setdefault(route.name, index)
        if file_context(info) is not None and not problems:
            if not self.destinations:
                problems.append("no destinations: define at least one [destinations.NAME] table")
            elif not self.routes and self.default is None:
                problems.append("nothing is routed: add [[routes]] or a [default] table")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secrets(self) -> list[str]:
        """Every secret value of the destinations, so the log pipeline can redact it."""
        values: list[SecretStr] = []
        for destination in self.destinations.values():
            values += destination.secret_values()
        return [value.get_secret_value() for value in values]


@dataclass(frozen=True)
class RouteDecision:
    """Where one event goes (`to`), and which matched routes held it back by quiet hours."""

    to: list[str]
    quiet: list[str]


def route_event(
    routes: Routes, monitor: MonitorInfo, kind: str, now: datetime, *, failures: int = 1
) -> RouteDecision:
    """Destinations for one event at the aware instant `now`, quiet hours applied; `failures`
    is its incident's count of failing runs so far (for `notify`, `min_consecutive_failures`).

    The first matching route wins unless it says `continue`; a route inside its quiet hours still
    counts as matched, but its destinations get the event only through another matched route that
    is not quiet. `quiet` names (by `Route.label`) each quiet route that withheld a destination.
    The default applies only when no route matched. A `recovered` event skips destinations with
    `recovery = false`, and the route's and each destination's switches apply.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC), not a naive one")
    return _route_event(routes, monitor, kind, now, failures)


def _route_event(
    routes: Routes, monitor: MonitorInfo, kind: str, now: datetime | None, failures: int | None
) -> RouteDecision:
    """`route_event`; with `now=None` quiet hours never apply, with `failures=None` no switch."""
    matched: list[tuple[str, Route | DefaultRoute]] = []
    for index, route in enumerate(routes.routes):
        if route.match.matches(monitor, kind):
            matched.append((route.label(index), route))
            if not route.continue_:
                break
    if not matched and routes.default is not None:
        matched.append(("default", routes.default))

    def wanted(name: str) -> bool:
        destination = routes.destinations[name]
        return (kind != "recovered" or destination.recovery) and destination.lets_through(
            kind, failures
        )

    names: dict[str, None] = {}
    held: list[tuple[str, list[str]]] = []
    for label, chosen in matched:
        quiet_hours = chosen.quiet_hours
        if not chosen.lets_through(kind, failures):
            continue
        targets = [name for name in chosen.to if wanted(name)]
        if now is not None and quiet_hours is not None and quiet_hours.covers(now):
            held.append((label, targets))
        else:
            names.update(dict.fromkeys(targets))
    quiet = [label for label, targets in held if any(name not in names for name in targets)]
    return RouteDecision(to=list(names), quiet=quiet)


def destinations_for(routes: Routes, monitor: MonitorInfo, kind: str) -> list[str]:
    """Destination names for one event, de-duplicated in route order, ignoring quiet hours
    (what a route sends when it is not quiet) and the `notify`/`min_consecutive_failures`
    switches (where it goes once they let it through); `route_event` applies them."""
    return _route_event(routes, monitor, kind, None, None).to


def explain(routes: Routes, monitor: MonitorInfo) -> dict[str, list[str]]:
    """For `check`: each event kind mapped to where an event of that kind about `monitor` goes
    outside quiet hours (`quiet_hours_summary` lists those)."""
    return {kind: destinations_for(routes, monitor, kind) for kind in EVENT_KINDS}


def quiet_hours_summary(routes: Routes) -> list[str]:
    """For `check`: one line per route with quiet hours, in file order, the default last."""
    lines = [
        f"route {route.name!r}: " if route.name else f"{route.label(index)}: "
        for index, route in enumerate(routes.routes)
    ]
    windows = [route.quiet_hours for route in routes.routes]
    if routes.default is not None:
        lines.append("default route: ")
        windows.append(routes.default.quiet_hours)
    return [
        f"{line}quiet {window.describe()}"
        for line, window in zip(lines, windows, strict=True)
        if window is not None
    ]
