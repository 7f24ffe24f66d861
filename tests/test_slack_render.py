"""Slack rendering of incidents, mentions and digests: pure, and within Block Kit limits always."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.deliver.render import blockkit, console, digest
from notifier.deliver.render import slack as render
from notifier.domain.models import Incident, Links, MonitorInfo, Notification, RunEvent
from tests.test_render import BARE_AMPERSAND, assert_within_block_kit_limits, mrkdwn_texts

OPENED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
Kind = Literal["run", "recovered", "reminder"]


def make(
    monitor_id: int = 4521,
    run_id: int = 98123,
    *,
    kind: Kind = "run",
    state: str = "alert",
    error: str | None = None,
    name: str | None = None,
    reminders: int = 0,
    owner: str | None = None,
) -> Notification:
    event = RunEvent(
        monitor_id=monitor_id,
        run_id=run_id,
        state="ok" if kind == "recovered" else state,
        started_at=OPENED + timedelta(minutes=run_id % 1000),
        diff_id=run_id,
    )
    first = RunEvent(monitor_id=monitor_id, run_id=run_id - 10, state=state, started_at=OPENED)
    incident = Incident(
        id=f"{monitor_id}-{run_id - 10}-{state}",
        opened_at=OPENED,
        first=first,
        last=first if kind != "reminder" else event,
        last_notified_at=OPENED,
        reminders=reminders,
    )
    return Notification(
        id=f"{monitor_id}-{run_id}-{kind}-{event.state}",
        kind=kind,
        event=event,
        monitor=MonitorInfo(
            id=monitor_id, name=name or f"monitor {monitor_id}", monitor_type="diff", owner=owner
        ),
        error_message=error,
        links=Links(
            monitor=f"https://app.datafold.com/monitors/{monitor_id}",
            diff=f"https://app.datafold.com/datadiffs/{run_id}/overview",
        ),
        detected_at=OPENED,
        incident=incident if kind != "run" else None,
    )


def assert_all_within_limits(messages: list[blockkit.SlackMessage]) -> None:
    assert messages
    for message in messages:
        assert_within_block_kit_limits(message)
        for text in [*mrkdwn_texts(message.blocks), message.text]:
            assert not BARE_AMPERSAND.search(text)


def error_shown(messages: list[blockkit.SlackMessage]) -> str:
    """The error text as the messages show it, parts joined, entities and fences undone."""
    parts = []
    for message in messages:
        for block in message.blocks:
            text = block.get("text", {}).get("text", "")
            if (
                block["type"] == "section" and text.startswith("*Error*\n```")
            ) or "*Error* (" in text:
                parts.append(text.split("\n```\n", 1)[1].removesuffix("\n```"))
    joined = "".join(parts).replace("`\u200b`\u200b`", "```")
    return joined.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@pytest.mark.parametrize(
    ("mention", "markup"),
    [
        ("U012AB3CD", "<@U012AB3CD>"),
        ("W012AB3CD", "<@W012AB3CD>"),
        ("S0614TZR7", "<!subteam^S0614TZR7>"),
        ("@here", "<!here>"),
        ("@channel", "<!channel>"),
    ],
)
def test_mention_markup(mention: str, markup: str) -> None:
    assert blockkit.mention_markup(mention) == markup
    message = render.slack_message(make(), mentions=[mention])
    assert message.text.startswith(markup + " :rotating_light: Alert:")
    assert message.blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": markup}}
    assert message.blocks[1]["type"] == "header"


@pytest.mark.parametrize("bad", ["@everyone", "u123", "<@U123>", "#general", "", "U1 U2"])
def test_mention_markup_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        blockkit.mention_markup(bad)


def test_recoveries_take_no_mentions() -> None:
    message = render.slack_message(make(kind="recovered"), mentions=["@here"])
    assert "<!here>" not in message.text and "<!here>" not in str(message.blocks)


def test_reminder_reads_as_one() -> None:
    message = render.slack_message(make(kind="reminder", reminders=3))
    assert message.blocks[0]["text"]["text"] == ":alarm_clock: Reminder: monitor 4521"
    assert "still failing since 2025-03-14 09:30:00 UTC, reminder 3" in message.text
    assert message.text.endswith("run 98123")
    summary = message.blocks[1]["text"]["text"]
    assert summary.startswith("*Still failing* (alert) since 2025-03-14 09:30:00 UTC")
    assert "This is reminder 3." in summary


def test_recovered_and_resolved() -> None:
    n = make(kind="recovered", run_id=98200)
    top = render.slack_message(n)
    assert top.blocks[0]["text"]["text"] == ":white_check_mark: Recovered: monitor 4521"
    assert "Was alert since 2025-03-14 09:30:00 UTC" in top.blocks[1]["text"]["text"]
    resolved = render.slack_resolved_message(n)
    assert resolved.blocks[0]["text"]["text"] == ":white_check_mark: Resolved: monitor 4521"
    summary = resolved.blocks[1]["text"]["text"]
    assert summary.startswith("*Resolved.* Was alert since 2025-03-14 09:30:00 UTC")
    assert "recovered by run 98200" in summary
    assert "<https://app.datafold.com/monitors/4521|Open monitor>" in str(resolved.blocks)
    reply = render.slack_recovery_reply(n)
    assert reply.text.startswith(":white_check_mark: Recovered: run 98200 passed")
    for message in (top, resolved, reply):
        assert_within_block_kit_limits(message)


@pytest.mark.parametrize("length", [0, 1, 2_959, 2_961, 11_999, 12_000, 12_001, 100_000, 1_000_000])
@pytest.mark.parametrize("alphabet", ["e", "<&>", "😀", "ab\n", "```x"])
def test_long_errors_split_without_loss_up_to_the_cap(length: int, alphabet: str) -> None:
    error = (alphabet * (length // len(alphabet) + 1))[:length]
    messages = render.slack_messages(make(state="error", error=error or None))
    assert_all_within_limits(messages)
    assert len(messages) == 1  # the cap keeps any error to one message
    shown = error_shown(messages)
    assert shown == error[: render.ERROR_TEXT_MAX]
    notes = [b for b in messages[0].blocks if "truncated" in str(b)]
    assert len(notes) == (1 if length > render.ERROR_TEXT_MAX else 0)


def test_past_fifty_blocks_an_error_goes_on_in_more_messages() -> None:
    error = "&" * 200_000  # 5 units each once escaped: about 340 sections
    n = make(state="error", error=error)
    messages = render.slack_messages(n, mentions=["@here"], error_max=len(error))
    assert len(messages) > 1
    assert_all_within_limits(messages)
    assert error_shown(messages) == error
    assert messages[0].text.startswith("<!here> ")
    assert messages[1].blocks[0]["elements"][0]["text"] == f"(continued, part 2 of {len(messages)})"
    assert [m.completes for m in messages] == [frozenset()] * (len(messages) - 1) + [{n.id}]


def digest_events(messages: list[blockkit.SlackMessage]) -> list[tuple[str, int]]:
    """(monitor title, run ID) for each event line, in order."""
    found = []
    for text in (t for m in messages for t in mrkdwn_texts(m.blocks)):
        title = re.match(r"\*(.+?)(?: \(diff\))?\*", text)
        for run in re.findall(r"^• .*? — run (\d+)", text, flags=re.MULTILINE):
            assert title is not None
            found.append((title[1], int(run)))
    return found


def test_digest_groups_by_monitor_most_severe_first() -> None:
    notifications = [
        make(1, 101, kind="recovered"),
        make(2, 201, kind="reminder", reminders=1),
        make(3, 302, state="error", error="boom <x>"),
        make(4, 401),
        make(3, 301),
        make(2, 202, kind="recovered"),
        make(5, 501, state="error"),
        make(5, 502, state="error"),
    ]
    [message] = digest.slack_digest(notifications, mentions=["S0614TZR7"])
    assert message.blocks[0]["text"]["text"] == "<!subteam^S0614TZR7>"
    assert message.blocks[1]["text"]["text"] == ":rotating_light: 8 notifications from 5 monitors"
    assert message.text.startswith("<!subteam^S0614TZR7> :rotating_light: 8 notifications")
    # Alerts (3 with two events before 4 with one), errors, reminders, recoveries.
    assert digest_events([message]) == [
        ("monitor 3", 301),
        ("monitor 3", 302),
        ("monitor 4", 401),
        ("monitor 5", 501),
        ("monitor 5", 502),
        ("monitor 2", 201),
        ("monitor 2", 202),
        ("monitor 1", 101),
    ]
    text = "\n".join(mrkdwn_texts(message.blocks))
    assert "<https://app.datafold.com/datadiffs/302/overview|diff>" in text
    assert "`boom &lt;x&gt;`" in text
    assert message.completes == {n.id for n in notifications}


def test_digest_of_recoveries_only_takes_no_mentions() -> None:
    [message] = digest.slack_digest([make(1, 101, kind="recovered")], mentions=["@channel"])
    assert "<!channel>" not in message.text
    assert message.blocks[0]["text"]["text"] == ":white_check_mark: 1 notification from 1 monitor"


@pytest.mark.parametrize(("monitors", "per_monitor"), [(500, 1), (1, 500), (60, 9), (3, 2)])
def test_big_digests_split_at_group_boundaries_and_lose_nothing(
    monitors: int, per_monitor: int
) -> None:
    notifications = [
        make(m, 1000 * m + r, state="error" if r % 2 else "alert", error="x" * 300)
        for m in range(1, monitors + 1)
        for r in range(per_monitor)
    ]
    messages = digest.slack_digest(notifications, mentions=["@here"])
    assert_all_within_limits(messages)
    assert sorted(run for _, run in digest_events(messages)) == sorted(
        n.event.run_id for n in notifications
    )
    completes = [m.completes for m in messages]
    assert set().union(*completes) == {n.id for n in notifications}
    assert sum(len(c) for c in completes) == len(notifications)  # each in exactly one message
    if per_monitor * 130 < blockkit.SECTION_TEXT_MAX:  # every group fits one section
        for message in messages:
            groups = [t for t in mrkdwn_texts(message.blocks) if "(continued)" in t]
            assert groups == []  # no group split across sections, hence messages
    assert "<!here>" in messages[0].text and all("<!here>" not in m.text for m in messages[1:])


TEXTS = st.text(st.characters(codec="utf-8"), max_size=400) | st.sampled_from(
    ["&" * 5_000, "😀" * 3_000, "```" * 2_000, "<@U123>" * 700]
)


@st.composite
def notifications(draw: st.DrawFn) -> Notification:
    kind: Kind = draw(st.sampled_from(["run", "recovered", "reminder"]))
    n = make(
        draw(st.integers(1, 20)),
        draw(st.integers(11, 10**6)),
        kind=kind,
        state=draw(st.sampled_from(["alert", "error", "queued", "w&ird<"])),
        error=draw(st.none() | TEXTS),
        name=draw(st.none() | TEXTS.filter(bool)),
        reminders=draw(st.integers(0, 99)),
    )
    return n.model_copy(update={"id": draw(st.uuids()).hex})


def mention_lists(max_size: int) -> st.SearchStrategy[list[str]]:
    """Lists of the mentions a sink takes: `@here`, a user ID, a user-group ID."""
    return st.lists(st.sampled_from(["@here", "U012AB3CD", "S0614TZR7"]), max_size=max_size)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(notifications(), min_size=1, max_size=80),
    mention_lists(3),
)
def test_any_digest_stays_within_limits(batch: list[Notification], mentions: list[str]) -> None:
    messages = digest.slack_digest(batch, mentions=mentions)
    assert_all_within_limits(messages)
    assert set().union(*(m.completes for m in messages)) == {n.id for n in batch}


@settings(max_examples=60, deadline=None)
@given(notifications(), st.lists(st.sampled_from(["@here", "U012AB3CD"]), max_size=200))
def test_any_notification_stays_within_limits(n: Notification, mentions: list[str]) -> None:
    messages = render.slack_messages(n, mentions=mentions)
    assert_all_within_limits(messages)
    assert messages[-1].completes == {n.id}
    if n.kind == "recovered":
        assert_within_block_kit_limits(render.slack_resolved_message(n))
        assert_within_block_kit_limits(render.slack_recovery_reply(n))
    elif n.error_message:
        assert error_shown(messages) == n.error_message[: render.ERROR_TEXT_MAX]


@pytest.mark.parametrize(
    ("kind", "first_line"),
    [
        ("recovered", "✅ Recovered: monitor 4521 (diff) passing again, failing since 2025-03-14"),
        ("reminder", "⏰ Reminder: monitor 4521 (diff) still failing since 2025-03-14 09:30:00"),
    ],
)
def test_console_marks_recoveries_and_reminders(kind: Kind, first_line: str) -> None:
    text = console.console_text(make(kind=kind, reminders=2))
    assert text.splitlines()[0].startswith(first_line)
