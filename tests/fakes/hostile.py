"""Servers that misbehave on purpose; the installed CLI run against them, its memory measured.

A Datafold API, a Slack Web API and a webhook receiver on 127.0.0.1 whose chosen endpoints send an
endless body, a gzip bomb, a page of millions of runs, a page of as many runs as fit under the
client's limit, a long Retry-After, or headers and then nothing, or nothing at all. Well-behaved
monitors beside them each have one fresh `alert` run. Every loop of these servers is bounded in
count and time, so a client that never hangs up costs a test a known amount, not a hang.

`run_scenario` serves one `Scenario` and runs `datafold-notifier once` against it through a small
launcher that reports the CLI's own peak RSS (tests/test_hostile_servers.py, bench/hostile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import struct
import subprocess
import sys
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from tests.fakes.cli import API_KEY, CLI, cli_env
from tests.fakes.slack import FakeSlack, serve_app
from tests.fakes.webhook import WebhookReceiver

Kind = Literal[
    "endless",
    "endless_error",
    "gzip_bomb",
    "million_runs",
    "dense_page",
    "oversized_pages",
    "retry_after",
    "stall_headers",
    "stall_silent",
]
Endpoint = Literal["monitors", "monitor", "runs", "run"]

#: What each server can be told to do (a listing of runs can misbehave in every way).
DATAFOLD_KINDS: frozenset[str] = frozenset(Kind.__args__)  # type: ignore[attr-defined]
SLACK_KINDS = frozenset({"endless", "gzip_bomb", "retry_after", "stall_headers", "stall_silent"})
WEBHOOK_KINDS = frozenset({"endless", "stall_silent"})

CHUNK = 64 * 1024
#: An endless body stops after this many chunks (1 GiB) or seconds, whichever comes first.
STREAM_MAX_CHUNKS = 16 * 1024
STREAM_MAX_SECONDS = 30.0
#: A stall ends after this long even if the client never gives up.
STALL_MAX_SECONDS = 30.0
RETRY_AFTER = "3600"
#: What the gzip bomb inflates to, and the JSON-ish start it inflates to before the spaces.
BOMB_INFLATED = 1024**3
BOMB_PREFIX = b'{"ok": true, "count": 1, "page": 1, "page_size": 1, "total_pages": 1, "runs": ['
#: Runs in the page of millions (about 90 bytes each: 450 MB if a client read it all).
MILLION_RUNS = 5_000_000
#: The dense page is built to fill this many bytes, less a little: the client's default limit.
DENSE_PAGE_BYTES = 4 * 1024 * 1024
#: Pages of `oversized_pages`, and runs in each: pages a hundred times larger than the 100 runs
#: the client asks for (refused before any run object is built).
OVERSIZED_PAGES = 2
OVERSIZED_PAGE_RUNS = 10_000
#: The monitor that behaves, with one fresh alert run, in every scenario.
GOOD_MONITOR = 1


@dataclass(frozen=True)
class Misbehaviour:
    """What one endpoint does instead of answering well; `endpoint` matters for Datafold only."""

    kind: Kind
    endpoint: Endpoint = "runs"


#: Magic, deflate, no flags, no mtime, no extra flags, "unknown" OS (RFC 1952).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@functools.cache
def gzip_bomb(inflated: int = BOMB_INFLATED, prefix: bytes = BOMB_PREFIX) -> bytes:
    """A well-formed gzip member (about 1 MB) that inflates to `inflated` bytes: `prefix`, then
    spaces. Built block by block: after a full flush every MiB of spaces deflates to the same
    bytes, so the bomb is never held inflated and compressing it costs one MiB, not a GiB."""
    block = b" " * (1024 * 1024)
    blocks, tail = divmod(inflated - len(prefix), len(block))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)]
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts.append(repeated * blocks)
    parts.append(compressor.compress(block[:tail]) + compressor.flush(zlib.Z_FINISH))
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(block[:tail], crc)
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return _GZIP_HEADER + b"".join(parts) + trailer


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _million_runs(monitor_id: int, count: int = MILLION_RUNS) -> Iterator[bytes]:
    """A page of `count` valid finished runs, produced 700 at a time, never held whole."""
    head = {"count": count, "page": 1, "page_size": count, "total_pages": 1}
    yield json.dumps(head)[:-1].encode() + b', "runs": ['
    run = b'{"run_id": %d, "monitor_id": %d, "state": "ok", "started_at": "2026-01-01T00:00:00Z"}'
    for first in range(1, count + 1, 700):
        ids = range(first, min(first + 700, count + 1))
        batch = b", ".join(run % (run_id, monitor_id) for run_id in ids)
        yield (b", " if first > 1 else b"") + batch
    yield b"]}"


@functools.cache
def dense_page(monitor_id: int, limit: int = DENSE_PAGE_BYTES) -> bytes:
    """One page of as many distinct minimal runs as fit in `limit` bytes: what costs a client
    most to parse among the answers it accepts."""
    head = b'{"count": 0, "page": 1, "page_size": 1, "total_pages": 1, "runs": ['
    runs: list[bytes] = []
    size = len(head) + 2
    run_id = 0
    while True:
        run_id += 1
        item = b'{"run_id":%d,"monitor_id":%d}' % (run_id, monitor_id)
        if size + len(item) + 1 > limit - 64:
            break
        runs.append(item)
        size += len(item) + 1
    return head + b",".join(runs) + b"]}"


@functools.lru_cache(maxsize=64)
def oversized_page(monitor_id: int, number: int) -> bytes:
    """Page `number` of `OVERSIZED_PAGES`, each of `OVERSIZED_PAGE_RUNS` distinct finished runs
    (about 1.1 MB): a listing the client accepts whole, whatever page size it asked for."""
    first = monitor_id * 10_000_000 + (number - 1) * OVERSIZED_PAGE_RUNS
    runs = [
        {
            "run_id": run_id,
            "monitor_id": monitor_id,
            "state": "ok",
            "started_at": "2026-01-01T00:00:00Z",
            "diff_id": None,
        }
        for run_id in range(first, first + OVERSIZED_PAGE_RUNS)
    ]
    count = OVERSIZED_PAGES * OVERSIZED_PAGE_RUNS
    head = {"count": count, "page": number, "page_size": OVERSIZED_PAGE_RUNS}
    return json.dumps({**head, "total_pages": OVERSIZED_PAGES, "runs": runs}).encode()


def _endless_chunks(start: bytes) -> Iterator[bytes]:
    yield start
    filler = b"x" * CHUNK
    while True:
        yield filler


async def _stream(
    request: web.Request,
    chunks: Iterable[bytes],
    *,
    tally: Counter[str],
    label: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Write `chunks` until they end, the client goes away, or the count or time bound is hit."""
    response = web.StreamResponse(
        status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(STREAM_MAX_SECONDS):
            for count, chunk in enumerate(chunks):
                if count >= STREAM_MAX_CHUNKS:
                    break
                await response.write(chunk)
                tally[label] += len(chunk)
            await response.write_eof()
    return response


async def _stall(
    request: web.Request, *, headers_first: bool, tally: Counter[str], label: str
) -> web.StreamResponse:
    """Send nothing at all, or headers and the first bytes of a body, then nothing, until the
    client gives up (its handler is then cancelled) or `STALL_MAX_SECONDS` pass."""
    if not headers_first:
        await asyncio.sleep(STALL_MAX_SECONDS)
        return web.Response(status=504)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        await response.write(b'{"count": ')
        tally[label] += 10
        await asyncio.sleep(STALL_MAX_SECONDS)
    return response


async def misbehave(
    request: web.Request,
    misbehaviour: Misbehaviour,
    *,
    tally: Counter[str],
    label: str,
    monitor_id: int = 0,
) -> web.StreamResponse:
    """The answer `misbehaviour` gives; `tally[label]` counts the body bytes it sent."""
    kind = misbehaviour.kind
    if kind == "endless":
        return await _stream(request, _endless_chunks(BOMB_PREFIX), tally=tally, label=label)
    if kind == "endless_error":
        start = b'{"detail": "Service Unavailable", "pad": "'
        chunks = _endless_chunks(start)
        return await _stream(request, chunks, tally=tally, label=label, status=503)
    if kind == "gzip_bomb":
        bomb = gzip_bomb()
        tally[label] += len(bomb)
        return web.Response(
            body=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    if kind == "million_runs":
        return await _stream(request, _million_runs(monitor_id), tally=tally, label=label)
    if kind == "dense_page":
        page = dense_page(monitor_id)
        tally[label] += len(page)
        return web.Response(body=page, content_type="application/json")
    if kind == "oversized_pages":
        number = int(request.query.get("page", "1"))
        page = oversized_page(monitor_id, number)
        tally[label] += len(page)
        return web.Response(body=page, content_type="application/json")
    if kind == "retry_after":
        body = {"ok": False, "error": "ratelimited", "detail": "Too Many Requests"}
        return web.json_response(body, status=429, headers={"Retry-After": RETRY_AFTER})
    return await _stall(request, headers_first=kind == "stall_headers", tally=tally, label=label)


def _check_kinds(what: str, misbehaviours: Iterable[Misbehaviour], allowed: frozenset[str]) -> None:
    for misbehaviour in misbehaviours:
        if misbehaviour.kind not in allowed:
            raise ValueError(f"{what} cannot misbehave as {misbehaviour.kind!r}")


@dataclass
class HostileDatafold:
    """The four endpoints the notifier reads. Each monitor of `good` lists one alert run that
    started a minute ago. A monitor of `hostile` misbehaves at its endpoint; when that is its
    monitor or run detail, it lists an `error` run, so that both details are asked for.
    `listing` makes `GET /api/v1/monitors` misbehave."""

    good: tuple[int, ...] = (GOOD_MONITOR,)
    hostile: Mapping[int, Misbehaviour] = field(default_factory=dict)
    listing: Misbehaviour | None = None
    api_key: str = API_KEY
    #: Requests per (endpoint, monitor ID or None).
    requests: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    #: Body bytes sent by each misbehaving endpoint, by label ("runs of monitor 2", ...).
    sent: Counter[str] = field(default_factory=Counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=1))

    def __post_init__(self) -> None:
        _check_kinds("Datafold", self.hostile.values(), DATAFOLD_KINDS)
        if set(self.good) & set(self.hostile):
            raise ValueError("a monitor is either good or hostile")

    @property
    def monitor_ids(self) -> list[int]:
        return [*self.good, *self.hostile]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/monitors", self._monitors)
        app.router.add_get("/api/v1/monitors/{id}", self._monitor)
        app.router.add_get("/api/v1/monitors/{id}/runs", self._runs)
        app.router.add_get("/api/v1/monitors/{id}/runs/{run_id}", self._run)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the base URL."""
        async with serve_app(self.app()) as base_url:
            yield base_url

    def run_of(self, monitor_id: int) -> dict[str, Any]:
        """The one run a monitor lists when its listing behaves."""
        state = "alert" if monitor_id in self.good else "error"
        return {
            "run_id": monitor_id * 1000 + 1,
            "monitor_id": monitor_id,
            "state": state,
            "started_at": _iso(self.started_at),
            "diff_id": None,
        }

    def _summary(self, monitor_id: int) -> dict[str, Any]:
        run = self.run_of(monitor_id)
        return {
            "id": monitor_id,
            "name": f"monitor {monitor_id}",
            "monitor_type": "metric",
            "tags": ["hostile"] if monitor_id in self.hostile else ["good"],
            "owner": None,
            "enabled": True,
            "created_at": _iso(self.started_at - timedelta(days=1)),
            "modified_at": _iso(self.started_at - timedelta(days=1)),
            "last_run": run["started_at"],
            "last_alert": run["started_at"] if run["state"] == "alert" else None,
            "state": run["state"],
        }

    async def _gate(
        self, request: web.Request, endpoint: Endpoint
    ) -> tuple[int | None, web.StreamResponse | None]:
        """The monitor asked about, and the answer when it is not the normal one."""
        raw = request.match_info.get("id")
        monitor_id = int(raw) if raw is not None and raw.isdigit() else None
        self.requests[endpoint, monitor_id] += 1
        if request.headers.get("Authorization") != f"Key {self.api_key}":
            return monitor_id, web.json_response({"detail": "Invalid API key"}, status=401)
        if endpoint == "monitors":
            if self.listing is None:
                return None, None
            answer = await misbehave(request, self.listing, tally=self.sent, label="listing")
            return None, answer
        if monitor_id not in self.monitor_ids:
            return monitor_id, web.json_response({"detail": "Monitor not found"}, status=404)
        assert monitor_id is not None
        hostile = self.hostile.get(monitor_id)
        if hostile is None or hostile.endpoint != endpoint:
            return monitor_id, None
        label = f"{endpoint} of monitor {monitor_id}"
        answer = await misbehave(
            request, hostile, tally=self.sent, label=label, monitor_id=monitor_id
        )
        return monitor_id, answer

    async def _monitors(self, request: web.Request) -> web.StreamResponse:
        _, answer = await self._gate(request, "monitors")
        if answer is not None:
            return answer
        ids = self.monitor_ids
        page = {"count": len(ids), "page": 1, "page_size": len(ids), "total_pages": 1}
        return web.json_response({**page, "monitors": [self._summary(m) for m in ids]})

    async def _monitor(self, request: web.Request) -> web.StreamResponse:
        monitor_id, answer = await self._gate(request, "monitor")
        if answer is not None:
            return answer
        assert monitor_id is not None
        full = {**self._summary(monitor_id), "schedule": {"type": "none"}, "notifications": []}
        return web.json_response(full)

    async def _runs(self, request: web.Request) -> web.StreamResponse:
        monitor_id, answer = await self._gate(request, "runs")
        if answer is not None:
            return answer
        assert monitor_id is not None
        page = {"count": 1, "page": 1, "page_size": 100, "total_pages": 1}
        return web.json_response({**page, "runs": [self.run_of(monitor_id)]})

    async def _run(self, request: web.Request) -> web.StreamResponse:
        monitor_id, answer = await self._gate(request, "run")
        if answer is not None:
            return answer
        assert monitor_id is not None
        run = self.run_of(monitor_id)
        if request.match_info["run_id"] != str(run["run_id"]):
            return web.json_response({"detail": "Run not found"}, status=404)
        return web.json_response({**run, "error": "relation does not exist", "warnings": []})


@dataclass
class HostileSlack:
    """A Slack Web API whose every method misbehaves as `misbehaviour` says."""

    misbehaviour: Misbehaviour
    calls: list[str] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        _check_kinds("Slack", [self.misbehaviour], SLACK_KINDS)

    @property
    def messages(self) -> list[str]:
        """Messages posted: none, whatever it was asked (it never answers a post well)."""
        return []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the base URL (the API is under /api/)."""
        async with serve_app(self.app()) as base_url:
            yield base_url

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(request.match_info["method"])
        await request.read()
        return await misbehave(request, self.misbehaviour, tally=self.sent, label="slack")


@dataclass
class HostileWebhook:
    """A webhook receiver that reads and keeps each body, then misbehaves in answering."""

    misbehaviour: Misbehaviour
    bodies: list[bytes] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)

    PATH = "/hooks/hostile"

    def __post_init__(self) -> None:
        _check_kinds("a webhook", [self.misbehaviour], WEBHOOK_KINDS)

    @property
    def deliveries(self) -> list[bytes]:
        return self.bodies

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.PATH, self._handle)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the webhook URL."""
        async with serve_app(self.app()) as base_url:
            yield base_url + self.PATH

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        return await misbehave(request, self.misbehaviour, tally=self.sent, label="webhook")


# --- the installed CLI, measured --------------------------------------------------------------

#: Starts the command and waits for it: `ru_maxrss` from `wait4` is the command's own peak only
#: when its parent is small. Spawned from the test process itself, a child reports the test
#: process's peak instead whenever that is larger (Linux keeps the pre-exec high-water mark).
_LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
with open("/proc/self/status") as status:
    floor = int(status.read().split("VmHWM:")[1].split()[0])
started = time.monotonic()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.monotonic() - started
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as out:
    json.dump({"code": code, "seconds": seconds, "peak_rss_kib": usage.ru_maxrss,
               "launcher_kib": floor}, out)
"""


@dataclass(frozen=True)
class CliRun:
    """One finished command: exit code, wall time, peak RSS (KiB) and what it wrote."""

    code: int
    seconds: float
    peak_rss_kib: int
    launcher_kib: int
    stdout: str
    stderr: str

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib / 1024

    def events(self) -> list[dict[str, Any]]:
        """Every stderr line parsed as JSON: fails on a loose line (a traceback, say)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


class CliHung(Exception):
    """The command did not end within its time limit; it was killed."""


async def run_cli(*args: str, env: Mapping[str, str], workdir: Path, limit: float) -> CliRun:
    """Run the installed CLI under the launcher (in a thread: the servers share this loop);
    `CliHung` after `limit` seconds, once the launcher and the command are killed."""
    token = uuid.uuid4().hex[:8]
    report = workdir / f"cli-{token}.json"
    out_path, err_path = workdir / f"cli-{token}.out", workdir / f"cli-{token}.err"

    def launch() -> None:
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(report), CLI, *args],
                env=dict(env),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            # The launcher leads its own process group: this ends it and the command only.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise CliHung(f"`{' '.join(args)}` did not end within {limit:g} s") from None

    await asyncio.to_thread(launch)
    measured = json.loads(report.read_text())
    return CliRun(
        code=measured["code"],
        seconds=measured["seconds"],
        peak_rss_kib=measured["peak_rss_kib"],
        launcher_kib=measured["launcher_kib"],
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


#: Events that say something went wrong, and the field of each that names the culprit (if any).
TROUBLE: Mapping[str, str | None] = {
    "poll_failed": "monitor_id",
    "feed_failed": None,
    "discovery_failed": None,
    "monitor_detail_failed": "monitor_id",
    "run_detail_failed": "monitor_id",
    "delivery_failed": "destination",
    "destination_deferred": "destination",
    "once_failed": None,
}


# --- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One `once` against servers of which some misbehave; `budget` is its time limit (s)."""

    name: str
    summary: str
    datafold: Mapping[int, Misbehaviour] = field(default_factory=dict)
    listing: Misbehaviour | None = None
    slack: Misbehaviour | None = None
    webhook: Misbehaviour | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    budget: float = 20.0


@dataclass
class Outcome:
    """What a scenario came to: the run, what each destination got, what the servers sent."""

    scenario: Scenario
    run: CliRun
    slack_messages: int
    slack_calls: int
    webhook_deliveries: int
    sent: Counter[str]
    #: Datafold requests per (endpoint, monitor ID or None).
    requests: Counter[tuple[str, int | None]]
    state: dict[str, Any]

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())


def base_env(
    datafold_url: str, slack_url: str, hook_url: str, monitors: Iterable[int], state: Path
) -> dict[str, str]:
    """Every destination on, the first cycle reporting runs of the last ten minutes."""
    return {
        **cli_env(datafold_url, slack_url, hook_url, monitors, state),
        "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "600",
        "NOTIFIER_REQUEST_TIMEOUT_SECONDS": "10",
    }


async def run_scenario(scenario: Scenario, workdir: Path) -> Outcome:
    """Serve the scenario's Datafold, Slack and webhook, run `once` once, and collect."""
    workdir.mkdir(parents=True, exist_ok=True)
    datafold = HostileDatafold(hostile=scenario.datafold, listing=scenario.listing)
    slack: FakeSlack | HostileSlack = (
        FakeSlack() if scenario.slack is None else HostileSlack(scenario.slack)
    )
    hook: WebhookReceiver | HostileWebhook = (
        WebhookReceiver() if scenario.webhook is None else HostileWebhook(scenario.webhook)
    )
    state = workdir / f"{scenario.name}.state.json"
    async with datafold.serve() as datafold_url, slack.serve() as slack_url:
        async with hook.serve() as hook_url:
            env = base_env(datafold_url, slack_url, hook_url, datafold.monitor_ids, state)
            env.update(scenario.env)
            # Twice the budget: past the budget the test fails; past this it is killed.
            run = await run_cli("once", env=env, workdir=workdir, limit=2 * scenario.budget)
    oversized_page.cache_clear()
    sent = datafold.sent.copy()
    if isinstance(slack, HostileSlack):
        sent.update(slack.sent)
    if isinstance(hook, HostileWebhook):
        sent.update(hook.sent)
    return Outcome(
        scenario=scenario,
        run=run,
        slack_messages=len(slack.messages),
        slack_calls=len(slack.calls),
        webhook_deliveries=len(hook.deliveries),
        sent=sent,
        requests=datafold.requests.copy(),
        state=json.loads(state.read_text()) if state.exists() else {},
    )


HOSTILE = 2
OTHER_HOSTILE = 3
SMALL_LIMIT = 256 * 1024
#: Hostile monitors of `oversized_pages`: as many as the client's requests in flight (16).
MANY = 16

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", "every server behaves"),
    Scenario(
        "endless_body",
        "runs listing: 200 and a body that never ends",
        datafold={HOSTILE: Misbehaviour("endless")},
    ),
    Scenario(
        "endless_body_small_limit",
        "the same, NOTIFIER_MAX_RESPONSE_BYTES=256 KiB",
        datafold={HOSTILE: Misbehaviour("endless")},
        env={"NOTIFIER_MAX_RESPONSE_BYTES": str(SMALL_LIMIT)},
    ),
    Scenario(
        "endless_error_body",
        "runs listing: 503 and a body that never ends",
        datafold={HOSTILE: Misbehaviour("endless_error")},
    ),
    Scenario(
        "gzip_bomb",
        "runs listing: 1 MB of gzip inflating to 1 GiB",
        datafold={HOSTILE: Misbehaviour("gzip_bomb")},
    ),
    Scenario(
        "million_runs",
        f"runs listing: one page of {MILLION_RUNS:,} runs, streamed",
        datafold={HOSTILE: Misbehaviour("million_runs")},
    ),
    Scenario(
        "dense_page",
        "runs listing: as many runs as fit in 4 MiB (~130,000)",
        datafold={HOSTILE: Misbehaviour("dense_page")},
    ),
    Scenario(
        "retry_after",
        f"runs listing: 429, Retry-After {RETRY_AFTER}",
        datafold={HOSTILE: Misbehaviour("retry_after")},
    ),
    Scenario(
        "stall",
        "runs listings: headers then nothing (2), nothing at all (3); 1 s timeout",
        datafold={
            HOSTILE: Misbehaviour("stall_headers"),
            OTHER_HOSTILE: Misbehaviour("stall_silent"),
        },
        # Four attempts of 1 s each, and the backoff between them (at most 3.5 s).
        env={"NOTIFIER_REQUEST_TIMEOUT_SECONDS": "1"},
        budget=15.0,
    ),
    Scenario(
        "oversized_pages",
        f"{MANY} monitors each list 20,000 runs in 2 pages of 10,000 (asked: 100)",
        datafold={HOSTILE + i: Misbehaviour("oversized_pages") for i in range(MANY)},
        budget=30.0,
    ),
    Scenario(
        "hostile_details",
        "error runs: monitor detail endless (2), run detail a gzip bomb (3)",
        datafold={
            HOSTILE: Misbehaviour("endless", "monitor"),
            OTHER_HOSTILE: Misbehaviour("gzip_bomb", "run"),
        },
    ),
    Scenario(
        "hostile_feed",
        "feed mode: the monitors listing is a gzip bomb",
        listing=Misbehaviour("gzip_bomb"),
        env={"NOTIFIER_POLL_MODE": "feed"},
    ),
    Scenario(
        "slack_endless",
        "Slack answers chat.postMessage with a body that never ends",
        slack=Misbehaviour("endless"),
    ),
    Scenario(
        "slack_gzip_bomb",
        "Slack answers with a gzip bomb",
        slack=Misbehaviour("gzip_bomb"),
    ),
    Scenario(
        "slack_retry_after",
        f"Slack answers 429, Retry-After {RETRY_AFTER}",
        slack=Misbehaviour("retry_after"),
    ),
    Scenario(
        "slack_stall",
        "Slack sends headers, then nothing; 1 s timeout",
        slack=Misbehaviour("stall_headers"),
        env={"NOTIFIER_REQUEST_TIMEOUT_SECONDS": "1"},
    ),
    Scenario(
        "webhook_endless",
        "the webhook answers 200 and a body that never ends",
        webhook=Misbehaviour("endless"),
    ),
    Scenario(
        "webhook_stall",
        "the webhook never answers; 1 s timeout",
        webhook=Misbehaviour("stall_silent"),
        env={"NOTIFIER_REQUEST_TIMEOUT_SECONDS": "1"},
    ),
)
BY_NAME: dict[str, Scenario] = {scenario.name: scenario for scenario in SCENARIOS}
