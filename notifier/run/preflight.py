"""`datafold-notifier check`: every dependency checked for real, one line each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from notifier.deliver.sink import CheckResult
from notifier.domain.models import MonitorInfo, Mute
from notifier.fetch.source import ApiKeyRefused, DatafoldError
from notifier.route.rules import Routes, explain, quiet_hours_summary
from notifier.run.destination_settings import DESTINATION_HINT
from notifier.run.settings import Settings
from notifier.run.wiring import Runtime, leader_note, open_runtime
from notifier.store.store import StateError


async def run_checks(
    settings: Settings, routes: Routes, out: TextIO, *, trust_env: bool = False
) -> int:
    """Print one line per check and return 0 when all passed, 1 otherwise."""
    results: list[CheckResult] = [
        CheckResult(
            "config",
            True,
            f"valid: {len(settings.monitor_ids)} monitor ID(s)"
            + (f" and tags {', '.join(settings.monitor_tags)}" if settings.monitor_tags else "")
            + f", poll every "
            f"{settings.poll_interval_seconds:g} s, notify on {','.join(settings.notify_states)}",
        )
    ]
    _print(results, out)
    async with open_runtime(settings, routes, trust_env=trust_env) as runtime:
        discovery, ids = await _discover(runtime)
        found, monitors = await _check_datafold(runtime, ids)
        state_results, mutes = await _check_state(runtime)
        for batch in (
            discovery,
            found,
            _check_routes(runtime, ids, monitors, mutes),
            [CheckResult("quiet hours", True, line) for line in quiet_hours_summary(routes)],
            await _check_destinations(runtime),
            state_results,
        ):
            _print(batch, out)
            results.extend(batch)
    failed = [r for r in results if not r.ok]
    out.write(
        f"{len(results) - len(failed)} passed, {len(failed)} failed\n"
        if failed
        else f"all {len(results)} checks passed\n"
    )
    out.flush()
    return 1 if failed else 0


def _print(results: Iterable[CheckResult], out: TextIO) -> None:
    for result in results:
        out.write(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}\n")
    out.flush()


async def _discover(runtime: Runtime) -> tuple[list[CheckResult], list[int]]:
    """The configured monitor IDs plus those NOTIFIER_MONITOR_TAGS finds, one line per tag."""
    ids = list(runtime.settings.monitor_ids)
    results = []
    for tag in runtime.settings.monitor_tags:
        try:
            found = [m.id for m in await runtime.client.list_monitors([tag])]
        except DatafoldError as exc:
            results.append(CheckResult(f"tag {tag!r}", False, str(exc)))
            continue
        shown = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
        detail = f"{len(found)} monitor(s)" + (f": {shown}" if found else "")
        results.append(CheckResult(f"tag {tag!r}", bool(found), detail))
        ids += [m for m in found if m not in ids]
    return results, ids


async def _check_datafold(
    runtime: Runtime, ids: list[int]
) -> tuple[list[CheckResult], dict[int, MonitorInfo]]:
    answers = await asyncio.gather(
        *(runtime.client.get_monitor(m) for m in ids), return_exceptions=True
    )
    host = runtime.settings.datafold_host
    if any(isinstance(a, ApiKeyRefused) for a in answers):
        refused = CheckResult("datafold", False, f"{host} refused the API key (DATAFOLD_API_KEY)")
        return [refused], {}
    results = []
    monitors: dict[int, MonitorInfo] = {}
    reached = [a for a in answers if not isinstance(a, BaseException)]
    if reached:
        results.append(CheckResult("datafold", True, f"API key accepted by {host}"))
    for monitor_id, answer in zip(ids, answers, strict=True):
        name = f"monitor {monitor_id}"
        if isinstance(answer, DatafoldError):
            results.append(CheckResult(name, False, str(answer)))
        elif isinstance(answer, BaseException):
            results.append(CheckResult(name, False, f"internal error {type(answer).__name__}"))
        else:
            monitors[monitor_id] = answer
            kind = answer.monitor_type or "unknown type"
            enabled = "" if answer.enabled is not False else ", DISABLED in Datafold"
            results.append(CheckResult(name, True, f"{answer.title!r} ({kind}{enabled})"))
    return results, monitors


def _check_routes(
    runtime: Runtime, ids: list[int], monitors: dict[int, MonitorInfo], mutes: list[Mute]
) -> list[CheckResult]:
    """Where each monitor's events would go (nowhere for an alert or error is a failure), and
    whether a mute silences it now."""
    now = datetime.now(UTC)
    kinds = ["alert", "error", "recovered"]
    if runtime.settings.reminder_interval_seconds > 0:
        kinds.append("reminder")
    results = []
    for monitor_id in ids:
        monitor = monitors.get(monitor_id, MonitorInfo(id=monitor_id))
        plan = explain(runtime.routes, monitor)
        parts = [f"{kind} → {', '.join(plan[kind]) or 'nowhere'}" for kind in kinds]
        routed = all(plan[kind] for kind in ("alert", "error"))
        detail = f"{monitor.title!r}: {'; '.join(parts)}"
        muted = [m for m in mutes if m.covers(monitor, now)]
        if muted:
            detail += f"; MUTED until {muted[0].until:%Y-%m-%d %H:%M} UTC (mute {muted[0].id})"
        results.append(CheckResult(f"route monitor {monitor_id}", routed, detail))
    return results


async def _check_destinations(runtime: Runtime) -> list[CheckResult]:
    if not runtime.sinks:
        return [
            CheckResult(
                "destinations",
                False,
                f"none configured: {DESTINATION_HINT}",
            )
        ]
    results: list[CheckResult] = []
    for sink in runtime.sinks.values():
        results.extend(await sink.check())
    return results


async def _check_state(runtime: Runtime) -> tuple[list[CheckResult], list[Mute]]:
    """The state's summary (and, in PostgreSQL, who leads), then one line per active mute."""
    store = runtime.store
    where = store.where
    try:
        state = await store.export_state()
        lead = await leader_note(store)
    except StateError as exc:
        return [CheckResult("state", False, str(exc))], []
    if state is None:
        return [CheckResult("state", True, f"{where} does not exist yet (first run)")], []
    now = datetime.now(UTC)
    failing = sum(1 for m in state.monitors.values() if m.incident is not None)
    results = [
        CheckResult(
            "state",
            True,
            f"{where}: {len(state.monitors)} monitor(s), {failing} failing, "
            f"{len(state.outbox)} notification(s) waiting in the outbox{lead}",
        )
    ]
    active = [m for m in state.mutes if m.until > now]
    for mute in active:
        reason = f": {mute.reason}" if mute.reason else ""
        detail = f"{mute.target} until {mute.until:%Y-%m-%d %H:%M} UTC{reason}"
        results.append(CheckResult(f"mute {mute.id}", True, detail))
    return results, active
