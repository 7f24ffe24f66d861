"""The one rule for setting and lifting mutes (`notifier.domain.mutes`), as tables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notifier.domain.models import Mute
from notifier.domain.mutes import MuteSelector, lift, with_mute
from tests.fakes.states import T0, mute


@pytest.mark.parametrize(
    ("selector", "candidate", "matches"),
    [
        (MuteSelector(monitor_id=7), mute("a", monitor_id=7), True),
        (MuteSelector(monitor_id=7), mute("a", monitor_id=8), False),
        (MuteSelector(monitor_id=7), mute("a", tag="7"), False),
        (MuteSelector(tag="Finance"), mute("a", tag="finance"), True),
        (MuteSelector(tag=" finance "), mute("a", tag="FINANCE "), True),
        (MuteSelector(tag="finance"), mute("a", tag="finance-eu"), False),
        (MuteSelector(tag="finance"), mute("a", monitor_id=7), False),
        (MuteSelector(mute_id="a"), mute("a", monitor_id=7), True),
        (MuteSelector(mute_id="a"), mute("A", monitor_id=7), False),
        # Every part given must fit (the command line gives exactly one).
        (MuteSelector(monitor_id=7, mute_id="a"), mute("a", monitor_id=7), True),
        (MuteSelector(monitor_id=7, mute_id="b"), mute("a", monitor_id=7), False),
        (MuteSelector(monitor_id=7, tag="ops"), mute("a", monitor_id=7), False),
    ],
)
def test_a_selector_matches_a_mute_that_fits_every_part(
    selector: MuteSelector, candidate: Mute, matches: bool
) -> None:
    assert selector.matches(candidate) is matches


def test_an_empty_selector_is_refused_so_it_never_lifts_every_mute() -> None:
    with pytest.raises(ValueError, match="needs"):
        MuteSelector()


@pytest.mark.parametrize(
    ("before", "now_minutes", "after"),
    [
        ([], 0, ["new"]),
        (["a"], 0, ["a", "new"]),
        (["short", "a"], 30, ["a", "new"]),  # "short" ran out at 10 minutes
        (["new", "a"], 0, ["a", "new"]),  # the same ID is replaced
    ],
)
def test_setting_a_mute_keeps_the_active_ones_and_replaces_its_id(
    before: list[str], now_minutes: int, after: list[str]
) -> None:
    mutes = [mute(m, monitor_id=1, minutes=10 if m == "short" else 60) for m in before]
    new = mute("new", tag="ops", minutes=90)
    result = with_mute(mutes, new, T0 + timedelta(minutes=now_minutes))
    assert [m.id for m in result] == after
    assert result[-1] == new


@pytest.mark.parametrize(
    ("selector", "now_minutes", "kept", "lifted"),
    [
        (MuteSelector(monitor_id=1), 0, ["t", "short"], ["m"]),
        (MuteSelector(tag="OPS"), 0, ["m", "short"], ["t"]),
        (MuteSelector(mute_id="short"), 0, ["m", "t"], ["short"]),
        (MuteSelector(mute_id="short"), 30, ["m", "t"], []),  # run out: dropped, not lifted
        (MuteSelector(monitor_id=9), 30, ["m", "t"], []),  # nothing matched: still pruned
        (MuteSelector(monitor_id=1), 120, [], []),
    ],
)
def test_lifting_returns_the_active_matches_and_drops_what_ran_out(
    selector: MuteSelector, now_minutes: int, kept: list[str], lifted: list[str]
) -> None:
    mutes = [
        mute("m", monitor_id=1),
        mute("t", tag="ops"),
        mute("short", monitor_id=2, minutes=10),
    ]
    still, gone = lift(mutes, selector, T0 + timedelta(minutes=now_minutes))
    assert [m.id for m in still] == kept
    assert [m.id for m in gone] == lifted
