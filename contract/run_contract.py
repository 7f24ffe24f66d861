"""Contract check: the notifier against Stoplight Prism mocking the published Datafold spec.

`make contract` runs this with the project's virtual environment. It starts `prism mock -d`
(random schema-valid answers; every request validated against the spec) behind a recording relay,
and a local webhook receiver; then runs `datafold-notifier check`, many rounds of
`datafold-notifier once` on one state file with varying page sizes, and the client's calls that
the CLI does not make (the monitor listing, `end_time`). It fails when:

- Prism found a violation in a request (HTTP 422 with an `sl-violations` header, 401 for a missing
  `Authorization`), or answered anything but 200; the relay also requires `Authorization: Key
  <key>` and only query parameters the spec names, which Prism does not check;
- a CLI run hung, printed a traceback, a line on stderr that is not a JSON event, an `exception`
  field or a `crashed` event, or exited other than 0, or 1 with every monitor's answer malformed;
- Prism's own log disagrees with what the relay saw.

Answers the client rejects as malformed are expected (random data is absurd) and only counted.
Rounds alternate two modes: "raw" passes Prism's answer through; "pinned" sets the monitor and run
IDs in an answer to the ones asked about (still schema-valid), because a random run almost never
belongs to the monitor polled, so raw answers alone never reach detection or delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import difflib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

CONTRACT_DIR = Path(__file__).resolve().parent
REPO = CONTRACT_DIR.parent
SPEC_NAME = "datafold-monitors-openapi.yml"
VENDORED_SPEC = CONTRACT_DIR / SPEC_NAME
SHARED_SPEC = REPO.parent / "shared" / "reference" / SPEC_NAME
PRISM_BIN = CONTRACT_DIR / "node_modules" / ".bin" / "prism"
PRISM_VERSION = "5.14.2"
OUT_DIR = CONTRACT_DIR / ".out"

API_KEY = "contract-fake-key-3f9a1c"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"contract-check-signing-key-32b!!").decode()
DEFAULT_MONITORS = (1, 42, 7331, 2147483647)
PAGE_SIZES = (1, 2, 5, 10, 20, 100, 1000)
CLI_TIMEOUT = 120.0

#: Query parameters the spec names per operation; Prism ignores unknown ones, so the relay checks.
ALLOWED_QUERY: dict[str, frozenset[str]] = {
    "list_monitors": frozenset({"page", "page_size", "order_by", "sort_order", "tags"}),
    "get_monitor": frozenset(),
    "list_runs": frozenset({"page", "page_size", "start_time", "end_time"}),
    "get_run": frozenset(),
}
_ROUTES = (
    ("list_monitors", re.compile(r"/api/v1/monitors")),
    ("get_monitor", re.compile(r"/api/v1/monitors/(?P<id>[^/]+)")),
    ("list_runs", re.compile(r"/api/v1/monitors/(?P<id>[^/]+)/runs")),
    ("get_run", re.compile(r"/api/v1/monitors/(?P<id>[^/]+)/runs/(?P<run_id>[^/]+)")),
)
_NOT_FORWARDED = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
)
#: Phases whose requests are the harness's own (readiness probe, deliberately invalid canaries).
_HARNESS_PHASES = frozenset({"probe", "canary"})
#: Events in which the client reports an answer it could not use.
_REJECTION_EVENTS = frozenset(
    {"poll_failed", "run_fetch_failed", "monitor_detail_failed", "run_detail_failed"}
)


class ContractError(Exception):
    """The harness itself could not run (Prism missing, spec stale, canary not flagged)."""


@dataclass
class Exchange:
    """One request the relay forwarded to Prism, and what Prism made of it."""

    phase: str
    mode: str
    method: str
    route: str
    target: str
    status: int | None = None
    violations: list[Any] = field(default_factory=list)
    problem: str | None = None
    relay_problems: list[str] = field(default_factory=list)
    pinned: bool = False

    @property
    def validated(self) -> bool:
        return self.status == 200 and not self.violations and not self.relay_problems


def classify(path: str) -> tuple[str, dict[str, str]]:
    for name, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return name, match.groupdict()
    return "other", {}


def pin_ids(route: str, ids: dict[str, str], payload: bytes) -> bytes | None:
    """The answer with its monitor/run IDs set to the ones asked about; None if not applicable."""
    try:
        doc = json.loads(payload)
        monitor_id = int(ids["id"])
        run_id = int(ids["run_id"]) if "run_id" in ids else None
    except (ValueError, KeyError):
        return None
    if not isinstance(doc, dict):
        return None
    if route == "list_runs" and isinstance(doc.get("runs"), list):
        for run in doc["runs"]:
            if isinstance(run, dict):
                run["monitor_id"] = monitor_id
    elif route == "get_monitor":
        doc["id"] = monitor_id
    elif route == "get_run" and run_id is not None:
        doc["monitor_id"], doc["run_id"] = monitor_id, run_id
    else:
        return None
    return json.dumps(doc).encode()


class Relay:
    """Forwards every request to Prism unchanged and records Prism's verdict on it."""

    def __init__(self) -> None:
        self.upstream = ""
        self.phase = "setup"
        self.mode = "raw"
        self.exchanges: list[Exchange] = []
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route, ids = classify(request.path)
        target = request.raw_path
        exchange = Exchange(self.phase, self.mode, request.method, route, target)
        self.exchanges.append(exchange)
        if self.phase not in _HARNESS_PHASES:
            exchange.relay_problems = own_checks(request, route)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                URL(self.upstream + target, encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                exchange.status = answer.status
                content_type = answer.headers.get("Content-Type", "application/octet-stream")
                violations = answer.headers.get("sl-violations")
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.relay_problems.append(f"Prism unreachable: {type(exc).__name__}")
            return web.Response(status=502, text="relay: Prism unreachable")
        if violations:
            try:
                parsed = json.loads(violations)
            except ValueError:
                parsed = [violations]
            exchange.violations = parsed if isinstance(parsed, list) else [parsed]
        if "problem+json" in content_type:
            with contextlib.suppress(ValueError, AttributeError):
                exchange.problem = str(json.loads(payload).get("type"))
        if self.mode == "pinned" and exchange.status == 200:
            pinned = pin_ids(route, ids, payload)
            if pinned is not None:
                payload, exchange.pinned = pinned, True
        out = {"Content-Type": content_type}
        if violations:
            out["sl-violations"] = violations
        return web.Response(status=exchange.status, body=payload, headers=out)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        # Only the notifier's own headers reach Prism, none that aiohttp would add.
        auto = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
        async with aiohttp.ClientSession(
            skip_auto_headers=auto, timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            self._session = session
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self.handle)
            async with _served(app) as url:
                yield url


def own_checks(request: web.Request, route: str) -> list[str]:
    """What Prism does not check: the key's `Key ` format, unknown or repeated query parameters."""
    problems = []
    if request.method != "GET":
        problems.append(f"method {request.method}: the notifier only reads")
    if request.headers.get("Authorization") != f"Key {API_KEY}":
        problems.append("Authorization is not 'Key <DATAFOLD_API_KEY>'")
    if route == "other":
        problems.append("not an operation of the spec")
    else:
        names = list(request.query.keys())
        unknown = sorted(set(names) - ALLOWED_QUERY[route])
        if unknown:
            problems.append(f"query parameters the spec does not name: {', '.join(unknown)}")
        repeated = sorted(n for n, c in Counter(names).items() if c > 1)
        if repeated:
            problems.append(f"repeated query parameters: {', '.join(repeated)}")
    return problems


class WebhookReceiver:
    """Accepts every delivery and HEAD probe; checks the body is JSON and the signature verifies."""

    def __init__(self) -> None:
        self.received = 0
        self.problems: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=200)
        body = await request.read()
        self.received += 1
        try:
            json.loads(body)
        except ValueError:
            self.problems.append("webhook body is not JSON")
        try:
            from standardwebhooks import Webhook

            Webhook(WEBHOOK_SECRET).verify(body, dict(request.headers))
        except Exception as exc:
            self.problems.append(f"webhook signature does not verify: {type(exc).__name__}: {exc}")
        return web.Response(status=200, text="ok")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        async with _served(app) as url:
            yield url + "/hooks/datafold"


@contextlib.asynccontextmanager
async def _served(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_spec(shared: Path) -> str:
    """Fail if the vendored spec differs from the shared reference copy beside the repo."""
    if not VENDORED_SPEC.is_file():
        raise ContractError(f"{VENDORED_SPEC} is missing: copy the published spec there")
    if not shared.is_file():
        return f"vendored copy only ({shared} is absent)"
    ours, theirs = VENDORED_SPEC.read_text(), shared.read_text()
    if ours != theirs:
        diff = difflib.unified_diff(
            theirs.splitlines(), ours.splitlines(), str(shared), str(VENDORED_SPEC), lineterm=""
        )
        excerpt = "\n".join(list(diff)[:40])
        raise ContractError(
            f"the vendored spec differs from the published one; update it with\n"
            f"  cp {shared} {VENDORED_SPEC}\n{excerpt}"
        )
    return f"vendored copy, identical to {shared}"


def tool_versions() -> tuple[str, str]:
    if not PRISM_BIN.exists():
        raise ContractError(f"{PRISM_BIN} is missing: run `make contract` (it runs npm ci)")
    node = shutil.which("node")
    if node is None:
        raise ContractError("node is not on PATH: Prism needs Node.js >= 18.20.1")
    node_version = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    prism_version = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(PRISM_BIN), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if prism_version != PRISM_VERSION:
        raise ContractError(
            f"Prism {prism_version} is installed, the contract pins {PRISM_VERSION}: "
            "run `npm ci` in contract/"
        )
    return node_version, prism_version


class Prism:
    """`prism mock -d` as a child process in its own session, its log written to a file."""

    def __init__(self, spec: Path, log_path: Path) -> None:
        self.spec, self.log_path = spec, log_path
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        for _attempt in range(3):
            port = free_port()
            with self.log_path.open("wb") as log:
                self.process = await asyncio.create_subprocess_exec(
                    str(PRISM_BIN),
                    # No --seed: with one, Prism gives the same answer to every call of an
                    # operation, and detection would see nothing change.
                    *("mock", "--dynamic"),
                    *("--host", "127.0.0.1", "--port", str(port), str(self.spec)),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = self.log_text()
                if "Prism is listening on" in text:
                    self.url = f"http://127.0.0.1:{port}"
                    return self.url
                if self.process.returncode is not None:
                    break
                await asyncio.sleep(0.2)
            else:
                await self.stop()
                raise ContractError(f"Prism did not start within 60 s; see {self.log_path}")
            if "EADDRINUSE" not in self.log_text():
                tail = "\n".join(self.log_text().splitlines()[-15:])
                raise ContractError(f"Prism exited with {self.process.returncode}:\n{tail}")
        raise ContractError("Prism found no free port in 3 attempts")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@dataclass
class CliRun:
    """One run of the installed CLI and what its output says."""

    label: str
    command: str
    mode: str
    page_size: int
    code: int | None
    seconds: float
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_events(run: CliRun) -> None:
    """Every stderr line must be one JSON event; tracebacks and crash events are failures."""
    loose: list[str] = []
    for line in run.stderr.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            loose.append(line)
            continue
        if not isinstance(event, dict) or "event" not in event:
            loose.append(line)
            continue
        run.events.append(event)
    if loose:
        run.problems.append(
            f"{len(loose)} stderr line(s) are not JSON events, first {loose[0][:200]!r}, "
            f"last {loose[-1][:200]!r}"
        )
    if "Traceback (most recent call last)" in run.stderr + run.stdout:
        run.problems.append("printed a traceback")
    for event in run.events:
        name = event["event"]
        if "exception" in event or name == "crashed" or event.get("kind") == "internal":
            run.problems.append(f"crash: event {name!r} {describe_exception(event)}")
        elif event.get("level") in ("error", "critical") and name != "once_failed":
            run.problems.append(f"error event {name!r}: {_brief(event)}")


def describe_exception(event: dict[str, Any]) -> str:
    """The exception and the innermost frame in the project's code, as file:line."""
    chain = event.get("exception")
    if not isinstance(chain, list) or not chain:
        return _brief(event)
    last = chain[-1] if isinstance(chain[-1], dict) else {}
    frames = [f for f in last.get("frames", []) if isinstance(f, dict)]
    ours = [f for f in frames if "/notifier/" in str(f.get("filename", ""))] or frames
    where = ""
    if ours:
        frame = ours[-1]
        filename = str(frame.get("filename", "?"))
        if str(REPO) in filename:
            filename = str(Path(filename).relative_to(REPO))
        where = f" at {filename}:{frame.get('lineno')} in {frame.get('name')}"
    return f"{last.get('exc_type')}: {last.get('exc_value')}{where}"


def _brief(event: dict[str, Any]) -> str:
    skip = {"event", "level", "logger", "timestamp", "exception"}
    return json.dumps({k: v for k, v in event.items() if k not in skip}, default=str)[:300]


def judge_once(run: CliRun, monitors: Sequence[int]) -> None:
    """Exit 0, or 1 with `once_failed` when every monitor's answer was malformed."""
    failed_events = [e for e in run.events if e["event"] == "once_failed"]
    if run.code == 0:
        if failed_events:
            run.problems.append("exit 0 but logged once_failed")
        return
    if run.code != 1:
        tail = run.stderr.strip().splitlines()[-3:]
        run.problems.append(f"exit {run.code} (expected 0 or 1): {' | '.join(tail)[:400]}")
        return
    if not failed_events:
        run.problems.append("exit 1 without a once_failed event")
        return
    kinds = {e.get("monitor_id"): e.get("kind") for e in run.events if e["event"] == "poll_failed"}
    unexplained = [m for m in monitors if kinds.get(m) != "malformed"]
    if unexplained:
        run.problems.append(
            "exit 1 although not every monitor's answer was malformed: "
            + ", ".join(f"monitor {m}: {kinds.get(m, 'polled')}" for m in unexplained)
        )


_CHECK_LINE = re.compile(r"(ok  |FAIL|\?\?  ) [^:]+: .*")
_CHECK_END = re.compile(r"all \d+ checks passed|\d+ passed, \d+ failed(, \d+ unknown)?")


def judge_check(run: CliRun) -> None:
    """One line per check and a closing line; exit 1 exactly when a line says FAIL or ?? (a
    check that could not be known).

    With pinned answers every check must pass; with raw ones a monitor may fail, as its answer
    describes another monitor, and then its route is unknown.
    """
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    if not lines or not _CHECK_END.fullmatch(lines[-1]):
        run.problems.append(f"check printed no closing line: {run.stdout[-300:]!r}")
        return
    odd = [line for line in lines[:-1] if not _CHECK_LINE.fullmatch(line)]
    if odd:
        run.problems.append(f"check printed unexpected lines: {odd[:3]}")
    failures = [line for line in lines if line.startswith("FAIL")]
    unknown = [line for line in lines if line.startswith("??")]
    if run.code not in (0, 1) or (run.code == 1) != bool(failures or unknown):
        run.problems.append(
            f"check exited {run.code} with {len(failures)} FAIL and {len(unknown)} ?? line(s)"
        )
    if run.mode == "pinned" and (failures or unknown):
        run.problems.append(
            f"check failed against schema-valid answers: {(failures + unknown)[:3]}"
        )
    for line in unknown:
        if run.mode == "raw" and not re.match(
            r"\?\?   route monitor \d+: .*unknown: the monitor's details could not be read \("
            r"monitor \d+: answer describes monitor",
            line,
        ):
            run.problems.append(f"unexpected unknown check: {line}")
    for line in failures:
        if run.mode == "raw" and not re.match(
            r"FAIL monitor \d+: .*answer describes monitor", line
        ):
            run.problems.append(f"unexpected check failure: {line}")


def rejection_reason(event: dict[str, Any]) -> str:
    """A client rejection as `event/kind: message` with IDs and numbers folded away."""
    text = str(event.get("error", ""))
    text = re.sub(r"^(run -?\d+ of monitor -?\d+|monitor -?\d+|monitor list): ", "", text)
    text = re.sub(r"-?\d+", "N", text)
    kind = event.get("kind")
    return f"{event['event']}{'/' + str(kind) if kind else ''}: {text}"


class Contract:
    """Runs every phase against one Prism and collects what failed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.monitors: list[int] = args.monitors
        self.relay = Relay()
        self.webhooks = WebhookReceiver()
        self.runs: list[CliRun] = []
        self.client_calls: Counter[str] = Counter()
        self.client_problems: list[str] = []
        self.harness_problems: list[str] = []
        self.relay_url = ""
        self.webhook_url = ""
        self.state_file = OUT_DIR / "notifier.state.json"
        self.workdir = OUT_DIR / "cwd"

    async def run(self) -> None:
        async with self.relay.serving() as relay_url, self.webhooks.serving() as webhook_url:
            self.relay_url, self.webhook_url = relay_url, webhook_url
            prism = Prism(VENDORED_SPEC, OUT_DIR / "prism.log")
            self.relay.upstream = await prism.start()
            try:
                await self.probe()
                await self.canaries()
                await self.client_phase()
                await self.cli_phase()
            finally:
                await prism.stop()
            self.cross_check(prism.log_text())

    async def probe(self) -> None:
        """Wait until Prism answers a valid request through the relay."""
        self.relay.phase = "probe"
        headers = {"Authorization": f"Key {API_KEY}"}
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(self.relay_url + "/api/v1/monitors/1", headers=headers) as r:
                    if r.status == 200:
                        return
                if time.monotonic() > deadline:
                    raise ContractError(f"Prism does not answer 200 (last: HTTP {r.status})")
                await asyncio.sleep(0.2)

    async def canaries(self) -> None:
        """Prove that detection works: Prism must flag a bad parameter and a missing key."""
        self.relay.phase = "canary"
        async with aiohttp.ClientSession() as session:
            url = self.relay_url + "/api/v1/monitors/1/runs?start_time=yesterday"
            async with session.get(url, headers={"Authorization": f"Key {API_KEY}"}) as r:
                await r.read()
            bad_param = self.relay.exchanges[-1]
            async with session.get(self.relay_url + "/api/v1/monitors/1") as r:
                await r.read()
            no_key = self.relay.exchanges[-1]
        if bad_param.status != 422 or not bad_param.violations:
            raise ContractError(
                "Prism did not flag an invalid start_time (HTTP "
                f"{bad_param.status}, violations {bad_param.violations}): request validation is "
                "not working, so a pass would mean nothing"
            )
        if no_key.status != 401 or not str(no_key.problem).endswith("#UNAUTHORIZED"):
            raise ContractError(
                f"Prism did not refuse a request without Authorization (HTTP {no_key.status})"
            )

    async def client_phase(self) -> None:
        """The client's calls the CLI does not make: the monitor listing (page sizes, tags),
        runs with `end_time`, one monitor and one run, in both modes."""
        import structlog

        try:
            from notifier.fetch.datafold import DatafoldClient
            from notifier.fetch.source import DatafoldError
        except ImportError as exc:
            self.client_problems.append(f"cannot import the client: {type(exc).__name__}: {exc}")
            return
        # The client's debug events would flood this report; its outcomes are counted instead.
        structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
        now = datetime.now(UTC)
        for mode in ("raw", "pinned"):
            self.relay.phase, self.relay.mode = "client", mode
            for page_size in (1, 20, 1000):
                async with aiohttp.ClientSession() as session:
                    client = DatafoldClient(
                        session, self.relay_url, API_KEY, page_size=page_size, max_attempts=1
                    )
                    monitor = self.monitors[0]
                    # The listing may take its own page size (it asks for large pages).
                    listing = inspect.signature(client.list_monitors).parameters
                    sized: dict[str, Any] = (
                        {"page_size": page_size} if "page_size" in listing else {}
                    )
                    calls = [
                        ("list_monitors", client.list_monitors(**sized)),
                        ("list_monitors", client.list_monitors(["prod"], **sized)),
                        ("list_monitors", client.list_monitors(["prod", "team:data eng"], **sized)),
                        ("list_runs", client.list_runs(monitor, now - timedelta(days=1), now)),
                        ("get_monitor", client.get_monitor(monitor)),
                        ("get_run", client.get_run(monitor, 987654)),
                    ]
                    for name, call in calls:
                        try:
                            await call
                            self.client_calls[f"{name}: ok"] += 1
                        except DatafoldError as exc:
                            reason = rejection_reason({"event": name, "error": str(exc)})
                            self.client_calls[f"{reason} ({exc.kind})"] += 1
                            if exc.kind != "malformed":
                                self.client_problems.append(f"{name} ({mode}): {exc}")
                        except Exception as exc:
                            self.client_problems.append(
                                f"{name} ({mode}, page_size {page_size}) crashed: "
                                f"{type(exc).__name__}: {exc}"
                            )

    async def cli_phase(self) -> None:
        """`check` in both modes, then the rounds of `once`, then `check` again."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for mode in ("raw", "pinned"):
            await self.cli("check", mode, PAGE_SIZES[0], f"check-first-{mode}")
        for number in range(1, self.args.rounds + 1):
            mode = "pinned" if number % 2 else "raw"
            page_size = PAGE_SIZES[(number - 1) % len(PAGE_SIZES)]
            await self.cli("once", mode, page_size, f"once-{number:03d}")
        for mode in ("raw", "pinned"):
            await self.cli("check", mode, PAGE_SIZES[-1], f"check-last-{mode}")
        try:
            json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            self.harness_problems.append(f"state file unreadable after the rounds: {exc}")

    async def cli(self, command: str, mode: str, page_size: int, label: str) -> None:
        self.relay.phase, self.relay.mode = label, mode
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATAFOLD_", "NOTIFIER_", "SLACK_"))
        }
        env.update(
            DATAFOLD_API_KEY=API_KEY,
            DATAFOLD_HOST=self.relay_url,
            NOTIFIER_MONITOR_IDS=",".join(str(m) for m in self.monitors),
            NOTIFIER_WEBHOOK_URLS=self.webhook_url,
            NOTIFIER_WEBHOOK_SECRET=WEBHOOK_SECRET,
            NOTIFIER_STATE_FILE=str(self.state_file),
            NOTIFIER_PAGE_SIZE=str(page_size),
            NOTIFIER_LOG_FORMAT="json",
            NOTIFIER_LOG_LEVEL="debug",
        )
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            self.args.cli,
            command,
            env=env,
            cwd=self.workdir,  # no stray .env file is read
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so a hung run is killed with any child it started
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = await process.communicate()
            code: int | None = None
        else:
            code = process.returncode
        run = CliRun(
            label,
            command,
            mode,
            page_size,
            code,
            time.monotonic() - started,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
        (OUT_DIR / f"{label}.stderr.jsonl").write_text(run.stderr)
        (OUT_DIR / f"{label}.stdout.txt").write_text(run.stdout)
        parse_events(run)
        if code is None:
            run.problems.append(f"hung: killed after {CLI_TIMEOUT:g} s")
        elif command == "once":
            judge_once(run, self.monitors)
        else:
            judge_check(run)
        self.runs.append(run)

    def cross_check(self, log: str) -> None:
        """Prism's own log must count the same requests and verdicts as the relay."""
        answered = [e for e in self.relay.exchanges if e.status is not None]
        refused = [e for e in answered if e.violations or e.status == 401]
        seen = {
            "received": log.count("Request received"),
            "passed": log.count("The request passed the validation rules"),
            "failed": log.count("Request did not pass the validation rules"),
        }
        expected = {
            "received": len(answered),
            "passed": len(answered) - len(refused),
            "failed": len(refused),
        }
        if seen != expected:
            self.harness_problems.append(
                f"Prism's log ({seen}) disagrees with the relay ({expected}): see prism.log"
            )

    def report(self, seconds: float, versions: tuple[str, str], spec_note: str) -> list[str]:
        """Print the summary; return every failure."""
        client = [e for e in self.relay.exchanges if e.phase not in _HARNESS_PHASES]
        bad = [e for e in client if not e.validated]
        once = [r for r in self.runs if r.command == "once"]
        checks = [r for r in self.runs if r.command == "check"]
        rejections: Counter[str] = Counter()
        events: Counter[str] = Counter()
        for run in self.runs:
            for event in run.events:
                events[event["event"]] += 1
                if event["event"] in _REJECTION_EVENTS:
                    rejections[rejection_reason(event)] += 1
        routes = Counter(e.route for e in client)
        page_sizes = Counter(
            q.split("=", 1)[1]
            for e in client
            for q in URL(e.target, encoded=True).raw_query_string.split("&")
            if q.startswith("page_size=")
        )
        print(f"\ncontract: Prism {versions[1]} (prism mock -d) on Node {versions[0]}")
        print(f"  spec: {spec_note}")
        print(f"  monitors: {', '.join(map(str, self.monitors))}")
        print(
            f"  requests validated by Prism: {len(client) - len(bad)} of {len(client)} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(routes.items()))}); "
            f"answers pinned: {sum(e.pinned for e in client)}"
        )
        print(f"  page_size values sent: {', '.join(sorted(page_sizes, key=int))}")
        print(
            f"  once rounds: {len(once)} (exit codes {dict(Counter(r.code for r in once))}); "
            f"check runs: {len(checks)} (exit codes {[r.code for r in checks]})"
        )
        print(
            f"  detected {events['run_detected']} run(s), {events['notification_sent']} sent, "
            f"webhooks received {self.webhooks.received}; "
            f"foreign runs dropped {events['datafold.foreign_run_dropped']}"
        )
        print(f"  answers the CLI rejected: {sum(rejections.values())}")
        for reason, count in rejections.most_common():
            print(f"    {count:5d}  {reason}")
        print("  direct client calls:")
        for outcome, count in sorted(self.client_calls.items()):
            print(f"    {count:5d}  {outcome}")
        print(f"  time: {seconds:.1f} s; outputs in {OUT_DIR.relative_to(REPO)}/")

        failures = list(self.harness_problems) + list(self.client_problems)
        failures += self.webhooks.problems[:5]
        for exchange in bad[:10]:
            what = [*exchange.relay_problems]
            what += [
                f"Prism: {v.get('message', v) if isinstance(v, dict) else v}"
                for v in exchange.violations
            ]
            if exchange.status != 200 and not exchange.violations:
                what.append(f"HTTP {exchange.status} {exchange.problem or ''}".strip())
            failures.append(
                f"{exchange.phase}: {exchange.method} {exchange.target}: {'; '.join(what)}"
            )
        if len(bad) > 10:
            failures.append(f"... and {len(bad) - 10} more invalid requests")
        for run in self.runs:
            failures += [
                f"{run.label} ({run.mode}, page_size {run.page_size}): {p}" for p in run.problems
            ]
        if not checks:
            failures.append("check did not run")
        return failures


def save_exchanges(exchanges: Sequence[Exchange]) -> None:
    with (OUT_DIR / "exchanges.jsonl").open("w") as out:
        for exchange in exchanges:
            out.write(json.dumps(asdict(exchange)) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("CONTRACT_ROUNDS", 40)))
    parser.add_argument(
        "--monitors",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=list(DEFAULT_MONITORS),
        help="comma-separated monitor IDs",
    )
    parser.add_argument(
        "--cli",
        default=str(Path(sys.executable).parent / "datafold-notifier"),
        help="the installed CLI (default: beside this Python)",
    )
    parser.add_argument("--shared-spec", type=Path, default=SHARED_SPEC)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        spec_note = check_spec(args.shared_spec)
        versions = tool_versions()
        if not Path(args.cli).exists():
            raise ContractError(f"{args.cli} is missing: run `make install`")
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        OUT_DIR.mkdir()
        contract = Contract(args)
        asyncio.run(contract.run())
    except ContractError as exc:
        print(f"contract: cannot run: {exc}", file=sys.stderr)
        return 2
    save_exchanges(contract.relay.exchanges)
    failures = contract.report(time.monotonic() - started, versions, spec_note)
    if failures:
        print(f"\ncontract: FAILED ({len(failures)} problem(s)):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("\ncontract: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
