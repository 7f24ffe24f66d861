"""The Datafold adapter's pure parts, table by table: answers read from bytes, the server's clock,
the retry waits. The client over HTTP is tested in test_datafold_client.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.fetch.answers import (
    Transient,
    UnreadableMemory,
    UnreadableRun,
    error_detail,
    interpret,
    read_page_runs,
)
from notifier.fetch.pacing import RetryPolicy
from notifier.fetch.server_clock import ServerClock
from notifier.fetch.source import (
    ApiKeyRefused,
    ApiUnavailable,
    DatafoldError,
    MalformedAnswer,
    NotFound,
    RequestRejected,
    Subject,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = "secret-api-key"


def _interpret(status: int, body: bytes, retry_after: str | None = None) -> Any:
    return interpret(
        Subject(7),
        status,
        body,
        retry_after,
        NOW,
        host_label="datafold.test",
        max_retry_after=30.0,
        redact=lambda text: text.replace(KEY, "***"),
    )


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "error", "words"),
    [
        (401, b"", None, ApiKeyRefused, "refused the API key (HTTP 401)"),
        (403, b"", None, ApiKeyRefused, "HTTP 403"),
        (404, b"", None, NotFound, "monitor 7 not found"),
        (200, b"not json", None, MalformedAnswer, "answer is not JSON"),
        (503, b"", "60", ApiUnavailable, "asked to wait 60 s"),
        (501, b"", None, ApiUnavailable, "failed (HTTP 501)"),
        (302, b"", None, RequestRejected, "redirected (HTTP 302)"),
        (422, b'{"detail": "bad key ' + KEY.encode() + b'"}', None, RequestRejected, "bad key ***"),
        (400, b"<html>", None, RequestRejected, "request rejected (HTTP 400)"),
    ],
)
def test_interpret_errors(
    status: int, body: bytes, retry_after: str | None, error: type[DatafoldError], words: str
) -> None:
    with pytest.raises(error) as caught:
        _interpret(status, body, retry_after)
    assert words in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [(429, None, None), (500, "2", 2.0), (502, "Wed, 01 May 2024 12:00:10 GMT", 10.0)],
)
def test_interpret_transient(status: int, retry_after: str | None, wait: float | None) -> None:
    with pytest.raises(Transient) as caught:
        _interpret(status, b"", retry_after)
    assert caught.value.reason == f"HTTP {status}"
    assert caught.value.retry_after == wait


def test_interpret_decodes_a_success() -> None:
    assert _interpret(200, b'{"a": [1]}') == {"a": [1]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"detail": "Monitor\\nnot found"}', "Monitor not found"),
        (b'{"detail": "  "}', None),
        (b'{"detail": [{"loc": ["query", "page"], "msg": "bad"}, {"msg": "worse"}]}', None),
        (b"[]", None),
        (b"\xff", None),
    ],
)
def test_error_detail(body: bytes, detail: str | None) -> None:
    expected = "query.page: bad; worse" if b"worse" in body else detail
    assert error_detail(body) == expected


def _run(run_id: Any, monitor_id: Any = 7, diff_id: Any = None) -> dict[str, Any]:
    return {"run_id": run_id, "monitor_id": monitor_id, "state": "ok", "diff_id": diff_id}


@pytest.mark.parametrize(
    ("raw", "read", "unreadable"),
    [
        ([_run(1), _run(2)], [(1, "ok"), (2, "ok")], []),
        ([_run(1), _run(2, diff_id="soon")], [(1, "ok"), (2, None)], [(2, False, "tracked")]),
        ([_run("3", diff_id="?")], [(3, None)], [(3, False, "tracked")]),
        ([_run(None)], [], [(None, False, "skipped")]),
        ([_run(4, monitor_id=8, diff_id="?")], [], [(4, True, "skipped")]),
        # A readable run of another monitor is kept here: the client drops it and logs that.
        ([_run(5, monitor_id=8)], [(5, "ok")], []),
    ],
)
def test_read_page_runs(
    raw: list[Any], read: list[tuple[int, str | None]], unreadable: list[tuple[Any, bool, str]]
) -> None:
    runs, bad = read_page_runs(7, raw)
    assert [(run.run_id, run.state) for run in runs] == read
    assert [(u.run_id, u.foreign, u.action.split()[0]) for _, u in bad] == unreadable


def test_unreadable_memory_reports_each_once_within_its_size() -> None:
    memory = UnreadableMemory(size=2)
    first = UnreadableRun(1, False, "state: bad")
    nameless = UnreadableRun(None, False, "run_id: missing")
    assert memory.first_time(7, {}, first)
    assert not memory.first_time(7, {}, first)
    assert memory.first_time(8, {}, first)  # another monitor's run 1
    assert memory.first_time(7, {"x": 1}, nameless)  # by its text; forgets the oldest
    assert not memory.first_time(7, {"x": 1}, nameless)
    assert memory.first_time(7, {}, first)


@pytest.mark.parametrize(
    ("headers", "offset"),
    [
        ([], None),
        (["not a date"], None),
        (["Wed, 01 May 2024 12:00:10 GMT"], 10.5),
        (["Wed, 01 May 2024 11:59:50 GMT"], -9.5),
        # The median of distinct samples: one wild answer does not move it.
        (
            [
                "Wed, 01 May 2024 12:00:01 GMT",
                "Wed, 01 May 2024 12:00:02 GMT",
                "Wed, 01 May 2024 13:00:00 GMT",
            ],
            2.5,
        ),
    ],
)
def test_server_clock(headers: list[str], offset: float | None) -> None:
    clock = ServerClock()
    for header in headers:
        clock.note(header, NOW)
    assert clock.offset == offset


def test_server_clock_takes_a_repeated_header_once() -> None:
    clock = ServerClock()
    clock.note("Wed, 01 May 2024 12:00:10 GMT", NOW)
    clock.note("Wed, 01 May 2024 12:00:10 GMT", NOW + timedelta(seconds=100))
    assert clock.offset == 10.5


@pytest.mark.parametrize(
    ("error", "failed_attempt", "low", "high"),
    [
        (Transient("HTTP 503", retry_after=3.0), 1, 3.0, 3.0),
        (Transient("HTTP 503", retry_after=99.0), 1, 30.0, 30.0),
        (Transient("timeout"), 1, 0.25, 0.5),
        (Transient("timeout"), 3, 1.0, 2.0),
        (None, 10, 5.0, 10.0),
    ],
)
def test_retry_wait(
    error: BaseException | None, failed_attempt: int, low: float, high: float
) -> None:
    policy = RetryPolicy(max_attempts=4, backoff_initial=0.5, backoff_max=10.0, max_retry_after=30)
    assert low <= policy.wait_for(error, failed_attempt) <= high
