"""`once --dry-run`: one full cycle against Datafold, every notification it would send printed
per destination instead of sent, and the state left as it was (nothing is saved).

The cycle is the real one (`make_notifier`) over recording sinks named as the destinations and a
store that reads the state without saving it (`run.dry_run`): routing, mutes, quiet hours,
digests, reminders and the outbox's retries decide as they would in `once`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from notifier.cli.config import proxy_configured
from notifier.cli.service import cycle_outcome
from notifier.domain.models import Notification
from notifier.domain.report import CycleReport
from notifier.domain.text import one_line
from notifier.route.rules import Routes
from notifier.run.dry_run import Recorded, RecordingSink, UnsavedState, recording_sinks
from notifier.run.logs import REDACTOR
from notifier.run.preview import dumps, preview
from notifier.run.settings import Settings
from notifier.run.wiring import make_notifier, open_runtime

log = structlog.get_logger("notifier.cli")

#: The longest monitor name a summary line shows.
_TITLE_MAX = 80


async def dry_run(
    settings: Settings, routes: Routes, *, as_json: bool = False, out: TextIO = sys.stdout
) -> int:
    """Run one cycle that sends and saves nothing; print what it would send (`as_json`: the
    rendered payloads). The exit code is `once`'s."""
    # Every event of the cycle says it was a dry run: `notification_sent` means "recorded".
    with structlog.contextvars.bound_contextvars(dry_run=True):
        report, recorders, store = await _cycle(settings, routes)
    if as_json:
        now = datetime.now(UTC)
        document = {
            "dry_run": True,
            "destinations": {
                name: [
                    _json_entry(routes, settings, name, r, store.waiting, now)
                    for r in sink.recorded
                ]
                for name, sink in recorders.items()
            },
        }
        out.write(REDACTOR.redact(dumps(document)) + "\n")
    else:
        out.write(REDACTOR.redact(summary(recorders, store.waiting)))
    out.flush()
    return cycle_outcome(report)


async def _cycle(
    settings: Settings, routes: Routes
) -> tuple[CycleReport, dict[str, RecordingSink], UnsavedState]:
    """The cycle over recording sinks and the unsaved state; what it recorded."""
    async with open_runtime(settings, routes, trust_env=proxy_configured()) as runtime:
        log.info("dry_run_started", sends="nothing", saves="nothing")
        recorders = recording_sinks(runtime.sinks)
        store = UnsavedState(runtime.store)
        notifier = make_notifier(replace(runtime, sinks=dict(recorders)), spread=False, store=store)
        return await notifier.run_cycle(), recorders, store


def summary(recorders: dict[str, RecordingSink], waiting: frozenset[str]) -> str:
    """Per destination, one line per notification it would get (a digest: its notifications
    under one line), then a closing line that says nothing was sent or saved."""
    lines: list[str] = []
    total = 0
    for name, sink in recorders.items():
        count = sum(len(r.notifications) for r in sink.recorded if r.action != "hold")
        total += count
        lines.append(f"{name}: {_count(count)}" if sink.recorded else f"{name}: nothing")
        for recorded in sink.recorded:
            if recorded.action == "send":
                lines.append("  " + describe(recorded.notifications[0], waiting))
                continue
            head = "digest of" if recorded.action == "digest" else "keep-alive of"
            what = "notifications" if recorded.action == "digest" else "open incidents' alerts"
            lines.append(f"  {head} {len(recorded.notifications)} {what}:")
            lines += ["    " + describe(n, waiting) for n in recorded.notifications]
    lines.append(
        f"dry run: {_count(total)} to {len(recorders)} destination(s) would be sent; "
        "nothing was sent and the state was not saved"
    )
    return "\n".join(lines) + "\n"


def describe(n: Notification, waiting: frozenset[str]) -> str:
    """One notification on one line: kind, monitor, run and its state."""
    title = one_line(n.monitor.title, _TITLE_MAX)
    retry = " (waiting in the outbox: a retry)" if n.id in waiting else ""
    return (
        f"{n.event_kind}: monitor {n.monitor.id} {title!r}, run {n.event.run_id}, "
        f"state {one_line(n.event.state, 40)}{retry}"
    )


def _count(count: int) -> str:
    return f"{count} notification" + ("s" if count != 1 else "")


def _json_entry(
    routes: Routes,
    settings: Settings,
    name: str,
    recorded: Recorded,
    waiting: frozenset[str],
    now: datetime,
) -> dict[str, Any]:
    """One recorded delivery: what it is about and the payload its destination would get."""
    payload = preview(
        routes.destinations[name],
        name,
        recorded,
        now=now,
        external_url=settings.datafold_host,
        poll_interval=settings.poll_interval_seconds,
    )
    about = [
        {
            "id": n.id,
            "kind": n.event_kind,
            "monitor_id": n.monitor.id,
            "monitor": n.monitor.title,
            "run_id": n.event.run_id,
            "state": n.event.state,
            "retry": n.id in waiting,
        }
        for n in recorded.notifications
    ]
    return {"action": recorded.action, "notifications": about, "payload": payload}
