"""Lifecycle: cycles never overlap, signals drain within the grace period, state stays whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from notifier.domain.report import CycleReport
from notifier.run.daemon import Daemon
from tests.fakes.cli import CLI, World, cli
from tests.fakes.subprocess_daemon import Daemon as DaemonProcess
from tests.fakes.webhook import Reply


class SlowNotifier:
    """Stands in for `Notifier`: each cycle takes `duration` seconds."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.cycles = 0
        self.running = 0
        self.max_running = 0
        self.saves = 0

    async def run_cycle(self) -> CycleReport:
        self.cycles += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.duration)
        finally:
            self.running -= 1
        return CycleReport()

    async def save(self) -> bool:
        self.saves += 1
        return True


async def run_stopped_after(
    seconds: float, notifier: SlowNotifier, **options: Any
) -> tuple[int, list[MutableMapping[str, Any]]]:
    """Run an in-process daemon over the stand-in `notifier`, asked to stop after `seconds`:
    its exit code and what it logged."""
    daemon = Daemon(notifier, **options)
    asyncio.get_running_loop().call_later(seconds, daemon.request_stop)
    with capture_logs() as logs:
        code = await daemon.run()
    return code, logs


async def test_overrunning_cycle_is_skipped_not_queued() -> None:
    notifier = SlowNotifier(duration=1.1)
    code, logs = await run_stopped_after(2.0, notifier, interval=0.25, grace=5)
    assert code == 0
    assert notifier.max_running == 1
    # at 0 s and 1.25 s: the firings due while a cycle ran were dropped, not run late
    assert notifier.cycles == 2
    assert sum(e["event"] == "cycle_skipped" for e in logs) >= 3
    assert notifier.saves == 1


async def test_stop_cancels_a_cycle_that_outlasts_the_grace_period() -> None:
    notifier = SlowNotifier(duration=30)
    started = time.monotonic()
    code, logs = await run_stopped_after(0.2, notifier, interval=60, grace=0.3)
    assert code == 0 and time.monotonic() - started < 2
    assert any(e["event"] == "cycle_cancelled" for e in logs)
    assert notifier.running == 0 and notifier.saves == 1


async def _start_stuck_delivery(world: World, **env: str) -> Any:
    assert (await cli("once", env=world.env)).code == 0
    world.sim.add_run(1, state="alert", started_at=world.now())
    world.receiver.reply(Reply(delay=60))
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "run",
        env={**world.env, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not world.receiver.deliveries and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert world.receiver.deliveries, "the delivery never started"
    return proc


async def test_sigterm_waits_out_the_grace_period_then_saves_the_outbox(world: World) -> None:
    proc = await _start_stuck_delivery(world, NOTIFIER_SHUTDOWN_GRACE_SECONDS="1")
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0, err.decode()
    assert 0.8 < time.monotonic() - started < 5
    state = json.loads(world.state_file.read_text())
    [entry] = state["outbox"]
    assert [p for p in entry["pending"] if p.startswith("webhook-")]
    assert "slack" not in entry["pending"]  # Slack accepted it before the stop
    events = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert "cycle_cancelled" in events


async def test_second_signal_exits_at_once(world: World) -> None:
    proc = await _start_stuck_delivery(world, NOTIFIER_SHUTDOWN_GRACE_SECONDS="60")
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    await asyncio.wait_for(proc.communicate(), timeout=10)
    assert time.monotonic() - started < 3
    assert proc.returncode == 128 + signal.SIGINT
    json.loads(world.state_file.read_text())  # whole, never half-written


class HangupNotifier(SlowNotifier):
    """Sends this process SIGHUP from its first cycle, when the daemon's handlers are in place."""

    async def run_cycle(self) -> CycleReport:
        if self.cycles == 0:
            # Unhandled, SIGHUP would end the test run itself: fail instead.
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGHUP)
        return await super().run_cycle()


async def test_sighup_is_logged_and_ignored() -> None:
    notifier = HangupNotifier(duration=0.01)
    code, logs = await run_stopped_after(1.0, notifier, interval=0.2, grace=5)
    assert code == 0 and notifier.saves == 1
    assert notifier.cycles >= 3  # it went on polling after the signal
    [hangup] = [e for e in logs if e["event"] == "signal_received"]
    assert hangup["signal"] == "SIGHUP" and hangup["action"] == "ignored"
    assert "reload is not supported yet" in hangup["reason"]
    assert not [e for e in logs if e["event"] == "daemon_killed"]


async def test_sighup_stops_the_demo_gracefully() -> None:
    notifier = HangupNotifier(duration=0.01)
    daemon = Daemon(notifier, interval=60, grace=5, stop_on_hangup=True)  # type: ignore[arg-type]
    with capture_logs() as logs:
        code = await asyncio.wait_for(daemon.run(), timeout=10)
    assert code == 0 and notifier.cycles == 1 and notifier.saves == 1
    names = [e["event"] for e in logs]
    assert names.index("signal_received") < names.index("daemon_stopping")


async def test_sighup_reloads_a_running_daemon_that_goes_on_polling_and_sigterm_still_drains(
    world: World,
) -> None:
    daemon = await DaemonProcess.start(world.env)
    first = await daemon.wait_event("cycle_finished")
    daemon.proc.send_signal(signal.SIGHUP)
    hangup = await daemon.wait_event("signal_received", first)
    assert daemon.events[hangup]["signal"] == "SIGHUP"
    assert daemon.events[hangup]["action"] == "reload"
    reloaded = await daemon.wait_event("config_reloaded", hangup)
    assert daemon.events[reloaded]["changed"] == []  # nothing changed: the same configuration
    world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_event("cycle_finished", hangup + 1, where=lambda e: e["delivered"] >= 1)
    assert await daemon.stop() == 0
    names = [str(e["event"]) for e in daemon.events]
    assert "daemon_stopped" in names and "daemon_killed" not in names
    assert len(world.receiver.deliveries) == 1 and not daemon.loose


async def test_sighup_ends_the_demo_in_its_closed_terminal(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "NOTIFIER_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "demo",
        "--interval",
        "1",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=15)
        if json.loads(line)["event"] == "daemon_started":
            break
    proc.send_signal(signal.SIGHUP)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert "daemon_stopped" in events
