"""Datafold's answers read from their bytes: the page shapes, schema problems in one line, listed
runs read one by one, and the `detail` of an error answer.

Pure given the bytes (no I/O, no clock): the aiohttp client (`notifier.fetch.datafold`) fetches,
and this module says what an answer means or which `DatafoldError` it is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from notifier.domain.models import MonitorRun, MonitorSummary
from notifier.domain.text import one_line
from notifier.domain.values import retry_after_seconds
from notifier.fetch.source import (
    ApiKeyRefused,
    ApiUnavailable,
    MalformedAnswer,
    NotFound,
    RequestRejected,
    Subject,
)

#: Answers worth another attempt: rate limiting and the server or a proxy being briefly unwell.
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Messages built from an answer (schema problems, error details) are cut to this many characters.
MESSAGE_MAX = 200
#: Unreadable runs already reported, remembered so each is logged once, not every cycle.
UNREADABLE_MEMORY = 10_000
#: A run ID written as text that can still be read: ASCII digits, at most 29 of them.
_DIGITS = re.compile(r"-?[0-9]{1,29}")

_Model = TypeVar("_Model", bound=BaseModel)


class Transient(Exception):
    """One attempt failed in a way worth retrying; the client retries it, and it never leaves
    `notifier.fetch`."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Paged(BaseModel):
    """What every listing page of the API carries besides its items."""

    model_config = ConfigDict(extra="ignore")

    count: int
    page: int
    page_size: int
    total_pages: int


class RunPage(_Paged):
    """One page of `GET /api/v1/monitors/{id}/runs`, its runs still raw: each is read on its own,
    so one run that cannot be understood does not cost the others."""

    runs: list[Any]


class MonitorPage(_Paged):
    """One page of `GET /api/v1/monitors`."""

    monitors: list[MonitorSummary]


class _ReadRunPage(_Paged):
    """A runs page whose every run reads well: parsed and validated from its bytes in one pass."""

    runs: list[MonitorRun]


@dataclass(frozen=True)
class RunPageRead:
    """One runs page as read: its paging, the runs that read well, the unreadable ones (why)."""

    total_pages: int
    listed: int
    runs: list[MonitorRun]
    unreadable: list[tuple[Any, UnreadableRun]]


_RUNS: TypeAdapter[list[MonitorRun]] = TypeAdapter(list[MonitorRun])


def decode_json(subject: Subject, body: bytes) -> Any:
    """The JSON of a 2xx answer, or `MalformedAnswer`."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedAnswer(f"{subject.label}: answer is not JSON") from None


def interpret(
    subject: Subject,
    status: int,
    body: bytes,
    retry_after: str | None,
    now: datetime,
    *,
    host_label: str,
    max_retry_after: float,
    redact: Callable[[str], str],
) -> Any:
    """An HTTP answer (its `Retry-After` read at `now`) as decoded JSON, or the matching error:
    a `DatafoldError`, or `Transient` when another attempt may succeed. `redact` cleans text
    the server sent before it enters a message."""
    if 200 <= status < 300:
        return decode_json(subject, body)
    if status in (401, 403):
        raise ApiKeyRefused(status)
    if status == 404 and subject.monitor_id is not None:
        raise NotFound(subject.monitor_id, subject.run_id)
    if status in RETRYABLE_STATUSES:
        wait = retry_after_seconds(retry_after, now)
        if wait is not None and wait > max_retry_after:
            # Waiting that long would hold up the cycle: this monitor fails now instead.
            raise ApiUnavailable(
                f"{subject.label}: Datafold at {host_label} asked to wait {wait:.3g} s "
                f"(HTTP {status}, Retry-After), more than {max_retry_after:g} s "
                "(NOTIFIER_MAX_RETRY_AFTER_SECONDS)"
            )
        raise Transient(f"HTTP {status}", wait)
    if status >= 500:
        raise ApiUnavailable(f"{subject.label}: Datafold at {host_label} failed (HTTP {status})")
    if 300 <= status < 400:
        raise RequestRejected(
            f"{subject.label}: redirected (HTTP {status}); check the Datafold host"
        )
    detail = error_detail(body)
    message = f"{subject.label}: request rejected (HTTP {status})"
    raise RequestRejected(redact(f"{message}: {detail}" if detail else message))


def read_answer(subject: Subject, model: type[_Model], body: bytes) -> _Model:
    """A 2xx answer's `body` as `model`, or `MalformedAnswer` (not JSON, or the first schema
    problem). Parsed and validated in one pass (pydantic's Rust parser); only a body that does
    not read well that way is read again as before, so that its error says what is wrong."""
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return validated(subject, model, decode_json(subject, body))


def read_run_page(subject: Subject, monitor_id: int, body: bytes, page_size: int) -> RunPageRead:
    """One runs page from its bytes (`read_answer`, then `read_page_runs` when some run does not
    read well); `MalformedAnswer` when it holds more than `page_size` runs, so that a listing
    holds at most page_size x max_pages runs, however the server packs its pages."""
    try:
        fast = _ReadRunPage.model_validate_json(body)
    except ValidationError:
        page = validated(subject, RunPage, decode_json(subject, body))
        _within(subject, len(page.runs), page_size)  # before a run object is built
        runs, unreadable = read_page_runs(monitor_id, page.runs)
        return RunPageRead(page.total_pages, len(page.runs), runs, unreadable)
    _within(subject, len(fast.runs), page_size)
    return RunPageRead(fast.total_pages, len(fast.runs), fast.runs, [])


def _within(subject: Subject, listed: int, page_size: int) -> None:
    if listed > page_size:
        raise MalformedAnswer(
            f"{subject.label}: a page holds {listed} runs, more than the "
            f"{page_size} asked for (NOTIFIER_PAGE_SIZE)"
        )


def validated(subject: Subject, model: type[_Model], payload: Any) -> _Model:
    """`payload` as `model`, or `MalformedAnswer` naming the first problem (not the input)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problem = schema_problem(exc)
        raise MalformedAnswer(
            f"{subject.label}: answer does not match the schema: {problem}"
        ) from None


def schema_problem(error: ValidationError) -> str:
    """The first problem pydantic found, as `loc: msg`, without the offending input."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if not problems:
        return "invalid"
    first = problems[0]
    loc = ".".join(str(part) for part in first["loc"])
    text = f"{loc}: {first['msg']}" if loc else first["msg"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return one_line(text, MESSAGE_MAX)


def error_detail(body: bytes) -> str | None:
    """FastAPI's `detail`: a string, or a list of `{loc, msg}` as a 422 carries it."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return one_line(detail, MESSAGE_MAX) if detail.strip() else None
    if not isinstance(detail, list):
        return None
    parts: list[str] = []
    for item in detail:
        if isinstance(item, dict) and "msg" in item:
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return one_line("; ".join(parts), MESSAGE_MAX) if parts else None


@dataclass(frozen=True)
class UnreadableRun:
    """A listed run that did not read well: what could be read of it, and why."""

    run_id: int | None
    foreign: bool
    problem: str

    @property
    def action(self) -> str:
        """What becomes of it, for the log line."""
        if self.run_id is None or self.foreign:
            return "skipped"
        return "tracked as unfinished until it reads well"


class UnreadableMemory:
    """The unreadable runs already reported (the latest `size`), so that each is reported once,
    not every cycle it is listed."""

    def __init__(self, size: int = UNREADABLE_MEMORY) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[int, int | str], None] = OrderedDict()

    def first_time(self, monitor_id: int, item: Any, unreadable: UnreadableRun) -> bool:
        """Whether this run of `monitor_id` (by run_id, else by its raw text) is new here."""
        identity: int | str
        if unreadable.run_id is not None:
            identity = unreadable.run_id
        else:
            text = repr(item)[:4096].encode("utf-8", "replace")
            identity = hashlib.blake2b(text, digest_size=8).hexdigest()
        key = (monitor_id, identity)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def read_page_runs(
    monitor_id: int, raw_runs: list[Any]
) -> tuple[list[MonitorRun], list[tuple[Any, UnreadableRun]]]:
    """The runs of one listing page, each read on its own, and the unreadable ones with why.

    An unreadable run whose run_id can be read (and is this monitor's) is kept without a state,
    so it is tracked as unfinished until it reads well. Runs of another monitor are kept here:
    the caller drops them (and says so).
    """
    try:
        # The common case in one call: every run on the page reads well.
        return list(_RUNS.validate_python(raw_runs)), []
    except ValidationError:
        pass
    runs: list[MonitorRun] = []
    unreadable: list[tuple[Any, UnreadableRun]] = []
    for item in raw_runs:
        try:
            runs.append(MonitorRun.model_validate(item))
        except ValidationError as exc:
            run_id = _int_field(item, "run_id")
            owner = _int_field(item, "monitor_id")
            foreign = owner is not None and owner != monitor_id
            unreadable.append((item, UnreadableRun(run_id, foreign, schema_problem(exc))))
            if run_id is not None and not foreign:
                runs.append(MonitorRun(run_id=run_id, monitor_id=monitor_id))
    return runs, unreadable


def _int_field(item: Any, key: str) -> int | None:
    """A whole-number field of a raw run, if it has a usable one."""
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else None
