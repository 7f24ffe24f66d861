"""Datafold API adapter: monitors and their runs over HTTP, with retries and bounded concurrency.

The only module that talks to Datafold. It returns `notifier.domain.models` types and raises
`DatafoldError` subclasses whose messages are one line and never contain the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from yarl import URL

from notifier import __version__
from notifier.bounded_http import BodyTooLarge, read_capped
from notifier.domain.models import MonitorInfo, MonitorRun, MonitorSummary, RunDetail
from notifier.domain.text import iso_z
from notifier.fetch.answers import (
    MonitorPage,
    Transient,
    UnreadableMemory,
    UnreadableRun,
    interpret,
    read_answer,
    read_run_page,
)
from notifier.fetch.pacing import RetryPolicy, rate_limiter, retry_after_first
from notifier.fetch.server_clock import ServerClock
from notifier.fetch.source import (
    AnswerTooLarge,
    ApiUnavailable,
    DatafoldError,
    MalformedAnswer,
    Subject,
)

#: Set by `urgent()`: a listing (a push trigger's) skips the door and the cycle's listings.
URGENT: ContextVar[bool] = ContextVar("urgent_listing", default=False)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Listings made within are urgent (see `URGENT`)."""
    token = URGENT.set(True)
    try:
        yield
    finally:
        URGENT.reset(token)


_log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

#: Of an error answer only the start is read: its `detail` is all that is used.
_ERROR_BODY_MAX = 64 * 1024
_REDACTED = "***"


#: The monitors listing (the change feed) asks for large pages; an account may have thousands.
MONITORS_PAGE_SIZE = 500
MONITORS_MAX_PAGES = 1000
#: At most this many monitors in one listing: an account with more is beyond one process anyway.
MONITORS_MAX = 100_000
#: The clock probe before the first cycle waits at most this long (and is never retried).
PROBE_TIMEOUT = 5.0


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
        # Listings under way at once, twice the request width (a listing waiting to retry holds
        # no request slot): the others wait at the door, before any of their request state is
        # built, so that 10,000 monitors listed in one cycle cost little memory while waiting.
        self._listings = asyncio.Semaphore(2 * max_concurrency)
        # An optional cap on the request rate, for accounts with tight limits (leaky bucket).
        self._limiter = rate_limiter(max_requests_per_second)
        self._retries = RetryPolicy(max_attempts, backoff_initial, backoff_max, max_retry_after)
        self._max_response_bytes = max_response_bytes
        self._unreadable = UnreadableMemory()
        self._request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._server_clock = ServerClock()
        self._stamps: dict[datetime, str] = {}
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"DatafoldClient(host={self._base!r})"

    @property
    def clock_offset(self) -> float | None:
        """Seconds Datafold's clock is ahead of ours (negative: behind), the median of the last
        few answers' `Date` headers (whole seconds, so about ±1 s); None before any answer."""
        return self._server_clock.offset

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        """Every run of the monitor started in [since, until], across all pages, one per run_id.

        Assumes no order; a run listed twice keeps its later copy; other monitors' runs are dropped.
        Runs are read one by one: one that cannot be understood is logged once and skipped, or,
        when its run_id is readable, listed with no state, so that it is tracked as unfinished
        and looked at again (directly, once it leaves the window) until it reads well.
        """
        runs: dict[int, MonitorRun] = {}
        async with contextlib.nullcontext() if URGENT.get() else self._listings:
            subject = Subject(monitor_id)
            params = {"page_size": str(self._page_size), "start_time": self._stamp(since)}
            if until is not None:
                params["end_time"] = iso_z(until)
            path = f"/api/v1/monitors/{monitor_id}/runs"
            number = 1
            while True:
                body = await self._get(subject, path, {**params, "page": str(number)})
                page = read_run_page(subject, monitor_id, body, self._page_size)
                for item, problem in page.unreadable:
                    self._log_unreadable(monitor_id, item, problem)
                for run in page.runs:
                    if run.monitor_id != monitor_id:
                        _log.warning(
                            "datafold.foreign_run_dropped",
                            monitor_id=monitor_id,
                            run_id=run.run_id,
                            run_monitor_id=run.monitor_id,
                        )
                        continue
                    runs[run.run_id] = run
                if self._last_page(subject, number, page.listed, page.total_pages):
                    return list(runs.values())
                number += 1

    def _stamp(self, since: datetime) -> str:
        """`iso_z(since)`, remembered: polls stamp in coarse steps, so most listings of a cycle
        start at one of a few instants."""
        stamp = self._stamps.get(since)
        if stamp is None:
            if len(self._stamps) >= 64:
                self._stamps.clear()
            stamp = self._stamps[since] = iso_z(since)
        return stamp

    def _log_unreadable(self, monitor_id: int, item: Any, unreadable: UnreadableRun) -> None:
        """Once per run (bounded memory), not every cycle it is listed."""
        if self._unreadable.first_time(monitor_id, item, unreadable):
            _log.warning(
                "datafold.run_unreadable",
                monitor_id=monitor_id,
                run_id=unreadable.run_id,
                problem=self._redact(unreadable.problem),
                action=unreadable.action,
            )

    async def probe_clock(self) -> float | None:
        """One request, no retries, to read Datafold's clock before the first cycle judges what
        is history; the offset (see `clock_offset`), or None when it could not be read."""
        subject = Subject()
        params = {"page_size": "1", "page": "1"}
        limit = min(PROBE_TIMEOUT, self._request_timeout)
        try:
            await self._attempt(subject, "/api/v1/monitors", params, 1, limit=limit)
        except (DatafoldError, Transient) as exc:
            _log.info("datafold.clock_probe_failed", error=self._redact(str(exc)))
        return self.clock_offset

    async def get_monitor(self, monitor_id: int) -> MonitorInfo:
        """The monitor's name, type, tags and owner, for the notification."""
        subject = Subject(monitor_id)
        body = await self._get(subject, f"/api/v1/monitors/{monitor_id}", {})
        monitor = read_answer(subject, MonitorInfo, body)
        if monitor.id != monitor_id:
            raise MalformedAnswer(f"{subject.label}: answer describes monitor {monitor.id}")
        return monitor

    async def get_run(self, monitor_id: int, run_id: int) -> RunDetail:
        """One run with its error message and warnings."""
        subject = Subject(monitor_id, run_id)
        path = f"/api/v1/monitors/{monitor_id}/runs/{run_id}"
        run = read_answer(subject, RunDetail, await self._get(subject, path, {}))
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
        number = 1
        while True:
            body = await self._get(subject, path, {**params, "page": str(number)})
            page = read_answer(subject, MonitorPage, body)
            if len(page.monitors) > page_size:
                raise MalformedAnswer(
                    f"{subject.label}: a page holds {len(page.monitors)} monitors, more than the "
                    f"{page_size} asked for"
                )
            for monitor in page.monitors:
                monitors[monitor.id] = monitor
            if len(monitors) > MONITORS_MAX:
                raise MalformedAnswer(f"{subject.label}: more than {MONITORS_MAX} monitors listed")
            listed, total = len(page.monitors), page.total_pages
            if self._last_page(subject, number, listed, total, MONITORS_MAX_PAGES):
                return list(monitors.values())
            number += 1

    def _last_page(
        self, subject: Subject, number: int, listed: int, total: int, limit: int | None = None
    ) -> bool:
        """Whether page `number` (`listed` items, of `total` pages) ends the listing: at
        `total_pages` or an empty page; more than `limit` pages is an error."""
        if listed == 0 or number >= total:
            return True
        if number >= (limit or self._max_pages):
            raise MalformedAnswer(f"{subject.label}: more than {limit or self._max_pages} pages")
        return False

    async def _get(self, subject: Subject, path: str, params: Mapping[str, str]) -> bytes:
        """GET with retries; the body of a 2xx answer, or a `DatafoldError`. The first attempt is
        awaited directly: every frame between a listing and aiohttp is resumed at each step of
        every request."""
        try:
            return await self._attempt(subject, path, params, 1)
        except Transient as first:
            failure = first

        def log_retry(error: BaseException | None, wait: float, attempt: int) -> None:
            reason = error.reason if isinstance(error, Transient) else type(error).__name__
            _log.warning(
                "datafold.retry",
                **subject.log_fields,
                path=path,
                reason=self._redact(reason),
                wait=round(wait, 3),
                attempt=attempt,
                max_attempts=self._retries.max_attempts,
            )

        try:
            return await retry_after_first(
                failure,
                lambda attempt: self._attempt(subject, path, params, attempt),
                self._retries,
                log_retry,
            )
        except Transient as exc:
            raise self._unavailable(subject, path, exc) from exc

    def _unavailable(self, subject: Subject, path: str, exc: Transient) -> ApiUnavailable:
        return ApiUnavailable(
            self._redact(
                f"{subject.label}: Datafold at {self._host_label} unavailable (GET {path}): "
                f"{exc.reason} after {self._retries.max_attempts} attempts"
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
    ) -> bytes:
        """One request: the body of a 2xx answer; `limit` overrides the request timeout."""
        lane = self._semaphore if "page" in params and not URGENT.get() else self._detail_semaphore
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
                    self._server_clock.note(response.headers.get("Date"), datetime.now(UTC))
                    body = await self._read_body(subject, response)
            except TimeoutError as exc:
                self._debug(subject, path, attempt, error="timeout")
                raise Transient(f"timed out after {self._request_timeout:g}s") from exc
            except aiohttp.ClientError as exc:
                self._debug(subject, path, attempt, error=type(exc).__name__)
                raise Transient(type(exc).__name__) from exc
        self._debug(subject, path, attempt, status=status)
        if not 200 <= status < 300:  # a 2xx body is read by the caller (`read_answer`)
            interpret(
                subject,
                status,
                body,
                retry_after,
                datetime.now(UTC),
                host_label=self._host_label,
                max_retry_after=self._retries.max_retry_after,
                redact=self._redact,
            )  # raises
        return body

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

    def _redact(self, text: str) -> str:
        """Belt and braces: a server echoing the key back must not put it in a message."""
        return text.replace(self._api_key, _REDACTED) if len(self._api_key) >= 8 else text
