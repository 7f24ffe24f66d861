"""`mute` and `unmute`: kept in the state store, applied by a running daemon at its next cycle."""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import UTC, datetime

import structlog

from notifier.cli.exits import EXIT_FAILED, EXIT_OK
from notifier.domain.models import Mute
from notifier.domain.mutes import MuteSelector
from notifier.run.settings import Settings
from notifier.run.wiring import open_store

log = structlog.get_logger("notifier.cli")


async def mute(settings: Settings, args: argparse.Namespace) -> int:
    """Silence a monitor or a tag for `--for`; prints the new mute's ID."""
    now = datetime.now(UTC)
    mute = Mute(
        id=secrets.token_hex(4),
        monitor_id=args.monitor,
        tag=args.tag,
        until=now + args.duration,
        reason=args.reason,
        created_at=now,
    )
    async with open_store(settings) as store:
        await store.add_mute(mute, now)
    log.info("mute_set", mute=mute.id, muted=mute.target, until=mute.until.isoformat())
    reason = f": {mute.reason}" if mute.reason else ""
    print(f"muted {mute.target} until {when(mute.until)} (mute {mute.id}){reason}")
    return EXIT_OK


async def unmute(settings: Settings, args: argparse.Namespace) -> int:
    """Lift the active mutes of a monitor, a tag or one ID (`MuteSelector`); 1 when none."""
    now = datetime.now(UTC)
    selector = MuteSelector(monitor_id=args.monitor, tag=args.tag, mute_id=args.mute_id)
    async with open_store(settings) as store:
        lifted = await store.remove_mutes(selector, now)
    if not lifted:
        print("no active mute matched", file=sys.stderr)
        return EXIT_FAILED
    for m in lifted:
        log.info("mute_lifted", mute=m.id, muted=m.target)
        print(f"unmuted {m.target} (mute {m.id}, was until {when(m.until)})")
    return EXIT_OK


def when(moment: datetime) -> str:
    """A time as the mute commands print it: minutes, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
