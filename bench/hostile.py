"""Hostile servers: `datafold-notifier once` against each misbehaving server, measured.

Runs the scenarios of tests/fakes/hostile.py (the servers and the launcher the tests use), each in
a fresh directory, and prints a Markdown table: wall time and peak RSS of the `once` process,
what the servers sent, and what came of it.

    python bench/hostile.py [--only gzip_bomb,stall] [--many 48]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import tempfile
from pathlib import Path

# The servers live with the tests that use them; one copy, imported from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.delivery_audit import destination_kind
from tests.fakes.hostile import (
    BY_NAME,
    GOOD_MONITOR,
    HOSTILE,
    SCENARIOS,
    TROUBLE,
    CliHung,
    Misbehaviour,
    Outcome,
    Scenario,
    run_scenario,
)


def describe(outcome: Outcome) -> str:
    """What came of a scenario in a few words: the failures logged, then the alert's fate."""
    notes: list[str] = []
    failures: dict[str, int] = {}
    for event in outcome.run.events():
        name = event["event"]
        if name not in TROUBLE:
            continue
        culprit = TROUBLE[name]
        who = destination_kind(str(event.get(culprit))) if culprit else ""
        kind = event.get("kind", "")
        if name == "poll_failed":
            key = f"poll_failed ({kind})"
        else:
            key = f"{name} {who}".strip() + (f" ({kind})" if kind else "")
        failures[key] = failures.get(key, 0) + 1
    for key, count in failures.items():
        notes.append(key if count == 1 else f"{key} x{count}")
    delivered = sorted(
        {
            destination_kind(event["destination"])
            for event in outcome.run.named("notification_sent")
            if event.get("monitor_id") == GOOD_MONITOR
        }
    )
    notes.append(f"alert -> {', '.join(delivered) or 'nowhere'}")
    if outcome.run.code != 0:
        notes.append(f"exit {outcome.run.code}")
    return "; ".join(notes)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--many", type=int, default=None, help="monitors of the oversized_pages scenario"
    )
    args = parser.parse_args()
    scenarios: list[Scenario] = list(SCENARIOS)
    if args.only:
        scenarios = [BY_NAME[name] for name in args.only.split(",")]
    if args.many is not None:
        many = {HOSTILE + i: Misbehaviour("oversized_pages") for i in range(args.many)}
        scenarios = [
            dataclasses.replace(
                s,
                datafold=many,
                summary=s.summary.replace(str(len(s.datafold)), str(args.many), 1),
                budget=max(s.budget, args.many * 2.0),
            )
            if s.name == "oversized_pages"
            else s
            for s in scenarios
        ]

    print(
        f"datafold-notifier hostile servers: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    header = "| scenario | what the server does | wall (s) | peak RSS (MB) | sent (MB) | outcome |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        for scenario in scenarios:
            try:
                outcome = await run_scenario(scenario, Path(tmp) / scenario.name)
            except CliHung as hung:
                print(f"| {scenario.name} | {scenario.summary} | - | - | - | {hung} |", flush=True)
                continue
            run = outcome.run
            print(
                f"| {scenario.name} | {scenario.summary} | {run.seconds:.2f} "
                f"| {run.peak_rss_mb:.0f} | {outcome.sent_total / 1e6:.1f} | {describe(outcome)} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
