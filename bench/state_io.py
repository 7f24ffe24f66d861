"""State file load and save time against the number of monitors (should grow linearly).

python bench/state_io.py --sizes 1000,5000,10000,20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from notifier.domain.models import (
    MonitorInfo,
    MonitorState,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
    TrackedRun,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def realistic_state(size: int) -> NotifierState:
    """Per monitor: one alert run remembered and, for one in five, a run in progress; an outbox
    entry for one monitor in a hundred."""
    monitors = {}
    outbox = []
    for index in range(size):
        monitor_id = 1000 + index
        runs = {
            10 * index: TrackedRun(state="alert", handled=["alert"], first_seen=T0, last_seen=T0)
        }
        if index % 5 == 0:
            runs[10 * index + 1] = TrackedRun(state="checking", first_seen=T0, last_seen=T0)
        monitors[monitor_id] = MonitorState(
            watch_since=T0 - timedelta(days=3),
            baselined=True,
            last_polled_at=T0,
            feed_key="2026-11-26T11:59:00+00:00|alert",
            runs=runs,
        )
        if index % 100 == 0:
            event = RunEvent(monitor_id=monitor_id, run_id=10 * index, state="alert", started_at=T0)
            outbox.append(
                OutboxEntry(
                    notification=Notification(
                        id=event.key,
                        event=event,
                        monitor=MonitorInfo(id=monitor_id, name=f"monitor {index}"),
                        detected_at=T0,
                    ),
                    pending=["slack"],
                )
            )
    return NotifierState(monitors=monitors, outbox=outbox)


async def main() -> None:
    from notifier.run.logs import configure_logging
    from notifier.store.file import StateFile

    configure_logging(level="info", fmt="json")

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000,20000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        "| monitors | file (KB) | bytes/monitor | save (ms) | load (ms) "
        "| save µs/monitor | load µs/monitor |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        state = realistic_state(size)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state.json"
            saves, loads = [], []
            for attempt in range(args.repeat):
                store = StateFile(path)
                state.monitors[1000].last_polled_at = T0 + timedelta(seconds=attempt)  # a change
                started = time.perf_counter()
                await store.save(state)
                saves.append(time.perf_counter() - started)
                started = time.perf_counter()
                await StateFile(path).load()
                loads.append(time.perf_counter() - started)
            kb = path.stat().st_size / 1024
        save, load = statistics.median(saves) * 1000, statistics.median(loads) * 1000
        print(
            f"| {size} | {kb:.0f} | {kb * 1024 / size:.0f} | {save:.1f} | {load:.1f} "
            f"| {save * 1000 / size:.1f} | {load * 1000 / size:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
