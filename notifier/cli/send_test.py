"""`send-test`: a clearly marked test alert, then its recovery, through the real destinations.

The two notifications go through each destination's own sink, as a real incident's would: Slack
(bot) updates the alert's message and replies in its thread, email threads the recovery under
the alert, PagerDuty resolves the alert it triggered, Alertmanager ends it. The state is neither
read nor written; Datafold is asked only for `--monitor`'s details, and without `--monitor` no
API key is needed. Every run has its own incident ID, so no PagerDuty key, mail Message-ID or
webhook-id repeats a real incident's or an earlier test's.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

import structlog

from notifier.cli.config import proxy_configured, read_routes
from notifier.cli.exits import EXIT_FAILED, EXIT_OK, fail
from notifier.deliver.sink import DeliveryError, Sink
from notifier.detect.notices import LinkTemplate
from notifier.domain.models import Incident, Links, MessageRef, MonitorInfo, Notification, RunEvent
from notifier.domain.text import one_line
from notifier.fetch.source import ApiKeyRefused, DatafoldError, NotFound
from notifier.route.rules import Routes
from notifier.run.config import ConfigError, load_settings
from notifier.run.logs import REDACTOR, configure_logging
from notifier.run.settings import Settings
from notifier.run.wiring import build_sinks, datafold_client, http_session, tls_context

log = structlog.get_logger("notifier.cli")

#: What marks every test notification: its monitor's name starts so, and it carries the tag.
TEST_PREFIX: Final = "[TEST] "
TEST_TAG: Final = "datafold-notifier-test"
#: The made-up monitor a test is about without `--monitor` (ID 0: no Datafold monitor has it).
TEST_MONITOR: Final = MonitorInfo(id=0, name="datafold-notifier test", monitor_type="test")
#: Shown where an alert shows its error message.
TEST_NOTE: Final = (
    "This is a test sent by `datafold-notifier send-test`; no monitor failed. Its recovery follows."
)
#: Stands in for DATAFOLD_API_KEY when none is set and none is needed (no `--monitor`).
_UNUSED_KEY: Final = "send-test-needs-no-datafold-key"


class UnknownDestination(Exception):
    """`--destination` names no destination of the configuration."""


@dataclass(frozen=True)
class StepResult:
    """One destination's answer to one of the two test notifications."""

    destination: str
    step: str
    error: str | None = None
    followed: bool = False
    #: Not sent: the destination takes no recoveries (`recovery = false`).
    skipped: bool = False

    def line(self) -> str:
        """As printed: `ok   name: test alert sent`, or `FAIL name: test alert: reason`."""
        if self.error is not None:
            return f"FAIL {self.destination}: test {self.step}: {self.error}"
        if self.skipped:
            return f"ok   {self.destination}: test {self.step} not sent (recovery = false here)"
        after = " (on the alert's message)" if self.followed else ""
        return f"ok   {self.destination}: test {self.step} sent{after}"


def make_test_notifications(
    monitor: MonitorInfo, *, key: str, now: datetime, links: Links
) -> tuple[Notification, Notification]:
    """The test alert, opening its own incident `key`, and the recovery that closes it: both
    about `monitor` renamed `[TEST] …` and tagged `datafold-notifier-test`."""
    marked = MonitorInfo(
        id=monitor.id,
        name=TEST_PREFIX + monitor.title,
        monitor_type=monitor.monitor_type,
        tags=[TEST_TAG, *(tag for tag in monitor.tags if tag != TEST_TAG)],
        owner=monitor.owner,
        enabled=monitor.enabled,
    )
    failing = RunEvent(monitor_id=monitor.id, run_id=0, state="alert", started_at=now)
    passing = RunEvent(monitor_id=monitor.id, run_id=0, state="ok", started_at=now)
    incident = Incident(id=key, opened_at=now, first=failing, last=failing, last_notified_at=now)
    alert = Notification(
        id=key,
        event=failing,
        monitor=marked,
        error_message=TEST_NOTE,
        links=links,
        detected_at=now,
        incident=incident,
    )
    recovery = Notification(
        id=f"{key}-recovered",
        kind="recovered",
        event=passing,
        monitor=marked,
        links=links,
        detected_at=now,
        incident=incident,
    )
    return alert, recovery


def new_incident_key() -> str:
    """A fresh incident ID for one `send-test` run."""
    return f"{TEST_TAG}-{secrets.token_hex(8)}"


def chosen(routes: Routes, names: Sequence[str] | None) -> list[str]:
    """The destinations to test: those named (in the routes' order), or every one."""
    known = list(routes.destinations)
    if not names:
        return known
    unknown = [name for name in dict.fromkeys(names) if name not in routes.destinations]
    if unknown:
        listed = ", ".join(known) or "none is configured"
        raise UnknownDestination(
            f"unknown destination {', '.join(map(repr, unknown))} (known: {listed})"
        )
    return [name for name in known if name in names]


def send_test_command(args: argparse.Namespace) -> int:
    """The `send-test` command: settings and routes read, logging set, then `send_test`."""
    settings = _settings(args.env_file, need_datafold=args.monitor is not None)
    routes = read_routes(settings, args.env_file)
    secret_values = [*settings.secrets(), *routes.secrets()]
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=secret_values)
    if not routes.destinations:
        return fail(
            "send-test: no destination is configured (see settings.example.env, or name them "
            "in NOTIFIER_ROUTES_FILE)"
        )
    try:
        names = chosen(routes, None if args.all else args.destination)
    except UnknownDestination as exc:
        return fail(f"send-test: {exc}")
    return asyncio.run(send_test(settings, routes, names, monitor_id=args.monitor))


def _settings(env_file: Path | None, *, need_datafold: bool) -> Settings:
    """The settings; without `--monitor` a missing or empty DATAFOLD_API_KEY is no problem."""
    try:
        return load_settings(env_file)
    except ConfigError:
        if need_datafold:
            raise
        return load_settings(env_file, DATAFOLD_API_KEY=_UNUSED_KEY)


async def send_test(
    settings: Settings,
    routes: Routes,
    names: Sequence[str],
    *,
    monitor_id: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Send the test alert, then its recovery, to each destination in `names` (all at once);
    print one line per destination and step. 1 if any failed, 2 if `monitor_id` cannot be read."""
    now = datetime.now(UTC)
    tls = tls_context(settings)
    session = http_session(settings, tls, trust_env=proxy_configured())
    try:
        monitor, links = TEST_MONITOR, Links()
        if monitor_id is not None:
            try:
                monitor = await datafold_client(settings, session).get_monitor(monitor_id)
            except (NotFound, ApiKeyRefused) as exc:
                return fail(f"send-test: monitor {monitor_id}: {exc}")
            except DatafoldError as exc:
                out.write(f"FAIL datafold: monitor {monitor_id}: {exc}\n")
                return EXIT_FAILED
            template = LinkTemplate(settings.datafold_host, settings.monitor_url_template)
            links = template.links(RunEvent(monitor_id=monitor_id, run_id=0, state="alert"))
        key = new_incident_key()
        alert, recovery = make_test_notifications(monitor, key=key, now=now, links=links)
        sinks = build_sinks(routes, settings, session, tls)
        takes_recovery = {name: routes.destinations[name].recovery for name in names}
        results = await asyncio.gather(
            *(
                _exercise(sinks[name], name, alert, recovery if takes_recovery[name] else None)
                for name in names
            )
        )
    finally:
        await session.close()
    steps = [step for pair in results for step in pair]
    for step in steps:
        out.write(REDACTOR.redact(step.line()) + "\n")
    failed = sorted({step.destination for step in steps if step.error is not None})
    verdict = f"{len(failed)} of {len(names)} failed: {', '.join(failed)}" if failed else "all ok"
    out.write(f"send-test {key}: {len(names)} destination(s), {verdict}\n")
    out.flush()
    return EXIT_FAILED if failed else EXIT_OK


async def _exercise(
    sink: Sink, name: str, alert: Notification, recovery: Notification | None
) -> tuple[StepResult, StepResult]:
    """The alert, then its recovery (sent even when the alert failed: an alert that went out
    all the same must not stay open), following the alert's message where the sink can. No
    recovery (None) for a destination that takes none."""
    anchor, alert_error = await _attempt(sink, name, alert, None)
    if recovery is None:
        return StepResult(name, "alert", alert_error), StepResult(name, "recovery", skipped=True)
    _, recovery_error = await _attempt(sink, name, recovery, anchor)
    return (
        StepResult(name, "alert", alert_error),
        StepResult(name, "recovery", recovery_error, followed=anchor is not None),
    )


async def _attempt(
    sink: Sink, name: str, notification: Notification, thread: MessageRef | None
) -> tuple[MessageRef | None, str | None]:
    """One send: where the message went (if the sink says) and the failure's reason, if any."""
    try:
        return await sink.send(notification, thread), None
    except DeliveryError as exc:
        return None, one_line(exc.reason)
    except Exception as exc:  # a sink's bug: reported on its line, the other destinations go on
        log.exception("send_test_failed", destination=name, reason="internal error")
        return None, f"internal error ({type(exc).__name__})"
