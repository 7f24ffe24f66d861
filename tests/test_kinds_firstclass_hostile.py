"""PagerDuty, Teams and SMTP endpoints that answer with too much or too slowly (issue 14: "same
guarantees as Slack"): a 50 MB body, an endless body, a body or headers that trickle forever,
a header line without end. Each sink holds a bounded amount of memory whatever it is sent, and
gives up within its request timeout (the `timeout` it is built with, which the daemon sets from
NOTIFIER_REQUEST_TIMEOUT_SECONDS) with a one-line error; the timeout itself, a server silent
from the start, is tested beside each sink (test_pagerduty_sink, test_teams_sink,
test_email_sink)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest

from notifier.bounded_http import BoundedResponse
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.email import EmailSink
from notifier.deliver.sinks.pagerduty import PagerDutySink
from notifier.deliver.sinks.teams import TeamsSink
from tests.fakes.samples import notification

ROUTING_KEY = "PdHostile0123456789abcdef012345z"
#: The sinks' request timeout in these tests.
TIMEOUT = 0.5
#: How much longer than TIMEOUT a give-up may take (scheduling, a loaded CI machine).
SLACK_SECONDS = 2.0
HUGE = 50 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
#: What a sink may allocate while it is sent HUGE bytes (aiohttp's buffers, the event, the
#: request): far below the body it is sent.
MEMORY_MAX = 8 * 1024 * 1024
#: Any loop of these servers stops after this long, so a client that never gives up fails the
#: test instead of hanging it.
SERVER_MAX_SECONDS = 20.0

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """A TCP server on 127.0.0.1 that reads one HTTP request (or nothing, for SMTP) and then
    writes whatever `answer` writes; `sent` counts the bytes it got out."""

    answer: Answer
    http: bool = True
    sent: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stopping: bool = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                async with asyncio.timeout(SERVER_MAX_SECONDS):
                    if self.http:
                        await self._read_request(reader)
                    await self.answer(writer)
        finally:
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            # Hang up on every client; each answer loop then fails its next write and ends.
            self._stopping = True
            server.close()
            for writer in self._writers:
                writer.transport.abort()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=SERVER_MAX_SECONDS)

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self._stopping or writer.is_closing():
            raise ConnectionResetError("the test is over")
        writer.write(data)
        await writer.drain()
        self.sent += len(data)


def huge(server: RawServer, status: int) -> Answer:
    """A declared 50 MB body, sent as fast as the client takes it."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        await server.write(writer, f"{head}Content-Length: {HUGE}\r\n\r\n".encode())
        for _ in range(HUGE // len(CHUNK)):
            await server.write(writer, CHUNK)

    return answer


def endless(server: RawServer, status: int, pause: float = 0.0) -> Answer:
    """A chunked body that never ends, as fast as taken or one chunk every `pause` seconds."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        await server.write(writer, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        while True:
            await server.write(writer, chunk)
            if pause:
                await asyncio.sleep(pause)

    return answer


def trickling_headers(server: RawServer) -> Answer:
    """A status line, then one more header every 50 ms, forever: no read ever waits long."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        await server.write(writer, b"HTTP/1.1 202 Accepted\r\n")
        number = 0
        while True:
            await asyncio.sleep(0.05)
            number += 1
            await server.write(writer, f"X-Trickle-{number}: y\r\n".encode())

    return answer


def endless_header(server: RawServer) -> Answer:
    """A status line, then one header line that never ends."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        await server.write(writer, b"HTTP/1.1 202 Accepted\r\nX-Endless: ")
        while True:
            await server.write(writer, CHUNK)

    return answer


@contextlib.contextmanager
def bounded(seconds: float, memory: int = MEMORY_MAX) -> Iterator[None]:
    """The block takes less than `seconds` and allocates less than `memory` at its peak."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert took < seconds, f"took {took:.1f} s"
    assert peak < memory, f"peak {peak / 2**20:.1f} MB"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session like the daemon's (bounded answers), no timeout of its own."""
    async with aiohttp.ClientSession(response_class=BoundedResponse) as client:
        yield client


def pagerduty(url: str, session: aiohttp.ClientSession) -> PagerDutySink:
    return PagerDutySink(
        ROUTING_KEY, session=session, name="pd", url=url + "/v2/enqueue", timeout=TIMEOUT
    )


def teams(url: str, session: aiohttp.ClientSession) -> TeamsSink:
    return TeamsSink(url + "/workflows/x?sig=s3cr3t", session=session, timeout=TIMEOUT)


async def delivery_error(send: Awaitable[object]) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await send
    error = caught.value
    assert "\n" not in str(error) and len(str(error)) < 400
    return error


async def test_pagerduty_accepted_with_a_50_mb_body_reads_none_of_it(
    session: aiohttp.ClientSession,
) -> None:
    server = RawServer(lambda w: asyncio.sleep(0))
    server.answer = huge(server, 202)
    async with server.serve() as url:
        with bounded(SLACK_SECONDS):
            assert await pagerduty(url, session).send(notification()) is None
    assert server.sent < HUGE // 4  # the sink hung up instead of draining it


@pytest.mark.parametrize("shape", ["huge", "endless", "trickling"])
async def test_a_pagerduty_refusal_with_an_oversized_or_slow_body_reads_a_bounded_reason(
    session: aiohttp.ClientSession, shape: str
) -> None:
    """A 400's reason is read (4 KB at most, one line, no routing key) whether its body is 50 MB,
    endless or trickles: the event is refused for good, at once."""
    server = RawServer(lambda w: asyncio.sleep(0))
    server.answer = {
        "huge": huge(server, 400),
        "endless": endless(server, 400),
        "trickling": endless(server, 400, pause=0.05),
    }[shape]
    async with server.serve() as url:
        with bounded(SLACK_SECONDS):
            error = await delivery_error(pagerduty(url, session).send(notification()))
    assert error.permanent and "event refused" in error.reason
    assert ROUTING_KEY not in str(error) and len(error.reason) < 300


@pytest.mark.parametrize("kind", ["pagerduty", "teams"])
@pytest.mark.parametrize("shape", ["trickling_headers", "endless_header", "endless_5xx"])
async def test_hostile_answers_fail_the_destination_within_the_timeout(
    session: aiohttp.ClientSession, kind: str, shape: str
) -> None:
    """Headers that trickle forever are cut by the request timeout; a header line without end
    and a 503 with an endless body fail at once. The destination is held (whole_destination)
    and its notifications stay in the outbox; memory stays bounded."""
    server = RawServer(lambda w: asyncio.sleep(0))
    server.answer = {
        "trickling_headers": trickling_headers(server),
        "endless_header": endless_header(server),
        "endless_5xx": endless(server, 503),
    }[shape]
    async with server.serve() as url:
        sink = pagerduty(url, session) if kind == "pagerduty" else teams(url, session)
        limit = TIMEOUT + SLACK_SECONDS if shape == "trickling_headers" else SLACK_SECONDS
        with bounded(limit):
            error = await delivery_error(sink.send(notification()))
    assert error.whole_destination and not error.permanent
    assert ("503" in error.reason) == (shape == "endless_5xx")
    assert url not in str(error) and "s3cr3t" not in str(error)


async def test_teams_accepted_with_an_endless_body_reads_none_of_it(
    session: aiohttp.ClientSession,
) -> None:
    server = RawServer(lambda w: asyncio.sleep(0))
    server.answer = endless(server, 202)
    async with server.serve() as url:
        with bounded(SLACK_SECONDS):
            assert await teams(url, session).send(notification()) is None


@pytest.mark.parametrize("kind", ["pagerduty", "teams"])
async def test_check_against_trickling_headers_fails_within_the_timeout(
    session: aiohttp.ClientSession, kind: str
) -> None:
    server = RawServer(lambda w: asyncio.sleep(0))
    server.answer = trickling_headers(server)
    async with server.serve() as url:
        sink = pagerduty(url, session) if kind == "pagerduty" else teams(url, session)
        with bounded(TIMEOUT + SLACK_SECONDS):
            [result] = await sink.check()
    assert not result.ok and "unreachable" in result.detail and url not in result.detail


def smtp_greeting(server: RawServer, pause: float) -> Answer:
    """A multi-line 220 greeting that never ends (`220-...` lines), fast or every `pause`."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        line = b"220-" + b"g" * 200 + b"\r\n"
        while True:
            await server.write(writer, line)
            if pause:
                await asyncio.sleep(pause)

    return answer


@pytest.mark.parametrize("pause", [0.0, 0.05])
async def test_an_smtp_greeting_without_end_fails_the_destination_bounded(pause: float) -> None:
    """aiosmtplib's per-command timeout never fires on a greeting that keeps coming: the sink's
    bound on the whole exchange does (trickling), or aiosmtplib's 32 KB response limit (fast)."""
    server = RawServer(lambda w: asyncio.sleep(0), http=False)
    server.answer = smtp_greeting(server, pause)
    async with server.serve() as url:
        port = int(url.rsplit(":", 1)[1])
        sink = EmailSink(
            "127.0.0.1", port=port, security="none", sender="n@example.test",
            to=["o@example.test"], timeout=TIMEOUT,
        )  # fmt: skip
        with bounded(TIMEOUT + SLACK_SECONDS):
            error = await delivery_error(sink.send(notification()))
            [checked] = await sink.check()
    assert error.whole_destination and not checked.ok
    expected = "could not be read (too long" if pause == 0 else "did not answer in time"
    assert expected in error.reason and expected in checked.detail


@pytest.mark.parametrize("cut", [4096 - 10, 4096 - 3])
async def test_a_pagerduty_400_cut_in_the_middle_of_the_routing_key_shows_none_of_it(
    session: aiohttp.ClientSession, cut: int
) -> None:
    """Only the first 4 KB of a 400 are read: a routing key echoed across that limit is not
    shown in part either (whitespace before it is collapsed, so it would reach the reason)."""
    body = b" " * cut + ROUTING_KEY.encode() + b" " * 100

    async def answer(writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 400 X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        await server.write(writer, head + body)

    server = RawServer(answer)
    async with server.serve() as url:
        error = await delivery_error(pagerduty(url, session).send(notification()))
    assert error.permanent and ROUTING_KEY[: 4096 - cut] not in str(error)
    assert error.reason.endswith("(event refused: ***)"), error.reason
