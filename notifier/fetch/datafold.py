"""Datafold API adapter: monitors and their runs over HTTP, with retries and bounded concurrency.

The only module that talks to Datafold. It returns `notifier.domain.models` types and raises
`DatafoldError` subclasses whose messages are one line and never contain the API key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import statistics
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)
from yarl import URL

from notifier import __version__
from notifier.bounded_http import BodyTooLarge, read_capped
from notifier.domain.models import MonitorInfo, MonitorRun, MonitorSummary, RunDetail, as_utc
from notifier.domain.values import retry_after_seconds
from notifier.fetch.source import (
    AnswerTooLarge,
    ApiKeyRefused,
    ApiUnavailable,
    DatafoldError,
    MalformedAnswer,
    NotFound,
    RequestRejected,
    Subject,
)

_log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

#: Answers worth another attempt: rate limiting and the server or a proxy being briefly unwell.
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
_MESSAGE_MAX = 200
#: Of an error answer only the start is read: its `detail` is all that is used.
_ERROR_BODY_MAX = 64 * 1024
_REDACTED = "***"


class _Transient(Exception):
    """One attempt failed in a way worth retrying; never leaves this module."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RunPage(BaseModel):
    """One page of `GET /api/v1/monitors/{id}/runs`, its runs still raw: each is read on its own,
    so one run that cannot be understood does not cost the others."""

    model_config = ConfigDict(extra="ignore")

    count: int
    page: int
    page_size: int
    total_pages: int
    runs: list[Any]


class _MonitorPage(BaseModel):
    """One page of `GET /api/v1/monitors`; only the adapter needs this shape."""

    model_config = ConfigDict(extra="ignore")

    count: int
    page: int
    page_size: int
    total_pages: int
    monitors: list[MonitorSummary]


#: The monitors listing (the change feed) asks for large pages; an account may have thousands.
MONITORS_PAGE_SIZE = 500
MONITORS_MAX_PAGES = 1000

_Model = TypeVar("_Model", bound=BaseModel)
_Page = TypeVar("_Page", RunPage, _MonitorPage)
_RUNS: TypeAdapter[list[MonitorRun]] = TypeAdapter(list[MonitorRun])
#: At most this many monitors in one listing: an account with more is beyond one process anyway.
MONITORS_MAX = 100_000
#: A run ID written as text that can still be read: ASCII digits, at most 29 of them.
_DIGITS = re.compile(r"-?[0-9]{1,29}")
#: The clock probe before the first cycle waits at most this long (and is never retried).
PROBE_TIMEOUT = 5.0
#: How many `Date` headers the clock offset is the median of.
_OFFSET_SAMPLES = 5
#: Unreadable runs already logged, remembered so each is logged once, not every cycle.
_UNREADABLE_MEMORY = 10_000


def _int_field(item: Any, key: str) -> int | None:
    """A whole-number field of a raw run, if it has a usable one."""
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _iso_z(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _one_line(text: str, limit: int = _MESSAGE_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _schema_problem(error: ValidationError) -> str:
    """The first problem pydantic found, as `loc: msg`, without the offending input."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if not problems:
        return "invalid"
    first = problems[0]
    loc = ".".join(str(part) for part in first["loc"])
    text = f"{loc}: {first['msg']}" if loc else first["msg"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return _one_line(text)


def _error_detail(body: bytes) -> str | None:
    """FastAPI's `detail`: a string, or a list of `{loc, msg}` as a 422 carries it."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return _one_line(detail) if detail.strip() else None
    if not isinstance(detail, list):
        return None
    parts: list[str] = []
    for item in detail:
        if isinstance(item, dict) and "msg" in item:
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return _one_line("; ".join(parts)) if parts else None


def _validate(subject: Subject, model: type[_Model], payload: Any) -> _Model:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problem = _schema_problem(exc)
        raise MalformedAnswer(
            f"{subject.label}: answer does not match the schema: {problem}"
        ) from None


def _rate_limiter(per_second: float | None) -> AsyncLimiter | None:
    """A leaky bucket of `per_second` requests; below one a second, one per 1/rate seconds."""
    if not per_second:
        return None
    if per_second < 1:
        return AsyncLimiter(1, 1 / per_second)
    return AsyncLimiter(per_second, 1)


class DatafoldClient:
    """Reads monitors and runs from Datafold's public API over a session the caller owns.

    Retries 429/5xx, timeouts and connection errors; at most `max_concurrency` requests in flight.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        host: str,
        api_key: str,
        *,
        page_size: int = 100,
        max_pages: int = 50,
        max_concurrency: int = 16,
        max_requests_per_second: float | None = None,
        max_attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_retry_after: float = 30.0,
        request_timeout: float = 30.0,
        max_response_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        url = URL(host.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("Datafold host must be an http:// or https:// URL")
        if url.user is not None or url.password is not None:
            raise ValueError("Datafold host must not contain credentials")
        for name, number in (
            ("page_size", page_size),
            ("max_pages", max_pages),
            ("max_concurrency", max_concurrency),
            ("max_attempts", max_attempts),
        ):
            if number < 1:
                raise ValueError(f"{name} must be at least 1")
        self._session = session
        self._base = str(url)
        self._host_label = url.host if url.is_default_port() else f"{url.host}:{url.port}"
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Key {api_key}",
            "Accept": "application/json",
            "User-Agent": f"datafold-notifier/{__version__}",
        }
        self._page_size = page_size
        self._max_pages = max_pages
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # Single-object requests (a run's error message, a monitor's name) get a lane of their
        # own, a quarter of the listings' width, so that a notification never waits behind a
        # whole cycle of listings. In flight at most: max_concurrency + max_concurrency // 4 + 1.
        self._detail_semaphore = asyncio.Semaphore(max_concurrency // 4 + 1)
        # An optional cap on the request rate, for accounts with tight limits (leaky bucket).
        self._limiter = _rate_limiter(max_requests_per_second)
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._max_response_bytes = max_response_bytes
        self._unreadable_logged: OrderedDict[tuple[int, int | str], None] = OrderedDict()
        self._request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        #: Datafold's clock minus ours, from the last few answers' `Date` headers.
        self._offsets: deque[float] = deque(maxlen=_OFFSET_SAMPLES)
        self._offset: float | None = None
        self._last_date: str | None = None
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"DatafoldClient(host={self._base!r})"

    @property
    def clock_offset(self) -> float | None:
        """Seconds Datafold's clock is ahead of ours (negative: behind), the median of the last
        few answers' `Date` headers (whole seconds, so about ±1 s); None before any answer."""
        return self._offset

    def _note_server_date(self, value: str | None) -> None:
        """Take one `Date` header as a sample of Datafold's clock (once per distinct value)."""
        if value is None or value == self._last_date:
            return
        self._last_date = value
        try:
            stamp = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        # The header is truncated to the second: its middle is the best estimate.
        self._offsets.append((stamp - datetime.now(UTC)).total_seconds() + 0.5)
        self._offset = statistics.median(self._offsets)

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        """Every run of the monitor started in [since, until], across all pages, one per run_id.

        Assumes no order; a run listed twice keeps its later copy; other monitors' runs are dropped.
        Runs are read one by one: one that cannot be understood is logged once and skipped, or,
        when its run_id is readable, listed with no state, so that it is tracked as unfinished
        and looked at again (directly, once it leaves the window) until it reads well.
        """
        subject = Subject(monitor_id)
        params = {"page_size": str(self._page_size), "start_time": _iso_z(since)}
        if until is not None:
            params["end_time"] = _iso_z(until)
        runs: dict[int, MonitorRun] = {}
        path = f"/api/v1/monitors/{monitor_id}/runs"
        async for page in self._each_page(subject, path, params, RunPage, lambda p: len(p.runs)):
            if len(page.runs) > self._page_size:
                # Refused before a run object is built: a listing then holds at most
                # page_size x max_pages runs, however the server packs its pages.
                raise MalformedAnswer(
                    f"{subject.label}: a page holds {len(page.runs)} runs, more than the "
                    f"{self._page_size} asked for (NOTIFIER_PAGE_SIZE)"
                )
            try:
                # The common case in one call: every run on the page reads well.
                whole: list[MonitorRun | None] = list(_RUNS.validate_python(page.runs))
            except ValidationError:
                whole = [self._read_run(monitor_id, item) for item in page.runs]
            for run in whole:
                if run is None:
                    continue
                if run.monitor_id != monitor_id:
                    _log.warning(
                        "datafold.foreign_run_dropped",
                        monitor_id=monitor_id,
                        run_id=run.run_id,
                        run_monitor_id=run.monitor_id,
                    )
                    continue
                runs[run.run_id] = run
        return list(runs.values())

    def _read_run(self, monitor_id: int, item: Any) -> MonitorRun | None:
        """One listed run that may not read well: as listed, or without a state when only its
        run_id can be read (logged once); None when not even that, or it is another monitor's."""
        try:
            run = MonitorRun.model_validate(item)
        except ValidationError as exc:
            run_id = _int_field(item, "run_id")
            owner = _int_field(item, "monitor_id")
            foreign = owner is not None and owner != monitor_id
            self._log_unreadable(monitor_id, run_id, item, _schema_problem(exc), foreign)
            if run_id is None or foreign:
                return None
            return MonitorRun(run_id=run_id, monitor_id=monitor_id)
        return run

    def _log_unreadable(
        self, monitor_id: int, run_id: int | None, item: Any, problem: str, foreign: bool
    ) -> None:
        """Once per run (bounded memory), not every cycle it is listed."""
        identity: int | str
        if run_id is not None:
            identity = run_id
        else:
            text = repr(item)[:4096].encode("utf-8", "replace")
            identity = hashlib.blake2b(text, digest_size=8).hexdigest()
        key = (monitor_id, identity)
        if key in self._unreadable_logged:
            return
        self._unreadable_logged[key] = None
        if len(self._unreadable_logged) > _UNREADABLE_MEMORY:
            self._unreadable_logged.popitem(last=False)
        if run_id is None or foreign:
            action = "skipped"
        else:
            action = "tracked as unfinished until it reads well"
        _log.warning(
            "datafold.run_unreadable",
            monitor_id=monitor_id,
            run_id=run_id,
            problem=self._redact(problem),
            action=action,
        )

    async def probe_clock(self) -> float | None:
        """One request, no retries, to read Datafold's clock before the first cycle judges what
        is history; the offset (see `clock_offset`), or None when it could not be read."""
        subject = Subject()
        params = {"page_size": "1", "page": "1"}
        limit = min(PROBE_TIMEOUT, self._request_timeout)
        try:
            await self._attempt(subject, "/api/v1/monitors", params, 1, limit=limit)
        except (DatafoldError, _Transient) as exc:
            _log.info("datafold.clock_probe_failed", error=self._redact(str(exc)))
        return self.clock_offset

    async def get_monitor(self, monitor_id: int) -> MonitorInfo:
        """The monitor's name, type, tags and owner, for the notification."""
        subject = Subject(monitor_id)
        payload = await self._get_json(subject, f"/api/v1/monitors/{monitor_id}", {})
        monitor = _validate(subject, MonitorInfo, payload)
        if monitor.id != monitor_id:
            raise MalformedAnswer(f"{subject.label}: answer describes monitor {monitor.id}")
        return monitor

    async def get_run(self, monitor_id: int, run_id: int) -> RunDetail:
        """One run with its error message and warnings."""
        subject = Subject(monitor_id, run_id)
        path = f"/api/v1/monitors/{monitor_id}/runs/{run_id}"
        run = _validate(subject, RunDetail, await self._get_json(subject, path, {}))
        if (run.monitor_id, run.run_id) != (monitor_id, run_id):
            raise MalformedAnswer(
                f"{subject.label}: answer describes run {run.run_id} of monitor {run.monitor_id}"
            )
        return run

    async def list_monitors(
        self, tags: Sequence[str] = (), *, page_size: int = MONITORS_PAGE_SIZE
    ) -> list[MonitorSummary]:
        """Every monitor (carrying all of `tags`, if given), across all pages, one per id."""
        subject = Subject()
        # A stable order, so that paging cannot skip a monitor while the listing shifts.
        params = {"page_size": str(page_size), "order_by": "id", "sort_order": "asc"}
        if tags:
            params["tags"] = ",".join(tags)
        monitors: dict[int, MonitorSummary] = {}
        path = "/api/v1/monitors"
        async for page in self._each_page(
            subject,
            path,
            params,
            _MonitorPage,
            lambda p: len(p.monitors),
            max_pages=MONITORS_MAX_PAGES,
        ):
            if len(page.monitors) > page_size:
                raise MalformedAnswer(
                    f"{subject.label}: a page holds {len(page.monitors)} monitors, more than the "
                    f"{page_size} asked for"
                )
            for monitor in page.monitors:
                monitors[monitor.id] = monitor
            if len(monitors) > MONITORS_MAX:
                raise MalformedAnswer(f"{subject.label}: more than {MONITORS_MAX} monitors listed")
        return list(monitors.values())

    async def _each_page(
        self,
        subject: Subject,
        path: str,
        params: Mapping[str, str],
        model: type[_Page],
        size: Callable[[_Page], int],
        *,
        max_pages: int | None = None,
    ) -> AsyncIterator[_Page]:
        """Pages 1, 2, ... until `total_pages` or an empty page; over `max_pages` is an error."""
        limit = max_pages or self._max_pages
        number = 1
        while True:
            payload = await self._get_json(subject, path, {**params, "page": str(number)})
            page = _validate(subject, model, payload)
            yield page
            if size(page) == 0 or number >= page.total_pages:
                return
            if number >= limit:
                raise MalformedAnswer(f"{subject.label}: more than {limit} pages")
            number += 1

    async def _get_json(self, subject: Subject, path: str, params: Mapping[str, str]) -> Any:
        """GET with retries; the decoded JSON of a 2xx answer, or a `DatafoldError`.

        The first attempt runs on its own: most requests succeed, and tenacity's machinery is
        only set up once one has failed.
        """
        try:
            return await self._attempt(subject, path, params, 1)
        except _Transient as first:
            if self._max_attempts == 1:
                raise self._unavailable(subject, path, first) from first
            failure = first
        logger = _log.bind(**subject.log_fields, path=path)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts - 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=lambda state: self._log_retry(logger, state, offset=1),
            reraise=True,
        )
        wait = self._wait_for(failure, 1)
        self._log_failure(logger, failure, wait, attempt=1)
        await asyncio.sleep(wait)
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number + 1
                    return await self._attempt(subject, path, params, number)
        except _Transient as exc:
            raise self._unavailable(subject, path, exc) from exc
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    def _unavailable(self, subject: Subject, path: str, exc: _Transient) -> ApiUnavailable:
        return ApiUnavailable(
            self._redact(
                f"{subject.label}: Datafold at {self._host_label} unavailable (GET {path}): "
                f"{exc.reason} after {self._max_attempts} attempts"
            )
        )

    async def _attempt(
        self,
        subject: Subject,
        path: str,
        params: Mapping[str, str],
        attempt: int,
        *,
        limit: float | None = None,
    ) -> Any:
        """One request; `limit` overrides the request timeout (seconds)."""
        lane = self._semaphore if "page" in params else self._detail_semaphore
        async with lane:
            # The rate token is taken with the slot held, so waiting tasks cannot hoard tokens
            # and then burst past the cap when the API recovers.
            if self._limiter is not None:
                await self._limiter.acquire()
            self.requests_made += 1
            try:
                async with self._session.get(
                    self._base + path,
                    params=params,
                    headers=self._headers,
                    timeout=self._timeout if limit is None else aiohttp.ClientTimeout(limit),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                    self._note_server_date(response.headers.get("Date"))
                    body = await self._read_body(subject, response)
            except TimeoutError as exc:
                self._debug(subject, path, attempt, error="timeout")
                raise _Transient(f"timed out after {self._request_timeout:g}s") from exc
            except aiohttp.ClientError as exc:
                self._debug(subject, path, attempt, error=type(exc).__name__)
                raise _Transient(type(exc).__name__) from exc
        self._debug(subject, path, attempt, status=status)
        return self._interpret(subject, status, body, retry_after)

    async def _read_body(self, subject: Subject, response: aiohttp.ClientResponse) -> bytes:
        """At most NOTIFIER_MAX_RESPONSE_BYTES (decompressed) of a 2xx answer; of any other, the
        start only (the error detail), since nothing else of it is used."""
        if 200 <= response.status < 300:
            try:
                return await read_capped(response, self._max_response_bytes)
            except BodyTooLarge:
                raise AnswerTooLarge(
                    f"{subject.label}: answer larger than {self._max_response_bytes} bytes "
                    "(NOTIFIER_MAX_RESPONSE_BYTES)"
                ) from None
        try:
            return await read_capped(response, _ERROR_BODY_MAX)
        except BodyTooLarge:
            return b""

    @staticmethod
    def _debug(subject: Subject, path: str, attempt: int, **fields: Any) -> None:
        """One debug event per request, built only when debug logging is on (a hot path)."""
        if _stdlib_log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "datafold.request",
                **subject.log_fields,
                path=path,
                method="GET",
                attempt=attempt,
                **fields,
            )

    def _interpret(
        self, subject: Subject, status: int, body: bytes, retry_after: str | None
    ) -> Any:
        """Map an HTTP answer to decoded JSON or the matching error."""
        if 200 <= status < 300:
            try:
                return json.loads(body)
            except (ValueError, RecursionError):
                raise MalformedAnswer(f"{subject.label}: answer is not JSON") from None
        if status in (401, 403):
            raise ApiKeyRefused(status)
        if status == 404 and subject.monitor_id is not None:
            raise NotFound(subject.monitor_id, subject.run_id)
        if status in RETRYABLE_STATUSES:
            wait = retry_after_seconds(retry_after, datetime.now(UTC))
            if wait is not None and wait > self._max_retry_after:
                # Waiting that long would hold up the cycle: this monitor fails now instead.
                raise ApiUnavailable(
                    f"{subject.label}: Datafold at {self._host_label} asked to wait {wait:.3g} s "
                    f"(HTTP {status}, Retry-After), more than {self._max_retry_after:g} s "
                    "(NOTIFIER_MAX_RETRY_AFTER_SECONDS)"
                )
            raise _Transient(f"HTTP {status}", wait)
        if status >= 500:
            raise ApiUnavailable(
                f"{subject.label}: Datafold at {self._host_label} failed (HTTP {status})"
            )
        if 300 <= status < 400:
            raise RequestRejected(
                f"{subject.label}: redirected (HTTP {status}); check the Datafold host"
            )
        detail = _error_detail(body)
        message = f"{subject.label}: request rejected (HTTP {status})"
        raise RequestRejected(self._redact(f"{message}: {detail}" if detail else message))

    def _wait(self, state: RetryCallState) -> float:
        """Tenacity's wait before the attempt after `state` (whose numbers start at the second)."""
        error = state.outcome.exception() if state.outcome is not None else None
        return self._wait_for(error, state.attempt_number + 1)

    def _wait_for(self, error: BaseException | None, failed_attempt: int) -> float:
        """Retry-After when the answer gives one (capped), else capped exponential with jitter."""
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, self._max_retry_after)
        ceiling = min(self._backoff_initial * 2.0 ** (failed_attempt - 1), self._backoff_max)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _log_retry(self, logger: Any, state: RetryCallState, *, offset: int) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        self._log_failure(logger, error, wait, attempt=state.attempt_number + offset)

    def _log_failure(
        self, logger: Any, error: BaseException | None, wait: float, *, attempt: int
    ) -> None:
        reason = error.reason if isinstance(error, _Transient) else type(error).__name__
        logger.warning(
            "datafold.retry",
            reason=self._redact(reason),
            wait=round(wait, 3),
            attempt=attempt,
            max_attempts=self._max_attempts,
        )

    def _redact(self, text: str) -> str:
        """Belt and braces: a server echoing the key back must not put it in a message."""
        return text.replace(self._api_key, _REDACTED) if len(self._api_key) >= 8 else text
