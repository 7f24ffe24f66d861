"""The installed CLI against local servers that misbehave (tests/fakes/hostile.py).

Each scenario runs `datafold-notifier once` as its own process, measured by a small launcher. A
hostile monitor or destination costs only itself: it fails with one log line that names it (and
the limit, where there is one), the well-behaved monitor's alert still reaches every well-behaved
destination, the command ends well within its time budget, and its peak RSS stays bounded.
`python bench/hostile.py` prints the same scenarios as a table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from notifier.bounded_http import DESTINATION_ANSWER_MAX_BYTES
from tests.fakes.delivery_audit import destination_kind
from tests.fakes.hostile import (
    BY_NAME,
    GOOD_MONITOR,
    HOSTILE,
    MANY,
    OTHER_HOSTILE,
    RETRY_AFTER,
    SMALL_LIMIT,
    TROUBLE,
    Outcome,
    run_scenario,
)

#: The default NOTIFIER_MAX_RESPONSE_BYTES.
DEFAULT_LIMIT = 4 * 1024 * 1024
#: Peak RSS of `once` (MB): a plain cycle takes about 60; every scenario stays under the first;
#: those that only read up to a limit stay under the second (memory flat).
RSS_MAX_MB = 200
RSS_FLAT_MB = 100
#: stderr is log lines about what happened, never what the servers sent at length.
STDERR_MAX = 32 * 1024
LINE_MAX = 1_000


#: A log line a scenario must write once: its event, fields it carries, fragments of its text.
Line = tuple[str, dict[str, Any], tuple[str, ...]]


@dataclass(frozen=True)
class Expect:
    """What a scenario must log and deliver beyond the common checks."""

    #: The warnings, one line each (their error or reason holds the fragments).
    lines: tuple[Line, ...] = ()
    #: Messages the fake Slack and deliveries the webhook receiver must get.
    slack: int = 1
    webhook: int = 1
    #: At most this many requests of the hostile endpoint: an answer refused for its size or its
    #: wait is not asked for again.
    requests: dict[tuple[str, int | None], int] = field(default_factory=dict)
    #: Destinations whose notifications stay in the outbox.
    kept_for: tuple[str, ...] = ()
    rss_max_mb: float = RSS_FLAT_MB
    #: Calls a hostile Slack gets: one, not retried within the cycle.
    slack_calls: int | None = None


def _too_large(monitor_id: int, limit: int = DEFAULT_LIMIT) -> Line:
    fields = {"monitor_id": monitor_id, "kind": "too_large"}
    return ("poll_failed", fields, (f"monitor {monitor_id}", str(limit), "MAX_RESPONSE_BYTES"))


def _slack_too_large() -> Line:
    fields = {"destination": "slack", "monitor_id": GOOD_MONITOR}
    return ("delivery_failed", fields, (f"larger than {DESTINATION_ANSWER_MAX_BYTES} bytes",))


EXPECTED: dict[str, Expect] = {
    "baseline": Expect(),
    "endless_body": Expect(lines=(_too_large(HOSTILE),), requests={("runs", HOSTILE): 1}),
    "endless_body_small_limit": Expect(
        lines=(_too_large(HOSTILE, SMALL_LIMIT),), requests={("runs", HOSTILE): 1}
    ),
    "endless_error_body": Expect(
        lines=(
            (
                "poll_failed",
                {"monitor_id": HOSTILE, "kind": "unavailable"},
                ("monitor 2", "HTTP 503 after 4 attempts"),
            ),
        ),
        requests={("runs", HOSTILE): 4},
    ),
    "gzip_bomb": Expect(lines=(_too_large(HOSTILE),), requests={("runs", HOSTILE): 1}),
    "million_runs": Expect(lines=(_too_large(HOSTILE),), requests={("runs", HOSTILE): 1}),
    "dense_page": Expect(
        lines=(
            (
                "poll_failed",
                {"monitor_id": HOSTILE, "kind": "malformed"},
                ("monitor 2", "more than the 100 asked for", "NOTIFIER_PAGE_SIZE"),
            ),
        ),
        requests={("runs", HOSTILE): 1},
        # About 130,000 runs under the 4 MiB limit are parsed as JSON, but no run object is
        # built: the page is refused for holding more runs than asked for.
        rss_max_mb=RSS_MAX_MB,
    ),
    "retry_after": Expect(
        lines=(
            (
                "poll_failed",
                {"monitor_id": HOSTILE, "kind": "unavailable"},
                ("monitor 2", "asked to wait", "NOTIFIER_MAX_RETRY_AFTER_SECONDS"),
            ),
        ),
        requests={("runs", HOSTILE): 1},
    ),
    "stall": Expect(
        lines=tuple(
            (
                "poll_failed",
                {"monitor_id": monitor_id, "kind": "unavailable"},
                (f"monitor {monitor_id}", "timed out after 1s after 4 attempts"),
            )
            for monitor_id in (HOSTILE, OTHER_HOSTILE)
        ),
        requests={("runs", HOSTILE): 4, ("runs", OTHER_HOSTILE): 4},
    ),
    "hostile_details": Expect(
        lines=(
            ("monitor_detail_failed", {"monitor_id": HOSTILE}, (str(DEFAULT_LIMIT),)),
            ("run_detail_failed", {"monitor_id": OTHER_HOSTILE}, (str(DEFAULT_LIMIT),)),
        ),
        # Both error runs are still notified, without the details that could not be read.
        slack=3,
        webhook=3,
        requests={("monitor", HOSTILE): 1, ("run", OTHER_HOSTILE): 1},
    ),
    "hostile_feed": Expect(
        lines=(("feed_failed", {"kind": "too_large"}, ("monitor list", str(DEFAULT_LIMIT))),),
        # The clock probe before the cycle, then the feed: neither is retried.
        requests={("monitors", None): 2},
    ),
    "slack_endless": Expect(
        lines=(_slack_too_large(),), slack=0, kept_for=("slack",), slack_calls=1
    ),
    "slack_gzip_bomb": Expect(
        lines=(_slack_too_large(),), slack=0, kept_for=("slack",), slack_calls=1
    ),
    "slack_retry_after": Expect(
        lines=(
            (
                "destination_deferred",
                {"destination": "slack", "asked_seconds": float(RETRY_AFTER), "capped": True},
                ("ratelimited",),
            ),
            (
                "delivery_failed",
                {"destination": "slack", "monitor_id": GOOD_MONITOR},
                ("ratelimited",),
            ),
        ),
        slack=0,
        kept_for=("slack",),
        slack_calls=1,
    ),
    "slack_stall": Expect(
        lines=(
            (
                "delivery_failed",
                {"destination": "slack", "monitor_id": GOOD_MONITOR},
                ("TimeoutError",),
            ),
        ),
        slack=0,
        kept_for=("slack",),
        slack_calls=1,
    ),
    "webhook_endless": Expect(),
    "webhook_stall": Expect(
        lines=(("delivery_failed", {"monitor_id": GOOD_MONITOR}, ("TimeoutError",)),),
        webhook=1,  # received (and kept) by the receiver, which then never answers
        kept_for=("webhook",),
    ),
}


def _report(outcome: Outcome, record_property: Callable[[str, object], None]) -> None:
    run = outcome.run
    record_property("peak_rss_mb", round(run.peak_rss_mb, 1))
    record_property("seconds", round(run.seconds, 2))
    print(
        f"{outcome.scenario.name}: {run.seconds:.2f} s, peak RSS {run.peak_rss_mb:.1f} MB, "
        f"servers sent {outcome.sent_total / 1e6:.1f} MB"
    )


def _check_common(outcome: Outcome, rss_max_mb: float) -> None:
    run, scenario = outcome.run, outcome.scenario
    assert run.code == 0, run.stderr[-3000:]
    assert run.seconds < scenario.budget, (run.seconds, scenario.budget)
    assert run.peak_rss_mb < rss_max_mb, run.peak_rss_mb
    # The launcher's own peak stays far below what it reports: the figure is the command's.
    assert run.launcher_kib < run.peak_rss_kib / 2
    assert "Traceback" not in run.stderr
    assert len(run.stderr) < STDERR_MAX
    events = run.events()
    assert all(len(str(e)) < LINE_MAX for e in events)
    sent = [e for e in events if e["event"] == "notification_sent"]
    assert any(e["monitor_id"] == GOOD_MONITOR for e in sent), run.stderr[-3000:]


def _kept_destinations(outcome: Outcome) -> set[str]:
    """The destinations still waiting for the good monitor's alert in the saved outbox."""
    kept: set[str] = set()
    for entry in outcome.state.get("outbox", []):
        if entry["notification"]["event"]["monitor_id"] == GOOD_MONITOR:
            kept.update(destination_kind(p) for p in entry["pending"])
    return kept


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_hostile_server_costs_only_itself(
    name: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    expect = EXPECTED[name]
    outcome = await run_scenario(BY_NAME[name], tmp_path)
    _report(outcome, record_property)
    _check_common(outcome, expect.rss_max_mb)
    run = outcome.run

    # Each scenario logs exactly the trouble it expects.
    trouble = [e for e in run.events() if e["event"] in TROUBLE]
    assert len(trouble) == len(expect.lines), trouble
    for event, fields, fragments in expect.lines:
        found = [e for e in trouble if e["event"] == event and fields.items() <= e.items()]
        assert len(found) == 1, (event, fields, trouble)
        text = f"{found[0].get('error', '')} {found[0].get('reason', '')}"
        for fragment in fragments:
            assert fragment in text, (fragment, found[0])

    assert outcome.slack_messages == expect.slack
    assert outcome.webhook_deliveries == expect.webhook
    if expect.slack_calls is not None:
        assert outcome.slack_calls == expect.slack_calls
    for key, count in expect.requests.items():
        assert 1 <= outcome.requests[key] <= count, (key, outcome.requests)
    assert _kept_destinations(outcome) == set(expect.kept_for)


async def test_oversized_pages_of_many_monitors_stay_bounded(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Pages a hundred times larger than asked for, from as many monitors as requests in
    flight: each is refused before its runs are built, so memory stays flat."""
    outcome = await run_scenario(BY_NAME["oversized_pages"], tmp_path)
    _report(outcome, record_property)
    assert outcome.requests[("runs", HOSTILE)] == 1
    requests = outcome.requests.items()
    hostile = [n for (kind, m), n in requests if kind == "runs" and m != GOOD_MONITOR]
    assert sum(hostile) == MANY
    failed = outcome.run.named("poll_failed")
    assert len(failed) == MANY
    assert all("more than the 100 asked for" in e["error"] for e in failed)
    _check_common(outcome, rss_max_mb=RSS_FLAT_MB)
