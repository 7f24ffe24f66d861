"""Setting and lifting mutes: the one rule both state stores follow. Pure.

`mute` adds one; `unmute` lifts those a `MuteSelector` matches. Either way the mutes that have
run out are dropped, so the stored list only holds mutes that may still silence something.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from notifier.domain.models import Mute


@dataclass(frozen=True)
class MuteSelector:
    """Which mutes `unmute` lifts: those of a monitor, of a tag (case and surrounding spaces
    ignored, as a mute matches tags) or the one with an ID.

    A mute matches when it fits every part given. At least one part is required, so a selector
    built from missing options never matches (and lifts) every mute.
    """

    monitor_id: int | None = None
    tag: str | None = None
    mute_id: str | None = None

    def __post_init__(self) -> None:
        if self.monitor_id is None and self.tag is None and self.mute_id is None:
            raise ValueError("a mute selector needs a monitor ID, a tag or a mute ID")

    def matches(self, mute: Mute) -> bool:
        """Whether `mute` fits every part of this selector."""
        return (
            (self.monitor_id is None or mute.monitor_id == self.monitor_id)
            and (self.mute_id is None or mute.id == self.mute_id)
            and (self.tag is None or (mute.tag is not None and _same_tag(mute.tag, self.tag)))
        )


def with_mute(mutes: Iterable[Mute], mute: Mute, now: datetime) -> list[Mute]:
    """The mutes once `mute` is set: those still active at `now`, less any with its ID (it
    replaces them), then `mute`."""
    return [m for m in mutes if m.until > now and m.id != mute.id] + [mute]


def lift(
    mutes: Iterable[Mute], selector: MuteSelector, now: datetime
) -> tuple[list[Mute], list[Mute]]:
    """(kept, lifted): the mutes active at `now` that `selector` does not match, and those it
    does. Mutes that have run out are in neither: lifting drops them too."""
    kept: list[Mute] = []
    lifted: list[Mute] = []
    for mute in mutes:
        if mute.until > now:
            (lifted if selector.matches(mute) else kept).append(mute)
    return kept, lifted


def _same_tag(one: str, other: str) -> bool:
    return one.strip().casefold() == other.strip().casefold()
