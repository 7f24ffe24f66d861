"""The console sink: notifications as plain lines on stdout, for the `demo` command."""

from __future__ import annotations

import sys
from collections.abc import Callable

from notifier.deliver.render.console import console_text
from notifier.deliver.sink import CheckResult
from notifier.domain.models import MessageRef, Notification


def _print_flushed(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class ConsoleSink:
    """Writes each notification as a few lines; `write` is a seam for tests."""

    name = "console"

    def __init__(self, write: Callable[[str], None] = _print_flushed) -> None:
        self._write = write

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Write the notification (recoveries and reminders marked as such); the console cannot
        refuse one, and has no threads."""
        self._write(console_text(notification))

    async def check(self) -> list[CheckResult]:
        """Nothing to probe: the console is always there."""
        return [CheckResult(self.name, True, "writes to stdout")]
