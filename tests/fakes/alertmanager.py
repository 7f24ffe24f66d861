"""A real Prometheus Alertmanager for the tests (Debian's `prometheus-alertmanager`, installed by
tools/ensure-alertmanager.sh): a private one per test, on 127.0.0.1 with no clustering, routing
every alert to a webhook receiver the test holds, so what Alertmanager sends on can be seen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.postgres import _free_port, unavailable

BINARY = "prometheus-alertmanager"
#: Short groupings, so a receiver hears of a change within a second.
CONFIG = """
route:
  receiver: datafold
  group_by: ["monitor_id"]
  group_wait: 100ms
  group_interval: 300ms
  repeat_interval: 1h
receivers:
  - name: datafold
    webhook_configs:
      - url: "{receiver}"
        send_resolved: true
"""


def find_binary() -> str:
    """The Alertmanager server, or skip (fail under CI) when it is not installed."""
    path = shutil.which(BINARY) or (
        f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None
    )
    if path is None:
        unavailable(f"{BINARY} not found: run tools/ensure-alertmanager.sh")
    assert path is not None
    return path


@dataclass
class Receiver:
    """The webhook receiver Alertmanager notifies: every message it posted, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.messages.append(await request.json())
        self.arrived.set()
        return web.Response(status=200)

    async def wait_for(self, status: str, *, within: float = 15.0) -> dict[str, Any]:
        """The first message with `status` ("firing", "resolved"), waiting for it."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for message in self.messages:
                if message["status"] == status:
                    return message
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {status} message reached the receiver: {self.messages}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)


@dataclass
class Alertmanager:
    """A running Alertmanager: its URL, its receiver, and its API."""

    url: str
    receiver: Receiver
    session: aiohttp.ClientSession

    async def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts` (active, silenced and inhibited alerts by default)."""
        async with self.session.get(f"{self.url}/api/v2/alerts", params=filters) as response:
            assert response.status == 200, await response.text()
            alerts: list[dict[str, Any]] = await response.json()
            return alerts

    async def silence(self, name: str, value: str, *, minutes: int = 30) -> str:
        """`POST /api/v2/silences` for alerts whose label `name` is `value`; its ID."""
        now = time.time()
        silence = {
            "matchers": [{"name": name, "value": value, "isRegex": False, "isEqual": True}],
            "startsAt": _rfc3339(now - 1),
            "endsAt": _rfc3339(now + minutes * 60),
            "createdBy": "tests",
            "comment": "silenced by a test",
        }
        async with self.session.post(f"{self.url}/api/v2/silences", json=silence) as response:
            assert response.status == 200, await response.text()
            silence_id: str = (await response.json())["silenceID"]
            return silence_id

    async def wait_alerts(
        self, predicate: Any, *, within: float = 15.0, **filters: str
    ) -> list[dict[str, Any]]:
        """The alerts once `predicate(alerts)` holds (Alertmanager applies silences and
        resolutions asynchronously)."""
        deadline = time.monotonic() + within
        while True:
            alerts = await self.alerts(**filters)
            if predicate(alerts):
                return alerts
            if time.monotonic() > deadline:
                raise AssertionError(f"alerts never matched: {json.dumps(alerts)[:2000]}")
            await asyncio.sleep(0.1)


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@contextlib.asynccontextmanager
async def running_alertmanager() -> AsyncIterator[Alertmanager]:
    """A private Alertmanager with its receiver, stopped and removed afterwards."""
    binary = find_binary()
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/alertmanager", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver_port = runner.addresses[0][1]
    workdir = Path(tempfile.mkdtemp(prefix="alertmanager-"))
    config = workdir / "alertmanager.yml"
    config.write_text(CONFIG.format(receiver=f"http://127.0.0.1:{receiver_port}/alertmanager"))
    port = _free_port()
    log = (workdir / "alertmanager.log").open("wb")
    process = _start(binary, config, workdir, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(url, session, process, workdir)
            yield Alertmanager(url=url, receiver=receiver, session=session)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        await runner.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(
    binary: str, config: Path, workdir: Path, port: int, log: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _wait_ready(
    url: str, session: aiohttp.ClientSession, process: subprocess.Popen[bytes], workdir: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "alertmanager.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"Alertmanager exited with {process.returncode}: {log}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/-/ready") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("Alertmanager was not ready within 30 s")
