"""`outbox list`, `outbox retry` and `outbox drop`: see what waits, and act on it beside a running
daemon.

The daemon keeps the outbox in memory and saves it after every cycle, so these commands never edit
it: `list` reads the state as last saved, and `retry` and `drop` leave a request in the store that
the next cycle (of `run`, or of `once`) applies before it delivers anything, then forgets.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from notifier.cli import args as arg
from notifier.cli.config import read_routes
from notifier.cli.exits import EXIT_FAILED, EXIT_OK, fail
from notifier.domain.models import OutboxEntry
from notifier.domain.outbox_requests import NAME_MAX, OutboxRequest, waiting_for
from notifier.domain.text import clip, escape_controls, one_line
from notifier.run.logs import REDACTOR
from notifier.run.settings import Settings
from notifier.run.wiring import open_store

log = structlog.get_logger("notifier.cli")

_NOTIFICATION_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{NAME_MAX}}}")

RETRY_HELP = (
    "ask the next cycle to try what waits (for one destination, or all) at once, even if the "
    "destination asked to be left alone for longer (HTTP 429/503 with Retry-After, up to "
    "NOTIFIER_MAX_RETRY_AFTER_SECONDS): every cycle retries what waits anyway, so a retry only "
    "lifts that wait, and notifications are not resent sooner than the next cycle. Prints what "
    "will be tried. A name not configured exits 2"
)
DROP_HELP = (
    "remove a waiting notification (for one destination, or all) at the next cycle, so it is "
    "never delivered there; an ID not waiting (delivered meanwhile) exits 1"
)


def add_outbox_parser(commands: Any) -> None:
    """`outbox list | retry | drop` under the command parser's `commands`."""
    outbox_parser = commands.add_parser(
        "outbox",
        help="list the notifications waiting for a destination, retry or drop them; a running "
        "daemon applies a retry or drop at its next cycle",
    )
    actions = outbox_parser.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="what waits, as last saved, and the retries and drops not yet applied"
    )
    listing.add_argument("--json", action="store_true", help="one JSON document instead")
    retry = actions.add_parser("retry", help=RETRY_HELP, description=RETRY_HELP)
    retry.add_argument("--destination", type=destination, metavar="NAME", help="only this one")
    drop = actions.add_parser("drop", help=DROP_HELP, description=DROP_HELP)
    drop.add_argument("notification_id", type=notification_id, metavar="ID", help="as listed")
    drop.add_argument(
        "--destination", type=destination, metavar="NAME", help="drop it for this one only"
    )


def notification_id(text: str) -> str:
    """A notification ID as `outbox list` shows it."""
    if not _NOTIFICATION_ID.fullmatch(text):
        raise arg.invalid(text, "is not a notification ID (as `outbox list` shows them)")
    return text


def destination(text: str) -> str:
    """A destination's name: printable, no spaces."""
    name = arg.printable(text, "destination name", limit=NAME_MAX)
    if any(char.isspace() for char in name):
        raise arg.invalid(text, "is not a destination name (it has spaces)")
    return name


async def outbox(settings: Settings, args: argparse.Namespace) -> int:
    """`outbox list`, `outbox retry`, `outbox drop`."""
    if args.outbox_command == "retry" and args.destination is not None:
        configured = sorted(read_routes(settings, args.env_file).destinations)
        if args.destination not in configured:
            return fail(
                f"outbox retry: no destination is named {args.destination!r} "
                f"(configured: {', '.join(configured) or 'none'})"
            )
    now = datetime.now(UTC)
    async with open_store(settings) as store:
        state = await store.export_state()
        entries = [] if state is None else [e for e in state.outbox if e.pending]
        if args.outbox_command == "list":
            requests = await store.outbox_requests()
            if args.json:
                print(json.dumps(as_json(entries, requests, now)))
            else:
                print("\n".join(table(entries, requests, now, store.where)))
            return EXIT_OK
        name = args.destination
        if args.outbox_command == "drop":
            found = next((e for e in entries if e.notification.id == args.notification_id), None)
            problem = _not_droppable(args.notification_id, name, found, store.where)
            if problem is not None:
                fail(problem)
                return EXIT_FAILED
            request = OutboxRequest(
                id=secrets.token_hex(4),
                action="drop",
                notification_id=args.notification_id,
                destination=name,
                requested_at=now,
            )
        else:
            request = OutboxRequest(
                id=secrets.token_hex(4), action="retry", destination=name, requested_at=now
            )
        await store.request_outbox(request)
    log.info(
        "outbox_request_made", request=request.id, action=request.action, target=request.target
    )
    if request.action == "drop":
        print(f"drop of {request.target} requested (request {request.id}); the next cycle drops it")
        return EXIT_OK
    retried = waiting_for(entries, name)
    whom = f"waiting for {name}" if name else "waiting"
    print(
        f"retry of {request.target} requested (request {request.id}): the next cycle tries the "
        f"{len(retried)} notification(s) {whom}, ignoring any Retry-After"
    )
    for entry in retried:
        print(f"  {entry.notification.id} → {', '.join(entry.pending)}")
    return EXIT_OK


def _not_droppable(
    wanted: str, name: str | None, entry: OutboxEntry | None, where: str
) -> str | None:
    """Why `outbox drop` cannot ask for this, or None."""
    if entry is None:
        return f"outbox drop: no notification {wanted} is waiting ({where})"
    if name is not None and name not in entry.pending:
        waits = ", ".join(entry.pending)
        return (
            f"outbox drop: notification {wanted} is not waiting for {name} (it waits for {waits})"
        )
    return None


COLUMNS = ("ID", "MONITOR", "RUN", "KIND", "WAITING FOR", "ATTEMPTS", "AGE", "LAST ERROR")


def table(
    entries: list[OutboxEntry], requests: list[OutboxRequest], now: datetime, where: str
) -> list[str]:
    """The readable listing: one row per waiting notification, then the requests not applied."""
    if not entries:
        lines = [f"the outbox is empty ({where})"]
    else:
        rows = [COLUMNS, *(_row(entry, now) for entry in entries)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
        lines = [
            "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
            for row in rows
        ]
        lines.append(f"{len(entries)} notification(s) waiting ({where})")
    if requests:
        lines.append("requests for the next cycle:")
        lines += [
            f"  {r.id}  {r.action} {_shown(r.target, 120)}  "
            f"(asked {_age(now - r.requested_at)} ago)"
            for r in requests
        ]
    return lines


def _row(entry: OutboxEntry, now: datetime) -> tuple[str, ...]:
    notification = entry.notification
    monitor = notification.monitor
    return (
        _shown(notification.id, 60),
        _shown(f"{monitor.id} {monitor.name}" if monitor.name else str(monitor.id), 40),
        str(notification.event.run_id),
        _shown(notification.event_kind, 16),
        _shown(", ".join(entry.pending), 60),
        str(entry.attempts),
        _age(now - notification.detected_at),
        _shown(REDACTOR.redact(entry.last_error or "-"), 100),
    )


def as_json(
    entries: list[OutboxEntry], requests: list[OutboxRequest], now: datetime
) -> dict[str, object]:
    """`outbox list --json`: every waiting notification and every request not applied."""
    return {
        "outbox": [
            {
                "id": e.notification.id,
                "monitor_id": e.notification.monitor.id,
                "monitor_name": e.notification.monitor.name,
                "run_id": e.notification.event.run_id,
                "kind": e.notification.event_kind,
                "waiting_for": e.pending,
                "attempts": e.attempts,
                "detected_at": e.notification.detected_at.isoformat(),
                "age_seconds": round((now - e.notification.detected_at).total_seconds()),
                "last_error": None if e.last_error is None else REDACTOR.redact(e.last_error),
            }
            for e in entries
        ],
        "requests": [r.model_dump(mode="json") for r in requests],
    }


def _shown(text: str, limit: int) -> str:
    """A value as a table cell: one line, controls escaped, clipped."""
    return clip(escape_controls(one_line(text)), limit)


def _age(span: timedelta) -> str:
    """3s, 4m, 2h05m, 3d04h."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
