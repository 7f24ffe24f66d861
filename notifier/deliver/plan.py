"""The Slack plan: which calls one notification (or one digest) makes, decided before any I/O.

Pure. A Slack sink builds the plan, makes its calls in order and reports what happened; every
choice between posting, replying in the incident's thread, broadcasting a reply and updating
the incident's first message is taken here, where a table of cases tests it without a server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from notifier.deliver.render.blockkit import SlackMessage
from notifier.deliver.render.digest import slack_digest
from notifier.deliver.render.slack import (
    slack_messages,
    slack_recovery_reply,
    slack_resolved_message,
)
from notifier.domain.models import MessageRef, Notification

#: `chat.update` refusals meaning the incident's first message cannot be updated: post anew.
UPDATE_GONE: Final = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "channel_not_found"}
)
#: Reply refusals meaning the thread is gone: post at the top level instead.
THREAD_GONE: Final = frozenset({"thread_not_found", "message_not_found", "channel_not_found"})
#: An owner worth looking up in Slack: something shaped like an email address.
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")

Method = Literal["chat.postMessage", "chat.update"]


@dataclass(frozen=True)
class SlackOptions:
    """What a Slack destination is configured to do.

    `channel`: the bot's channel; None for an incoming webhook, whose channel is fixed and which
    can neither reply in a thread nor update a message. `thread`: later alerts and reminders of
    an incident reply in its first message's thread. `mentions`: resolved, in order (the
    configured ones, then the owner's user ID when it was looked up).
    """

    channel: str | None = None
    thread: bool = False
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """What to do when a call is refused with one of `codes`: log `event` (with the code) and
    make `calls` instead of that call and everything after it."""

    codes: frozenset[str]
    event: str
    calls: tuple[SlackCall, ...]


@dataclass(frozen=True)
class SlackCall:
    """One Slack call. A post with no `thread_ts` is top level (for a webhook, its one kind of
    call); with one, a reply in that thread, shown in the channel too if `reply_broadcast`.
    `chat.update` replaces the message `ts` in `channel`."""

    method: Method
    message: SlackMessage
    channel: str | None
    thread_ts: str | None = None
    ts: str | None = None
    reply_broadcast: bool = False
    if_refused: Fallback | None = None

    @property
    def top_level(self) -> bool:
        """A post to the destination's channel itself, not into a thread."""
        return self.method == "chat.postMessage" and self.thread_ts is None


def plan_send(
    n: Notification, anchor: MessageRef | None, options: SlackOptions
) -> tuple[SlackCall, ...]:
    """The calls that deliver `n`, given where its incident's first message went (`anchor`).

    A recovery with an anchor (bot only, threads on or not) updates that message to "Resolved"
    and replies in its thread; if the update is refused as gone, it is posted as a new message.
    With `thread`, a reminder replies in the thread with `reply_broadcast`, a later alert replies
    without; an opening alert, or one without anchor, is posted at the top level. A reply whose
    thread is gone goes to the top level. The answer to the first post is the message's ref.
    """
    bot = options.channel is not None
    if n.kind == "recovered":
        top = _posts(slack_messages(n), options.channel)
        if not bot or anchor is None:
            return top
        reply = _replies([slack_recovery_reply(n)], anchor, options.channel)
        resolved = slack_resolved_message(n)
        update = SlackCall(
            "chat.update",
            resolved,
            anchor.channel,
            ts=anchor.ts,
            if_refused=Fallback(UPDATE_GONE, "slack_update_failed", top),
        )
        return (update, *reply)
    messages = slack_messages(n, mentions=options.mentions)
    follow_up = n.kind == "reminder" or not n.opens_incident
    if bot and options.thread and anchor is not None and follow_up:
        return _replies(messages, anchor, options.channel, broadcast=n.kind == "reminder")
    return _posts(messages, options.channel)


def plan_digest(
    notifications: Sequence[Notification], options: SlackOptions
) -> tuple[SlackCall, ...]:
    """A digest's messages, posted at the top level in order; mentions unless all recover."""
    mentions = () if all(n.kind == "recovered" for n in notifications) else options.mentions
    return _posts(slack_digest(notifications, mentions=mentions), options.channel)


def owner_to_look_up(n: Notification, mention_owner: bool) -> str | None:
    """The owner's email (trimmed, lower case) to find in Slack for a mention, or None: not
    asked for, a recovery (it mentions nobody), or an owner not shaped like an email address."""
    owner = n.monitor.owner
    if not mention_owner or n.kind == "recovered" or owner is None:
        return None
    return owner.strip().lower() if _EMAIL.fullmatch(owner.strip()) else None


def _posts(messages: Sequence[SlackMessage], channel: str | None) -> tuple[SlackCall, ...]:
    return tuple(SlackCall("chat.postMessage", message, channel) for message in messages)


def _replies(
    messages: Sequence[SlackMessage],
    anchor: MessageRef,
    channel: str | None,
    *,
    broadcast: bool = False,
) -> tuple[SlackCall, ...]:
    """Replies in the anchor's thread, the first broadcast if asked; should the thread be gone,
    all of them at the top level instead."""
    calls = [
        SlackCall("chat.postMessage", message, anchor.channel, thread_ts=anchor.ts)
        for message in messages
    ]
    fallback = Fallback(THREAD_GONE, "slack_thread_gone", _posts(messages, channel))
    calls[0] = replace(calls[0], reply_broadcast=broadcast, if_refused=fallback)
    return tuple(calls)
