"""Routing: which named destinations an event goes to, from a TOML routes file or today's settings.

Pure: stdlib, pydantic, RE2 and the URL rules of `settings`. The environment comes in as a
mapping; secrets are `SecretStr` and no repr or error message shows them. The time comes in as
`now`. Monitor names come from Datafold: `NamePattern` matches them in bounded time.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Self, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import re2  # type: ignore[import-untyped]  # no type hints: `_Regexp` types the part used
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from notifier.domain.models import EVENT_KINDS, EventKind, MonitorInfo
from notifier.domain.values import (
    PLAIN_HTTP_REFUSED,
    http_url,
    is_remote_plain_http,
    split_list,
    whsec_problem,
)
from notifier.run.settings import Settings

_ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Destination names end up in logs, the outbox and `check`: keep them one plain word.
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: Slack user (U…, W…) and user-group (S…) IDs, or a channel-wide mention.
_MENTION = re.compile(r"[UWS][A-Z0-9]{2,}|@here|@channel")
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: Day names in `datetime.weekday()` order.
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Longest `name` glob or `name_regex` a routes file may give, in characters.
PATTERN_MAX = 1000
#: Longest monitor name matched against them; a longer one meets no name condition. With
#: `PATTERN_MAX` and `_RE2_MAX_MEM` this bounds the time one match takes, whatever Datafold sends.
NAME_MATCH_MAX = 1000
#: Memory RE2 may use for one pattern (its program and DFA cache): a pattern that needs more is
#: refused at load. The program size also bounds the time per character of a match.
_RE2_MAX_MEM = 1 << 20


class RoutesError(Exception):
    """A routes file problem, as one line naming the file and the key or line; never a secret."""


@dataclass(frozen=True)
class _FileContext:
    """Validation context of a routes file: where `env:NAME` resolves, and the plain-http policy."""

    environ: Mapping[str, str]
    allow_http: bool


def _file_context(info: ValidationInfo) -> _FileContext | None:
    return info.context if isinstance(info.context, _FileContext) else None


def _resolve_env(value: Any, info: ValidationInfo) -> Any:
    """In a routes file a secret is `env:NAME`; built in code (no file context) it is the value."""
    context = _file_context(info)
    if context is None:
        return value
    if not isinstance(value, str) or not value.startswith(_ENV_PREFIX):
        # Not echoed: it may be the secret itself, written where it must not be.
        raise ValueError(
            'write "env:NAME" to read this secret from an environment variable '
            "(secrets are not written in the routes file)"
        )
    name = value.removeprefix(_ENV_PREFIX).strip()
    if not _ENV_NAME.fullmatch(name):
        raise ValueError('after "env:" give an environment variable name (letters, digits, _)')
    if name not in context.environ:
        raise ValueError(f"environment variable {name} is not set")
    resolved = context.environ[name].strip()
    if not resolved:
        raise ValueError(f"environment variable {name} is empty")
    return resolved


def _check_url(url: SecretStr, info: ValidationInfo) -> SecretStr:
    """An http(s) URL as settings require; plain http only to this machine unless allowed."""
    text = http_url(url.get_secret_value())
    context = _file_context(info)
    if context is not None and not context.allow_http and is_remote_plain_http(text):
        raise ValueError(f"{PLAIN_HTTP_REFUSED}: use https:// or set NOTIFIER_ALLOW_HTTP=true")
    return SecretStr(text)


def webhook_destination_name(url: str) -> str:
    """The stable name of a webhook configured by URL alone (no secret in it); `WebhookSink`
    uses it too, so outbox entries stay deliverable."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:8]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackDestination(_Strict):
    """A channel posted to with a bot token (`chat.postMessage`); the only one that can thread."""

    type: Literal["slack"] = "slack"
    channel: str = Field(min_length=1)
    token: SecretStr
    thread: bool = False
    recovery: bool = True
    mentions: list[str] = Field(default_factory=list)
    mention_owner: bool = False
    digest_threshold: int | None = Field(None, ge=1)

    @field_validator("channel", mode="before")
    @classmethod
    def _strip_channel(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("token", mode="before")
    @classmethod
    def _token_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_env(value, info)

    @field_validator("mentions")
    @classmethod
    def _check_mentions(cls, value: list[str]) -> list[str]:
        return _checked_mentions(value)


class SlackWebhookDestination(_Strict):
    """A Slack incoming webhook; its URL is the secret."""

    type: Literal["slack-webhook"] = "slack-webhook"
    url: SecretStr
    recovery: bool = True
    mentions: list[str] = Field(default_factory=list)
    digest_threshold: int | None = Field(None, ge=1)

    @field_validator("url", mode="before")
    @classmethod
    def _url_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_env(value, info)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        return _check_url(value, info)

    @field_validator("mentions")
    @classmethod
    def _check_mentions(cls, value: list[str]) -> list[str]:
        return _checked_mentions(value)


class WebhookDestination(_Strict):
    """A signed webhook. In the file, `secret` is one `env:NAME` (or a list), each of which may
    hold several comma-separated secrets during a rotation."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["webhook"] = "webhook"
    url: SecretStr
    secrets: list[SecretStr] = Field(default_factory=list, alias="secret")
    format: Literal["standard", "alertmanager"] = "standard"
    recovery: bool = True

    @field_validator("url", mode="before")
    @classmethod
    def _url_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_env(value, info)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        return _check_url(value, info)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        if _file_context(info) is None:
            return value
        references = value if isinstance(value, list) else [value]
        return [part for ref in references for part in split_list(_resolve_env(ref, info))]

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, secret in enumerate(value, start=1):
            problem = whsec_problem(secret.get_secret_value())
            if problem is not None:
                which = f"secret number {index}" if len(value) > 1 else "the secret"
                raise ValueError(f"{which} {problem}")
        return value


Destination = Annotated[
    SlackDestination | SlackWebhookDestination | WebhookDestination, Field(discriminator="type")
]
_DESTINATION_TYPES: dict[str, type[BaseModel]] = {
    "slack": SlackDestination,
    "slack-webhook": SlackWebhookDestination,
    "webhook": WebhookDestination,
}


def _checked_mentions(value: list[str]) -> list[str]:
    for mention in value:
        if not _MENTION.fullmatch(mention):
            raise ValueError(
                f"{mention[:40]!r} is not a Slack user (U…/W…) or user-group (S…) ID, "
                "@here or @channel"
            )
    return value


class _Regexp(Protocol):
    """The part of a compiled `re2` pattern used here (google-re2 ships no type hints)."""

    def search(self, text: bytes, /) -> object | None: ...


def _re2_compile(pattern: str) -> _Regexp:
    """`pattern` compiled by RE2 within `_RE2_MAX_MEM`; `ValueError` with RE2's reason if not."""
    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # RE2 would print to stderr; the reason is raised instead
    try:
        return cast(_Regexp, re2.compile(pattern, options))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)[:80]) from None
    except UnicodeError:
        raise ValueError("not valid Unicode text") from None


def _check_length(pattern: str) -> None:
    if len(pattern) > PATTERN_MAX:
        raise ValueError(f"{len(pattern)} characters long: at most {PATTERN_MAX} are accepted")


class NamePattern:
    """A `name` glob or `name_regex`, compiled when the routes load. Names come from Datafold,
    untrusted: a regex runs on RE2 (linear time); a glob on `fnmatch`'s translation, which has no
    nested repetition, so its time grows at most with name length times glob length."""

    __slots__ = ("_folded", "_search", "source")

    def __init__(self, source: str, search: Callable[[str], object], *, folded: bool) -> None:
        self.source = source
        self._search = search
        self._folded = folded

    @classmethod
    def glob(cls, source: str) -> NamePattern:
        """A glob (`*`, `?`, `[abc]`, `[!abc]`) on the whole name, ignoring case (both sides
        casefolded). Raises `ValueError` in words for the routes file."""
        _check_length(source)
        if not source:
            raise ValueError("an empty glob matches no name: give at least one character")
        # `*` becomes an atomic `(?>.*?…)`: nothing to backtrack into (CPython 3.11+).
        return cls(source, re.compile(fnmatch.translate(source.casefold())).match, folded=True)

    @classmethod
    def regex(cls, source: str) -> NamePattern:
        """A regular expression in RE2 syntax, searched in the name; `(?i)` ignores case.
        Raises `ValueError` in words for the routes file."""
        _check_length(source)
        try:
            regexp = _re2_compile(source)
        except ValueError as exc:
            raise ValueError(
                f"not a valid regular expression: {exc} (RE2 syntax: no backreferences or "
                "lookaround; \\z, not \\Z, for the end)"
            ) from None

        def search(text: str) -> object:
            # Bytes: no offsets to decode. A lone surrogate (JSON allows it) becomes "?".
            return regexp.search(text.encode(errors="replace"))

        return cls(source, search, folded=False)

    def matches(self, name: str) -> bool:
        """Whether `name` matches; never when it is longer than `NAME_MATCH_MAX` characters."""
        if len(name) > NAME_MATCH_MAX:
            return False
        return self._search(name.casefold() if self._folded else name) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NamePattern):
            return NotImplemented
        return (self.source, self._folded) == (other.source, other._folded)

    def __hash__(self) -> int:
        return hash((self.source, self._folded))

    def __repr__(self) -> str:
        return f"NamePattern.{'glob' if self._folded else 'regex'}({self.source!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Built by the `Match` validators from the text; dumped back as that text.
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda pattern: pattern.source, return_schema=core_schema.str_schema()
            ),
        )


class Match(_Strict):
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


class QuietHours(_Strict):
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


class Route(_Strict):
    """Where matching events go. First match wins unless `continue` is true; `to = []` drops.
    Inside its quiet hours a matching route still counts as matched but sends nothing."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    name: str | None = Field(None, min_length=1)
    match: Match = Field(default_factory=Match)
    to: list[str]
    continue_: bool = Field(False, alias="continue")
    quiet_hours: QuietHours | None = None

    def label(self, index: int) -> str:
        """How logs and `check` name the route: its name, or its place in the file."""
        return self.name or f"routes[{index}]"


class DefaultRoute(_Strict):
    """Where events that no route matched go (nowhere inside its quiet hours)."""

    to: list[str]
    quiet_hours: QuietHours | None = None


class Routes(_Strict):
    """The validated routing table: named destinations, ordered routes and an optional default."""

    destinations: dict[str, Destination] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default: DefaultRoute | None = None

    @model_validator(mode="after")
    def _check_names(self, info: ValidationInfo) -> Self:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for name in self.destinations:
            if not _DESTINATION_NAME.fullmatch(name):
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
        if _file_context(info) is not None and not problems:
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
            if isinstance(destination, SlackDestination):
                values.append(destination.token)
            elif isinstance(destination, WebhookDestination):
                values += [destination.url, *destination.secrets]
            else:
                values.append(destination.url)
        return [value.get_secret_value() for value in values]


def load_routes(path: Path, environ: Mapping[str, str], *, allow_http: bool = False) -> Routes:
    """Read and validate a routes file, resolving `env:NAME` secrets from `environ`.

    Raises `RoutesError`: one line naming the file and the line/column or key path.
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise RoutesError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise RoutesError(
            f"{path}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        return Routes.model_validate(data, context=_FileContext(environ, allow_http))
    except ValidationError as exc:
        raise RoutesError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Each problem as `key.path: message`, all on one line; inputs (maybe secrets) never shown."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        model = _model_at(loc[:-1])
        # The union tag pydantic adds after the destination name is no key in the file.
        if len(loc) >= 3 and loc[0] == "destinations" and loc[2] in _DESTINATION_TYPES:
            del loc[2]
        message = str(error["msg"]).removeprefix("Value error, ")
        context = error.get("ctx") or {}
        match error["type"]:
            case "missing" if model is QuietHours and loc[-1] == "timezone":
                message = (
                    "field required: an IANA time zone such as 'Europe/Berlin' "
                    "(there is no implicit UTC; write 'UTC' for that)"
                )
            case "missing":
                message = "field required"
            case "extra_forbidden":
                message = _unknown_key(loc[-1], model)
            case "union_tag_invalid":
                loc.append("type")
                message = f"unknown type {str(context.get('tag'))[:40]!r} (use {_TYPE_CHOICES})"
            case "union_tag_not_found":
                loc.append("type")
                message = f"field required ({_TYPE_CHOICES})"
        path = _path(loc)
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


_TYPE_CHOICES = ", ".join(_DESTINATION_TYPES)


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose keys live at `loc` (as pydantic gives it), to suggest a mistyped key."""
    match list(loc):
        case []:
            return Routes
        case ["routes", int()]:
            return Route
        case ["routes", int(), "match"]:
            return Match
        case ["routes", int(), "quiet_hours"] | ["default", "quiet_hours"]:
            return QuietHours
        case ["default"]:
            return DefaultRoute
        case ["destinations", str(), str(tag)]:
            return _DESTINATION_TYPES.get(tag)
    return None


def _unknown_key(key: Any, model: type[BaseModel] | None) -> str:
    message = "unknown key"
    if model is None:
        return message
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"{message} (did you mean {close[0]}?)"
    return f"{message} (use {', '.join(allowed)})"


def _path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _DESTINATION_NAME.fullmatch(str(part)):
            path += f".{part}" if path else str(part)
        else:
            path += f"[{str(part)[:40]!r}]"
    return path


def routes_from_settings(settings: Settings) -> Routes:
    """Today's environment variables as one default route to every destination they configure,
    named as today's sinks are, so outbox entries stay deliverable."""
    destinations: dict[str, SlackDestination | SlackWebhookDestination | WebhookDestination] = {}
    if settings.slack_bot_token is not None and settings.slack_channel:
        destinations["slack"] = SlackDestination(
            channel=settings.slack_channel, token=settings.slack_bot_token
        )
    if settings.slack_webhook_url is not None:
        destinations["slack-webhook"] = SlackWebhookDestination(url=settings.slack_webhook_url)
    for url in settings.webhook_urls:
        name = webhook_destination_name(url.get_secret_value())
        destinations[name] = WebhookDestination(url=url, secrets=list(settings.webhook_secrets))
    default = DefaultRoute(to=list(destinations)) if destinations else None
    return Routes(destinations=destinations, default=default)


@dataclass(frozen=True)
class RouteDecision:
    """Where one event goes (`to`), and which matched routes held it back by quiet hours."""

    to: list[str]
    quiet: list[str]


def route_event(routes: Routes, monitor: MonitorInfo, kind: str, now: datetime) -> RouteDecision:
    """Destinations for one event at the aware instant `now`, quiet hours applied.

    The first matching route wins unless it says `continue`; a route inside its quiet hours still
    counts as matched, but its destinations get the event only through another matched route that
    is not quiet. `quiet` names (by `Route.label`) each quiet route that withheld a destination.
    The default applies only when no route matched. A `recovered` event skips destinations with
    `recovery = false`.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC), not a naive one")
    return _route_event(routes, monitor, kind, now)


def _route_event(
    routes: Routes, monitor: MonitorInfo, kind: str, now: datetime | None
) -> RouteDecision:
    """`route_event`; with `now=None` quiet hours never apply."""
    matched: list[tuple[str, list[str], QuietHours | None]] = []
    for index, route in enumerate(routes.routes):
        if route.match.matches(monitor, kind):
            matched.append((route.label(index), route.to, route.quiet_hours))
            if not route.continue_:
                break
    if not matched and routes.default is not None:
        matched.append(("default", routes.default.to, routes.default.quiet_hours))

    def wanted(name: str) -> bool:
        return kind != "recovered" or routes.destinations[name].recovery

    names: dict[str, None] = {}
    held: list[tuple[str, list[str]]] = []
    for label, to, quiet_hours in matched:
        targets = [name for name in to if wanted(name)]
        if now is not None and quiet_hours is not None and quiet_hours.covers(now):
            held.append((label, targets))
        else:
            names.update(dict.fromkeys(targets))
    quiet = [label for label, targets in held if any(name not in names for name in targets)]
    return RouteDecision(to=list(names), quiet=quiet)


def destinations_for(routes: Routes, monitor: MonitorInfo, kind: str) -> list[str]:
    """Destination names for one event, de-duplicated in route order, ignoring quiet hours
    (what a route sends when it is not quiet); `route_event` applies them."""
    return _route_event(routes, monitor, kind, None).to


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
