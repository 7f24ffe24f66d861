"""What the `check` command reports per destination, and the seam it calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CheckResult:
    """One line of `check` output: what was checked, whether it passed, what was seen."""

    name: str
    ok: bool
    detail: str


class CheckableSink(Protocol):
    """A sink that can test its configuration without delivering a notification."""

    name: str

    async def check(self) -> list[CheckResult]:
        """Probe the destination; never raises for a destination problem, reports it instead."""
        ...
