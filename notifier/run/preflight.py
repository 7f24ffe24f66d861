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
    """Print one line per check and return 0 when all passed, 1 otherwise: a check that could
    not be known (`??`, such as a route needing monitor details that could not be read) has not
    passed."""
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
        found, monitors, unread = await _check_datafold(runtime, ids)
        state_results, mutes = await _check_state(runtime)
        for batch in (
            discovery,
            found,
            _check_routes(runtime, ids, monitors, unread, mutes),
            [CheckResult("quiet hours", True, line) for line in quiet_hours_summary(routes)],
            await _check_destinations(runtime),
            state_results,
        ):
            _print(batch, out)
            results.extend(batch)
    failed = sum(1 for r in results if r.ok is False)
    unknown = sum(1 for r in results if r.ok is None)
    passed = len(results) - failed - unknown
    if failed or unknown:
        out.write(f"{passed} passed, {failed} failed" + (f", {unknown} unknown" if unknown else ""))
    else:
        out.write(f"all {len(results)} checks passed")
    out.write("\n")
    out.flush()
    return 1 if failed or unknown else 0


def _print(results: Iterable[CheckResult], out: TextIO) -> None:
    for result in results:
        mark = "??  " if result.ok is None else "ok  " if result.ok else "FAIL"
        out.write(f"{mark} {result.name}: {result.detail}\n")
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
) -> tuple[list[CheckResult], dict[int, MonitorInfo], dict[int, str]]:
    """One line for the API key, one per monitor; the details read, and why the others were not."""
    answers = await asyncio.gather(
        *(runtime.client.get_monitor(m) for m in ids), return_exceptions=True
    )
    host = runtime.settings.datafold_host
    if any(isinstance(a, ApiKeyRefused) for a in answers):
        refused = CheckResult("datafold", False, f"{host} refused the API key (DATAFOLD_API_KEY)")
        return [refused], {}, dict.fromkeys(ids, "the API key was refused")
    results = []
    monitors: dict[int, MonitorInfo] = {}
    unread: dict[int, str] = {}
    reached = [a for a in answers if not isinstance(a, BaseException)]
    if reached:
        results.append(CheckResult("datafold", True, f"API key accepted by {host}"))
    for monitor_id, answer in zip(ids, answers, strict=True):
        name = f"monitor {monitor_id}"
        if isinstance(answer, BaseException):
            reason = (
                str(answer)
                if isinstance(answer, DatafoldError)
                else f"internal error {type(answer).__name__}"
            )
            results.append(CheckResult(name, False, reason))
            unread[monitor_id] = reason
        else:
            monitors[monitor_id] = answer
            kind = answer.monitor_type or "unknown type"
            enabled = "" if answer.enabled is not False else ", DISABLED in Datafold"
            results.append(CheckResult(name, True, f"{answer.title!r} ({kind}{enabled})"))
    return results, monitors, unread


def _check_routes(
    runtime: Runtime,
    ids: list[int],
    monitors: dict[int, MonitorInfo],
    unread: dict[int, str],
    mutes: list[Mute],
) -> list[CheckResult]:
    """Where each monitor's events would go (nowhere for an alert or error is a failure), and
    whether a mute silences it now. Unknown (`??`) for a monitor whose details were not read:
    rules match on its tags, type, owner and name, so routing it without them would be a guess."""
    now = datetime.now(UTC)
    kinds = ["alert", "error", "recovered"]
    if runtime.settings.reminder_interval_seconds > 0:
        kinds.append("reminder")
    results = []
    for monitor_id in ids:
        if monitor_id not in monitors:
            reason = unread.get(monitor_id, "its details were not read")
            detail = f"unknown: the monitor's details could not be read ({reason})"
            results.append(CheckResult(f"route monitor {monitor_id}", None, detail))
            continue
        monitor = monitors[monitor_id]
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
