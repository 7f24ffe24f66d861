"""`run` as an operator sees it: /healthz, /metrics, systemd notify, SIGTERM, JSON logs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.cli import World, cli
from tests.fakes.scrape import sample
from tests.fakes.subprocess_daemon import Daemon


async def test_health_metrics_and_graceful_stop(world: World) -> None:
    env = {**world.env, "NOTIFIER_HEALTH_PORT": "0", "NOTIFIER_POLL_INTERVAL_SECONDS": "1"}
    daemon = await Daemon.start(env)
    try:
        await daemon.wait_for(lambda: daemon.event("status_listening") is not None)
        listening = daemon.event("status_listening")
        assert listening is not None and listening["host"] == "127.0.0.1"
        base = f"http://127.0.0.1:{listening['port']}"
        async with aiohttp.ClientSession() as http:

            async def healthz() -> tuple[int, dict[str, Any]]:
                async with http.get(f"{base}/healthz") as response:
                    return response.status, await response.json()

            async def metrics() -> str:
                async with http.get(f"{base}/metrics") as response:
                    assert response.status == 200
                    return await response.text()

            deadline = time.monotonic() + 15
            status, body = await healthz()
            while body["status"] != "running":
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.1)
                status, body = await healthz()
            assert status == 200 and body["monitors_polled"] == 2

            world.sim.add_run(1, state="alert", started_at=world.now())
            await daemon.wait_for(lambda: len(world.slack.messages) == 1)
            await daemon.wait_for(lambda: daemon.event("notification_sent") is not None)
            await asyncio.sleep(1.2)  # the cycle that sent it has been recorded
            text = await metrics()
            assert sample(text, "datafold_notifier_poll_cycles_total") >= 2
            sent = sample(text, "datafold_notifier_notifications_sent_total", destination="slack")
            assert sent == 1
            assert sample(text, "datafold_notifier_events_detected_total", state="alert") == 1
            assert sample(text, "datafold_notifier_last_successful_poll_timestamp_seconds") > 0
            assert sample(text, "datafold_notifier_cycle_duration_seconds_count") >= 2

            # break Datafold: every request is refused from now on
            world.sim.inject_fault(endpoint="runs", status=401, times=10_000)
            deadline = time.monotonic() + 20
            status, body = await healthz()
            while status != 503:
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.2)
                status, body = await healthz()
            assert "every poll failed" in body["reason"] and "refused" in body["reason"]
            text = await metrics()
            assert sample(text, "datafold_notifier_poll_errors_total", kind="refused") >= 6
    finally:
        started = time.monotonic()
        code = await daemon.stop()
    assert code == 0 and time.monotonic() - started < 10
    assert daemon.loose == []  # every line was one JSON object
    assert daemon.events[-1]["event"] == "daemon_stopped"
    state = json.loads(world.state_file.read_text())
    assert state["version"] == 1 and set(state["monitors"]) == {"1", "2"}


async def test_health_port_in_use_is_a_one_line_error(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await cli("run", env={**world.env, "NOTIFIER_HEALTH_PORT": str(port)})
    assert result.code == 2
    [line] = [x for x in result.stderr.splitlines() if "error:" in x]
    assert "NOTIFIER_HEALTH_PORT" in line and str(port) in line
    assert "Traceback" not in result.stderr


async def test_systemd_notify_ready_watchdog_stopping(world: World, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        async def collect() -> None:
            while True:
                data = await loop.sock_recv(sock, 4096)
                received.append(data.decode())

        collector = asyncio.create_task(collect())
        env = {**world.env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"}
        daemon = await Daemon.start(env)
        try:
            await daemon.wait_for(lambda: received.count("WATCHDOG=1") >= 3)
            await daemon.wait_for(lambda: any(m.startswith("STATUS=") for m in received))
        finally:
            code = await daemon.stop()
            await asyncio.sleep(0.1)
            collector.cancel()
    assert code == 0
    assert received[0] == "READY=1"
    assert "STOPPING=1" in received
    status = next(m for m in received if m.startswith("STATUS="))
    assert "2 monitors polled" in status
