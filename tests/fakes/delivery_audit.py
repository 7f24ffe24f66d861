"""What the destinations received, checked against the at-least-once, at-most-one-repeat-per-
crash promise; shared by the file-store crash tests and the PostgreSQL failover tests."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

from notifier.domain.models import NotifierState
from tests.fakes.slack import FakeSlack, PostedMessage
from tests.fakes.subprocess_daemon import Daemon

DESTINATIONS = ("slack", "webhook")
NOTIFY_STATES = ("alert", "error")


def destination_kind(name: str) -> str:
    """What a test calls a destination: the state names a webhook `webhook-<hash of its URL>`."""
    return "webhook" if name.startswith("webhook") else name


def recorded(
    state: NotifierState, notify: Mapping[int, tuple[int, str]], run_id: int, dest: str
) -> bool:
    """The saved state says `dest` has run `run_id` (`notify` maps run → (monitor, state)): the
    run is handled, and no outbox entry is still pending for `dest`."""
    monitor_id, notify_state = notify[run_id]
    monitor = state.monitors.get(monitor_id)
    tracked = monitor.runs.get(run_id) if monitor else None
    if tracked is None or notify_state not in tracked.handled:
        return False
    return not any(
        entry.notification.event.run_id == run_id
        and any(destination_kind(name) == dest for name in entry.pending)
        for entry in state.outbox
    )


def slack_run_id(message: PostedMessage) -> int:
    """The run a Slack message is about: its "Run ID" field, else the fallback text."""
    for block in message.blocks or []:
        for item in block.get("fields", []):
            found = re.fullmatch(r"\*Run ID\*\n(\d+)", item.get("text", ""))
            if found:
                return int(found[1])
    found = re.search(r"run (\d+)$", message.text or "")
    assert found, f"no run ID in Slack message {message}"
    return int(found[1])


def is_recovery(message: PostedMessage) -> bool:
    text = message.text or ""
    return "Recovered" in text or "Resolved" in text


def deliveries_per_run(webhook_ids: Iterable[str], slack: FakeSlack) -> dict[str, Counter[int]]:
    """Alert and error deliveries per run and destination (recoveries are tested elsewhere)."""
    webhook = Counter(
        int(hook_id.split("-")[1])
        for hook_id in webhook_ids
        if hook_id.split("-")[-1] in NOTIFY_STATES
    )
    posted = Counter(slack_run_id(m) for m in slack.messages if not is_recovery(m))
    return {"slack": posted, "webhook": webhook}


def delivery_problems(
    got: Mapping[str, Counter[int]],
    notify: Collection[int],
    exposures: Counter[tuple[int, str]],
    quiet: Collection[int] = (),
) -> list[str]:
    """Every run of `notify` reached each destination at least once, and more than once only
    if a crash came between its delivery and the save that recorded it (at most twice)."""
    found = []
    for dest in DESTINATIONS:
        sent = set(got[dest])
        if sent & set(quiet):
            found.append(f"{dest}: history/ok runs sent: {sorted(sent & set(quiet))}")
        unknown = sent - set(quiet) - set(notify)
        if unknown:
            found.append(f"{dest}: runs sent that were never news: {sorted(unknown)}")
        for run_id in sorted(notify):
            count, exposed = got[dest][run_id], exposures[(run_id, dest)]
            if count == 0:
                found.append(f"{dest}: run {run_id} lost")
            elif count > min(2, 1 + exposed):
                found.append(
                    f"{dest}: run {run_id} received {count} times after {exposed} crash(es) "
                    "between its delivery and its save"
                )
    return found


def log_problems(daemons: Iterable[Daemon], broken: Collection[str]) -> list[str]:
    """Loose (non-JSON) output lines and events that must never appear, per process."""
    found = []
    for number, daemon in enumerate(daemons):
        found += [f"process {number}: loose line {line!r}" for line in daemon.loose]
        found += [
            f"process {number}: {event}"
            for event in daemon.events
            if event.get("event") in broken or "exception" in event
        ]
    return found
