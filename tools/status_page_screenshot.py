"""Regenerate docs/status-page.png: the status page of a sample state, as a phone shows it.

    .venv/bin/python tools/status_page_screenshot.py [OUTPUT.png] [--width 390] [--height 844]

A phone (390 px, the default) sees each table row as a card of labelled values; a desktop
(e.g. `/tmp/desktop.png --width 1280 --height 900`) sees the tables.
Serves the real status app (notifier/run/status_server.py) on 127.0.0.1 over a fixed sample
state and clock, so the picture only changes when the page does, and takes the screenshot with
headless Chromium (tools/ensure-chromium.sh installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.domain.models import (  # noqa: E402
    Incident,
    MonitorInfo,
    MonitorState,
    Mute,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
    TrackedRun,
)
from notifier.domain.report import CycleReport, Deferral  # noqa: E402
from notifier.run.health import HealthTracker  # noqa: E402
from notifier.run.metrics import Metrics  # noqa: E402
from notifier.run.status_server import StatusSources, serve_status, status_app  # noqa: E402

NOW = datetime(2026, 11, 30, 9, 41, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
NAMES = {
    4521: "orders prod vs staging",
    4522: "revenue metric (daily)",
    4523: "customers schema",
    4524: "payments freshness",
    4525: "events row count",
}


def sample_state() -> NotifierState:
    """Five monitors: one alerting for 47 minutes, one erroring, one running, one muted."""
    infos = {i: MonitorInfo(id=i, name=name, tags=["finance"]) for i, name in NAMES.items()}

    def failing(monitor_id: int, run_id: int, state: str, minutes: int) -> MonitorState:
        event = RunEvent(monitor_id=monitor_id, run_id=run_id, state=state)
        opened = NOW - minutes * MINUTE
        incident = Incident(
            id=event.key, opened_at=opened, first=event, last=event, last_notified_at=opened
        )
        tracked = TrackedRun(state=state, handled=[state], first_seen=opened, last_seen=NOW)
        return polled(runs={run_id: tracked}, incident=incident)

    def polled(**fields: object) -> MonitorState:
        return MonitorState(
            watch_since=NOW - 3 * 60 * MINUTE,
            baselined=True,
            last_polled_at=NOW - MINUTE / 2,
            **fields,  # type: ignore[arg-type]
        )

    running = TrackedRun(state="checking", first_seen=NOW - 2 * MINUTE, last_seen=NOW)
    monitors = {
        4521: failing(4521, 98123, "alert", 47),
        4522: failing(4522, 98150, "error", 6),
        4523: polled(runs={98161: running}),
        4524: polled(),
        4525: polled(),
    }
    waiting = [
        OutboxEntry(
            notification=Notification(
                id=f"4522-98150-error-{n}",
                event=RunEvent(monitor_id=4522, run_id=98150 + n, state="error"),
                monitor=infos[4522],
                detected_at=NOW - (6 - n) * MINUTE,
            ),
            pending=["pagerduty"],
            attempts=3 - n,
            last_error="pagerduty: HTTP 503 Service Unavailable",
        )
        for n in range(2)
    ]
    mutes = [
        Mute(
            id="m-7f3a",
            monitor_id=4525,
            until=NOW + 95 * MINUTE,
            reason="backfill until 11:15",
            created_at=NOW - 25 * MINUTE,
        )
    ]
    state = NotifierState(monitors=monitors, outbox=waiting, mutes=mutes)
    state.held = {"4521-98123-alert": {"alertmanager": _note(infos[4521], 98123)}}
    return state


def _note(info: MonitorInfo, run_id: int) -> Notification:
    event = RunEvent(monitor_id=info.id, run_id=run_id, state="alert")
    return Notification(id=event.key, event=event, monitor=info, detected_at=NOW - 47 * MINUTE)


def sample_cycles() -> list[CycleReport]:
    """Ten one-minute cycles; PagerDuty has been refusing for the last six."""
    cycles = []
    for n in range(10):
        started = NOW - (10 - n) * MINUTE
        failing = n >= 4
        report = CycleReport(
            polled=list(NAMES),
            events=1 if n in (4, 9) else 0,
            delivered=2 if n == 4 else 0,
            delivery_failures=1 if failing else 0,
            sent_by_destination=Counter({"slack": 1, "alertmanager": 1}),
            outbox_size=2 if failing else 0,
            state_saved=True,
            started_at=started,
            finished_at=started + timedelta(milliseconds=420 + 37 * n),
        )
        if failing:
            report.failed_by_destination["pagerduty"] += 1
        cycles.append(report)
    cycles[-1].deferred["pagerduty"] = Deferral(until=NOW + 40 * MINUTE / 60, reason="HTTP 429")
    return cycles


def chromium() -> str:
    """The headless browser's command, or a one-line exit naming the installer."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("chromium not found: run tools/ensure-chromium.sh")


async def screenshot(output: str, width: int, height: int) -> int:
    """Serve the sample on a free port and have Chromium take the picture; its exit code."""
    health = HealthTracker(started_at=NOW - 60 * MINUTE, interval=MINUTE)
    cycles = sample_cycles()
    for report in cycles:
        health.record(report)
    state = sample_state()
    sources = StatusSources(state=lambda: state, leading=lambda: None, cycles=cycles)
    app = status_app(health, Metrics(), lambda: NOW, sources)
    async with serve_status(app, "127.0.0.1", 0) as port:
        with tempfile.TemporaryDirectory() as profile:
            command = [
                chromium(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=2",
                f"--user-data-dir={profile}",
                f"--screenshot={output}",
                f"--window-size={width},{height}",
                f"http://127.0.0.1:{port}/",
            ]
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            return await asyncio.wait_for(proc.wait(), timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=ROOT / "docs/status-page.png")
    parser.add_argument("--width", type=int, default=390)
    parser.add_argument("--height", type=int, default=844)
    args = parser.parse_args()
    output = args.output.resolve()
    output.unlink(missing_ok=True)
    code = asyncio.run(screenshot(str(output), args.width, args.height))
    if code != 0 or not output.exists():
        raise SystemExit(f"chromium failed (exit {code}); no screenshot at {output}")
    print(output)


if __name__ == "__main__":
    main()
