"""`simulate` as a recipe: the lines it prints on start are a working `.env`, its monitors are
listed with their tags, and the timeline it prints is the one the simulator follows."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from notifier.demo.recipe import monitor_table, received_line, timeline
from notifier.demo.server import INBOX_PATH, serve
from notifier.demo.simulator import demo_simulator
from tests.fakes.cli import CLI, cli

ENV = {"PATH": os.environ.get("PATH", ""), "NOTIFIER_LOG_FORMAT": "json"}
ENV_LINE = re.compile(r"[A-Z_]+=\S+")


async def test_simulate_prints_env_lines_that_work_for_once(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "simulate",
        "--port",
        "0",
        "--api-key",
        "recipe-key",
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Each monitor runs"):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=10)
            assert line, f"simulate ended early: {lines}"
            lines.append(line.decode().rstrip("\n"))
        env_lines = [line for line in lines if ENV_LINE.fullmatch(line)]
        names = [line.split("=", 1)[0] for line in env_lines]
        assert names == [
            "DATAFOLD_HOST",
            "DATAFOLD_API_KEY",
            "NOTIFIER_MONITOR_IDS",
            "NOTIFIER_WEBHOOK_URLS",
        ]
        assert "DATAFOLD_API_KEY=recipe-key" in env_lines
        assert "NOTIFIER_MONITOR_IDS=101,102,103" in env_lines
        host = env_lines[0].split("=", 1)[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", host) and not host.endswith(":0")
        table = lines[lines.index(next(x for x in lines if x.startswith("ID "))) :]
        assert re.match(
            r"101\s+orders: prod vs staging\s+diff\s+prod,orders\s+alert at 25", table[1]
        )
        assert table[3].startswith("103 ")

        (tmp_path / ".env").write_text("\n".join(env_lines) + "\n")
        result = await cli("once", env=ENV, cwd=tmp_path)
        assert result.code == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0


async def test_the_inbox_takes_webhooks_and_names_them() -> None:
    received: list[dict[str, object]] = []
    payload = {
        "type": "monitor.run.alert",
        "data": {"monitor": {"id": 101, "name": "orders"}, "run": {"id": 7}},
    }
    async with serve(demo_simulator(), inbox=received.append) as url, aiohttp.ClientSession() as s:
        async with s.post(url + INBOX_PATH, json=payload) as answer:
            assert answer.status == 204
        async with s.post(url + INBOX_PATH, data=b"not json") as answer:
            assert answer.status == 400
    assert received == [payload]
    assert (
        received_line(payload) == "webhook received: monitor.run.alert monitor 101 (orders) run 7"
    )
    assert received_line({}) == "webhook received: ? monitor ? (-) run ?"


async def test_without_an_inbox_there_is_no_webhook_route() -> None:
    async with serve(demo_simulator()) as url, aiohttp.ClientSession() as s:
        async with s.post(url + INBOX_PATH, json={}) as answer:
            assert answer.status in (404, 405)


def test_the_printed_timeline_is_what_the_simulator_does() -> None:
    """Each monitor's first failure ends when the table says (seconds after the start)."""
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    now = [t0]
    sim = demo_simulator(clock=lambda: now[0])
    firsts = []
    for monitor_id in sim.monitor_ids:
        monitor = sim.find_monitor(monitor_id)
        assert monitor is not None
        first = re.match(r"(alert|error) at (\d+)", timeline(monitor))
        assert first is not None, timeline(monitor)
        firsts.append((int(first.group(2)), first.group(1), monitor))
    for seconds, outcome, monitor in sorted(firsts, key=lambda f: f[0]):
        now[0] = t0 + timedelta(seconds=seconds - 0.5)
        sim.advance()
        assert not any(r.state == outcome for r in monitor.runs.values()), monitor.id
        now[0] = t0 + timedelta(seconds=seconds)
        sim.advance()
        assert any(r.state == outcome for r in monitor.runs.values()), monitor.id
    assert len(monitor_table(sim)) == 1 + len(sim.monitor_ids)
