"""systemd's notify protocol (Type=notify): READY, STATUS, WATCHDOG and STOPPING via sdnotify."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import sdnotify


class SystemdNotify:
    """Talks to systemd when it asked for it (NOTIFY_SOCKET); built only by the CLI."""

    def __init__(self, watchdog_seconds: float | None) -> None:
        self._notifier = sdnotify.SystemdNotifier()
        self.watchdog_seconds = watchdog_seconds

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int) -> SystemdNotify | None:
        """None unless systemd set NOTIFY_SOCKET; the watchdog only when it is meant for us."""
        if not environ.get("NOTIFY_SOCKET"):
            return None
        watchdog = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid)):
            watchdog = int(usec) / 1_000_000
        return cls(watchdog)

    def ready(self) -> None:
        self._notifier.notify("READY=1")

    def status(self, text: str) -> None:
        self._notifier.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self._notifier.notify("STOPPING=1")

    async def watchdog(self) -> None:
        """Ping at half the watchdog interval for as long as the event loop runs."""
        if not self.watchdog_seconds:
            return
        while True:
            self._notifier.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_seconds / 2)
