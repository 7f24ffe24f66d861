"""`state export` and `state import`: the whole state, mutes included, as JSON, between the
state file and PostgreSQL, without re-notifying anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from notifier.cli.exits import EXIT_OK
from notifier.domain.models import NotifierState
from notifier.run.settings import Settings
from notifier.run.wiring import open_store
from notifier.store.file import StateFile, read_state_file, write_state_file
from notifier.store.store import StateError


async def state(settings: Settings, args: argparse.Namespace) -> int:
    """`state export FILE` / `state import FILE`: the whole state, mutes included, as JSON.

    An import reads and validates the whole file before the store is opened: a file that is no
    state of this version leaves the store as it was.
    """
    imported = read_state_file(args.file) if args.state_command == "import" else None
    async with open_store(settings) as store:
        where = store.where
        if imported is None:
            state = await store.export_state()
            if state is None:
                raise StateError(f"{where}: no state to export yet")
            if str(args.file) == "-":
                print(state.model_dump_json(indent=None))
            elif same_file(args.file, settings.state_file):
                # Back to the file store: respect a daemon that may be using that file.
                await StateFile(args.file).import_state(state)
            else:
                write_state_file(args.file, state)
            print(summary("exported", state, where), file=sys.stderr)
            return EXIT_OK
        if settings.state_url is None and same_file(args.file, settings.state_file):
            raise StateError(f"{args.file} is already the state file")
        fenced = await store.import_state(imported, force=args.force)
        if fenced is not None:
            print(
                f"fenced out the leader {fenced}: its next save is refused and it reloads "
                "the imported state",
                file=sys.stderr,
            )
        print(summary("imported", imported, where), file=sys.stderr)
        return EXIT_OK


def same_file(one: Path, other: Path) -> bool:
    """Whether two paths name one file (False when either cannot be resolved)."""
    try:
        return one.resolve() == other.resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        return False


def summary(verb: str, state: NotifierState, where: str) -> str:
    """The line a move of the state ends with: what it held, and which store."""
    return (
        f"{verb} {len(state.monitors)} monitor(s), {len(state.outbox)} waiting notification(s) "
        f"and {len(state.mutes)} mute(s) ({where})"
    )
