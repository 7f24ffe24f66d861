"""The Slack plan: every choice between post, reply, broadcast and update, decided without I/O."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from notifier.deliver.plan import (
    THREAD_GONE,
    UPDATE_GONE,
    SlackCall,
    SlackOptions,
    owner_to_look_up,
    plan_digest,
    plan_send,
)
from notifier.deliver.render import slack as render
from notifier.deliver.render.blockkit import SlackMessage
from notifier.deliver.render.digest import slack_digest
from notifier.domain.models import MessageRef, Notification
from tests.test_render import assert_within_block_kit_limits
from tests.test_slack_incidents import follow_up, opening
from tests.test_slack_render import Kind, make

CHANNEL = "C0123ABCD"
ANCHOR = MessageRef(channel="C0ANCHOR1", ts="1700000000.000100")
BOT = SlackOptions(channel=CHANNEL, thread=True, mentions=("@here", "U0OWNER1"))
UNTHREADED = SlackOptions(channel=CHANNEL, mentions=("@here",))
WEBHOOK = SlackOptions(thread=True, mentions=("@here",))  # no channel: an incoming webhook

#: A call as (where, channel, thread_ts or ts, reply_broadcast, fallback event, fallback calls).
Step = tuple[str, str | None, str | None, bool, str | None, tuple["Step", ...]]

TOP = ("top", CHANNEL, None, False, None, ())
WEBHOOK_TOP = ("top", None, None, False, None, ())
REPLY = ("reply", ANCHOR.channel, ANCHOR.ts, False, "slack_thread_gone", (TOP,))
BROADCAST = ("reply", ANCHOR.channel, ANCHOR.ts, True, "slack_thread_gone", (TOP,))
UPDATE = ("update", ANCHOR.channel, ANCHOR.ts, False, "slack_update_failed", (TOP,))


def step(call: SlackCall) -> Step:
    where = "update" if call.method == "chat.update" else "top" if call.top_level else "reply"
    fallback = call.if_refused
    return (
        where,
        call.channel,
        call.ts if call.method == "chat.update" else call.thread_ts,
        call.reply_broadcast,
        fallback.event if fallback else None,
        tuple(step(c) for c in fallback.calls) if fallback else (),
    )


def reminder() -> Notification:
    return make(run_id=98133, kind="reminder", reminders=2)


def recovery() -> Notification:
    return make(run_id=98140, kind="recovered")


Messages = Callable[[Notification, SlackOptions], list[SlackMessage]]


def alert_messages(n: Notification, options: SlackOptions) -> list[SlackMessage]:
    return render.slack_messages(n, mentions=options.mentions)


def plain_messages(n: Notification, options: SlackOptions) -> list[SlackMessage]:
    return render.slack_messages(n)


def resolve_and_reply(n: Notification, options: SlackOptions) -> list[SlackMessage]:
    return [render.slack_resolved_message(n), render.slack_recovery_reply(n)]


CASES: list[tuple[str, Callable[[], Notification], MessageRef | None, SlackOptions, list[Step]]]
CASES = [
    ("first alert: top level", opening, None, BOT, [TOP]),
    ("the opening alert, anchor known: top level", opening, ANCHOR, BOT, [TOP]),
    ("a repeat alert: reply in the thread", follow_up, ANCHOR, BOT, [REPLY]),
    ("a repeat alert without threads: top level", follow_up, ANCHOR, UNTHREADED, [TOP]),
    ("a repeat alert, anchor unknown: top level", follow_up, None, BOT, [TOP]),
    ("a reminder: reply with broadcast", reminder, ANCHOR, BOT, [BROADCAST]),
    ("a reminder without threads: top level", reminder, ANCHOR, UNTHREADED, [TOP]),
    ("a reminder, anchor unknown: top level", reminder, None, BOT, [TOP]),
    ("a recovery: update, then reply", recovery, ANCHOR, BOT, [UPDATE, REPLY]),
    (
        "a recovery without threads: update, then reply",
        recovery,
        ANCHOR,
        UNTHREADED,
        [UPDATE, REPLY],
    ),
    ("a recovery, anchor unknown: top level", recovery, None, BOT, [TOP]),
    ("webhook: a repeat alert at the top level", follow_up, ANCHOR, WEBHOOK, [WEBHOOK_TOP]),
    ("webhook: a reminder at the top level", reminder, ANCHOR, WEBHOOK, [WEBHOOK_TOP]),
    ("webhook: a recovery at the top level", recovery, ANCHOR, WEBHOOK, [WEBHOOK_TOP]),
]


@pytest.mark.parametrize(
    ("build", "anchor", "options", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_send_plan(
    build: Callable[[], Notification],
    anchor: MessageRef | None,
    options: SlackOptions,
    expected: list[Step],
) -> None:
    calls = plan_send(build(), anchor, options)
    assert [step(call) for call in calls] == expected


MESSAGES: list[tuple[str, Callable[[], Notification], MessageRef | None, SlackOptions, Messages]]
MESSAGES = [
    ("an alert takes the mentions", follow_up, ANCHOR, BOT, alert_messages),
    ("a reminder takes the mentions", reminder, ANCHOR, BOT, alert_messages),
    ("a webhook's alert takes its mentions", opening, None, WEBHOOK, alert_messages),
    ("an update resolves, the reply says so", recovery, ANCHOR, BOT, resolve_and_reply),
    ("a recovery posted anew takes no mentions", recovery, None, BOT, plain_messages),
    ("a webhook's recovery takes no mentions", recovery, ANCHOR, WEBHOOK, plain_messages),
]


@pytest.mark.parametrize(
    ("build", "anchor", "options", "rendered"),
    [case[1:] for case in MESSAGES],
    ids=[case[0] for case in MESSAGES],
)
def test_send_plan_messages_are_the_renderers(
    build: Callable[[], Notification],
    anchor: MessageRef | None,
    options: SlackOptions,
    rendered: Messages,
) -> None:
    n = build()
    calls = plan_send(n, anchor, options)
    assert [call.message for call in calls] == rendered(n, options)


def all_calls(calls: tuple[SlackCall, ...]) -> list[SlackCall]:
    """The calls and, recursively, their fallbacks'."""
    found = []
    for call in calls:
        found.append(call)
        if call.if_refused is not None:
            found += all_calls(call.if_refused.calls)
    return found


@pytest.mark.parametrize(
    ("name", "build", "anchor", "options", "_"), CASES, ids=[c[0] for c in CASES]
)
def test_every_planned_message_is_valid_block_kit(
    name: str,
    build: Callable[[], Notification],
    anchor: MessageRef | None,
    options: SlackOptions,
    _: list[Step],
) -> None:
    for call in all_calls(plan_send(build(), anchor, options)):
        assert_within_block_kit_limits(call.message)


def test_fallbacks_tolerate_only_a_gone_thread_or_message() -> None:
    update, reply = plan_send(recovery(), ANCHOR, BOT)
    assert update.if_refused is not None and update.if_refused.codes == UPDATE_GONE
    assert reply.if_refused is not None and reply.if_refused.codes == THREAD_GONE
    assert [call.message for call in update.if_refused.calls] == render.slack_messages(recovery())


def big_batch() -> list[Notification]:
    return [make(monitor_id=m, run_id=90000 + m * 10 + r) for m in range(60) for r in range(9)]


DIGESTS: list[tuple[str, Callable[[], list[Notification]], SlackOptions, bool]]
DIGESTS = [
    ("bot: alerts and a recovery, with mentions", lambda: [opening(), recovery()], BOT, True),
    (
        "bot: recoveries only, no mentions",
        lambda: [recovery(), make(7, 1, kind="recovered")],
        BOT,
        False,
    ),
    ("webhook: with mentions", lambda: [reminder(), follow_up()], WEBHOOK, True),
    ("bot: a big digest over several messages", big_batch, UNTHREADED, True),
]


@pytest.mark.parametrize(
    ("batch", "options", "mentioned"), [d[1:] for d in DIGESTS], ids=[d[0] for d in DIGESTS]
)
def test_digest_plan(
    batch: Callable[[], list[Notification]], options: SlackOptions, mentioned: bool
) -> None:
    notifications = batch()
    calls = plan_digest(notifications, options)
    top = ("top", options.channel, None, False, None, ())
    assert [step(call) for call in calls] == [top] * len(calls)
    mentions = options.mentions if mentioned else ()
    assert [call.message for call in calls] == slack_digest(notifications, mentions=mentions)
    assert calls[0].message.text.startswith("<!here>") is mentioned
    for call in calls:
        assert_within_block_kit_limits(call.message)


@pytest.mark.parametrize(
    ("owner", "mention_owner", "kind", "expected"),
    [
        ("ana@example.com", True, "run", "ana@example.com"),
        ("  Ana@Example.COM ", True, "reminder", "ana@example.com"),
        ("ana@example.com", False, "run", None),
        ("ana@example.com", True, "recovered", None),
        (None, True, "run", None),
        ("ana", True, "run", None),
        ("ana@localhost", True, "run", None),
        ("ana smith@example.com", True, "run", None),
    ],
)
def test_owner_to_look_up(
    owner: str | None, mention_owner: bool, kind: Kind, expected: str | None
) -> None:
    n = make(kind=kind, owner=owner)
    assert owner_to_look_up(n, mention_owner) == expected
