"""`datafold-notifier check`: every dependency checked for real, one line each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TextIO

from notifier.daemon import Runtime, open_runtime
from notifier.datafold import ApiKeyRefused, DatafoldError
from notifier.models import MonitorInfo
from notifier.routing import Routes, explain
from notifier.settings import Settings
from notifier.sinks.checks import CheckResult
from notifier.state import StateError


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
        for batch in (
            discovery,
            found,
            _check_routes(runtime, ids, monitors),
            await _check_destinations(runtime),
            _check_state(runtime),
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
    runtime: Runtime, ids: list[int], monitors: dict[int, MonitorInfo]
) -> list[CheckResult]:
    """Where each monitor's alerts and errors would go; nowhere is a failure."""
    results = []
    for monitor_id in ids:
        monitor = monitors.get(monitor_id, MonitorInfo(id=monitor_id))
        plan = explain(runtime.routes, monitor)
        parts = [f"{kind} → {', '.join(plan[kind]) or 'nowhere'}" for kind in ("alert", "error")]
        routed = all(plan[kind] for kind in ("alert", "error"))
        results.append(
            CheckResult(
                f"route monitor {monitor_id}", routed, f"{monitor.title!r}: {'; '.join(parts)}"
            )
        )
    return results


async def _check_destinations(runtime: Runtime) -> list[CheckResult]:
    if not runtime.sinks:
        return [
            CheckResult(
                "destinations",
                False,
                "none configured: set SLACK_BOT_TOKEN and SLACK_CHANNEL, SLACK_WEBHOOK_URL, "
                "or NOTIFIER_WEBHOOK_URLS",
            )
        ]
    results: list[CheckResult] = []
    for sink in runtime.sinks.values():
        check = getattr(sink, "check", None)
        if check is None:
            continue
        answer = await check()
        results.extend(answer if isinstance(answer, list) else [answer])
    return results


def _check_state(runtime: Runtime) -> list[CheckResult]:
    store = runtime.store
    try:
        state = store.peek()
    except StateError as exc:
        return [CheckResult("state", False, str(exc))]
    if state is None:
        return [CheckResult("state", True, f"{store.path} does not exist yet (first run)")]
    return [
        CheckResult(
            "state",
            True,
            f"{store.path}: {len(state.monitors)} monitor(s), "
            f"{len(state.outbox)} notification(s) waiting in the outbox",
        )
    ]
