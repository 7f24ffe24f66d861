"""What `datafold-notifier simulate` prints on start: the `.env` lines that point a notifier at
it, its monitors, and when each of them alerts or errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifier.demo.records import SimulatedMonitor
from notifier.demo.server import INBOX_PATH
from notifier.demo.simulator import Simulator

#: How many of each monitor's coming failures the timeline names.
TIMELINE_EVENTS = 3


def env_lines(sim: Simulator, url: str, api_key: str) -> list[str]:
    """The `.env` lines for a notifier polling `sim` at `url` and sending to its inbox."""
    return [
        f"DATAFOLD_HOST={url}",
        f"DATAFOLD_API_KEY={api_key}",
        f"NOTIFIER_MONITOR_IDS={','.join(str(m) for m in sim.monitor_ids)}",
        f"NOTIFIER_WEBHOOK_URLS={url}{INBOX_PATH}",
    ]


def monitor_table(sim: Simulator) -> list[str]:
    """One row per monitor: ID, name, type, tags, and when it fails."""
    monitors = [m for m in map(sim.find_monitor, sim.monitor_ids) if m is not None]
    rows = [("ID", "NAME", "TYPE", "TAGS", "FAILS (seconds after start)")]
    rows += [
        (str(m.id), m.name or "-", m.monitor_type, ",".join(m.tags) or "-", timeline(m))
        for m in monitors
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def timeline(monitor: SimulatedMonitor) -> str:
    """When the monitor's scripted runs end other than "ok", counted from the simulator's start:
    run n starts at n * every seconds and ends `duration` later (the first few, then how often
    the script repeats)."""
    if monitor.every is None:
        return "no scheduled runs"
    if monitor.outcomes is None:
        return f"runs every {monitor.every:g} s; mostly ok, at random an alert or error"
    every, script = monitor.every, monitor.outcomes
    events = [
        f"{outcome} at {n * every + monitor.duration:g}"
        for n, outcome in enumerate(script, start=1)
        if outcome != "ok"
    ][:TIMELINE_EVENTS]
    if not events:
        return f"runs every {every:g} s, always ok"
    return f"{', '.join(events)}; repeats every {len(script) * every:g} s"


def start_text(sim: Simulator, url: str, api_key: str) -> list[str]:
    """Everything `simulate` prints on start."""
    return [
        f"Datafold simulator at {url}. Ctrl-C to stop.",
        "",
        "Put these lines in a .env file (or the environment) of a notifier:",
        "",
        *env_lines(sim, url, api_key),
        "",
        "then run `datafold-notifier once` (or `run`) in that directory; what reaches the "
        f"webhook inbox ({INBOX_PATH}) is printed here. Its monitors:",
        "",
        *monitor_table(sim),
        "",
        "Each monitor runs on its schedule from now; the first poll of a new state records "
        "history silently, later polls notify what finished since.",
    ]


def received_line(payload: Mapping[str, Any]) -> str:
    """One line for a webhook the inbox received."""
    data = _object(payload.get("data"))
    monitor, run = _object(data.get("monitor")), _object(data.get("run"))
    return (
        f"webhook received: {payload.get('type', '?')} monitor {monitor.get('id', '?')} "
        f"({monitor.get('name') or '-'}) run {run.get('id', '?')}"
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
