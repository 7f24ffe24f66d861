"""The email renderer: subject per kind, both parts, headers, escaping, and stable Message-IDs."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Literal, cast

import pytest

from notifier.deliver.render.email import (
    MESSAGE_ID_DOMAIN,
    digest_mail,
    message_id,
    notification_mail,
    subject,
)
from notifier.domain.models import Incident, Notification, RunEvent
from tests.fakes.samples import DETECTED, notification

SENDER, TO = "notifier@example.test", ["oncall@example.test", "data@example.test"]
#: RFC 5322 msg-id with a dot-atom on both sides, as this renderer writes it.
MSG_ID = re.compile(r"<[A-Za-z0-9.-]+@[A-Za-z0-9.-]+>")


def in_incident(
    n: Notification, opener: Notification, kind: Literal["run", "recovered", "reminder"] = "run"
) -> Notification:
    """`n` as a later notification of the incident `opener` opened."""
    incident = Incident(
        id=opener.id,
        opened_at=opener.detected_at,
        first=opener.event,
        last=opener.event,
        last_notified_at=opener.detected_at,
    )
    return n.model_copy(update={"kind": kind, "incident": incident})


def opening(n: Notification) -> Notification:
    return in_incident(n, n)


def mail(n: Notification, thread_id: str | None = None) -> EmailMessage:
    """Rendered, serialised and parsed back, as a receiving server sees it."""
    raw = notification_mail(n, sender=SENDER, to=TO, thread_id=thread_id).as_bytes()
    return cast(EmailMessage, message_from_bytes(raw, policy=policy.default))


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return cast(EmailMessage, plain).get_content(), cast(EmailMessage, html).get_content()


OK_EVENT = RunEvent(monitor_id=4521, run_id=98124, state="ok")


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (notification(), "[Alert] orders prod vs staging (run 98123)"),
        (notification(state="error", error="boom"), "[Error] orders prod vs staging (run 98123)"),
        (notification(state="weird"), "[Weird] orders prod vs staging (run 98123)"),
        (
            in_incident(
                notification().model_copy(update={"event": OK_EVENT}), notification(), "recovered"
            ),
            "[Recovered] orders prod vs staging (run 98124)",
        ),
        (
            in_incident(notification(), notification(), "reminder"),
            "[Reminder] orders prod vs staging (run 98123)",
        ),
        (notification(name=None), "[Alert] Monitor 4521 (run 98123)"),
        (notification(name="Umsätze 💶 täglich"), "[Alert] Umsätze 💶 täglich (run 98123)"),
    ],
)
def test_the_subject_says_the_state_and_the_monitor(n: Notification, expected: str) -> None:
    assert subject(n) == expected
    assert mail(n)["Subject"] == expected


def test_a_mail_has_both_parts_and_its_headers() -> None:
    n = notification(state="error", error="relation orders does not exist")
    message = mail(n)
    assert message["From"] == SENDER
    assert message["To"] == ", ".join(TO)
    assert message["Message-ID"] == message_id(n.id)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None and message["Date"].datetime == DETECTED
    plain, html = parts(message)
    for text in (plain, html):
        assert "relation orders does not exist" in text
        assert "https://app.datafold.com/datadiffs/77001/overview" in text
        assert "finance, tier-1" in text and "data-team@example.com" in text
    assert "<table>" in html and "<table>" not in plain


def test_everything_from_datafold_is_escaped_in_the_html_part() -> None:
    hostile = "<script>alert(1)</script>"
    n = notification(
        name=hostile, error="<img src=x onerror=steal()>", tags=["<b>t</b>"], owner="a&b"
    )
    _, html = parts(mail(n))
    assert "<script>" not in html and "<img" not in html and "<b>t</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a&amp;b" in html


@pytest.mark.parametrize(
    "name", ["evil\r\nBcc: victim@example.test", "x\nSubject: other", "a\rb\x0bc\u2028d"]
)
def test_line_breaks_in_a_monitor_name_cannot_add_headers(name: str) -> None:
    message = mail(notification(name=name))
    assert message["Bcc"] is None
    assert len(message.get_all("Subject") or []) == 1
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Subject"].startswith("[Alert] ")


def test_the_message_id_is_stable_per_notification_and_differs_between_them() -> None:
    first, again = notification(), notification(detected_at=DETECTED + timedelta(hours=1))
    assert mail(first)["Message-ID"] == mail(again)["Message-ID"]  # a retry: same ID
    assert mail(first)["Message-ID"] != mail(notification(run_id=98124))["Message-ID"]
    for key in ("4521-98123-alert", "4521-1-we!rd/státe <x>", "", "." * 300):
        assert MSG_ID.fullmatch(message_id(key)), key
        assert message_id(key).endswith(f"@{MESSAGE_ID_DOMAIN}>")
    assert message_id("a b") != message_id("a-b")  # the readable part alone would collide


def test_an_incidents_later_mails_reply_to_its_first() -> None:
    opener = opening(notification())
    assert mail(opener)["In-Reply-To"] is None and mail(opener)["References"] is None
    assert mail(notification())["In-Reply-To"] is None  # no incident tracked
    anchor = mail(opener)["Message-ID"]
    later = in_incident(notification(run_id=98130), opener)
    reminder = in_incident(notification().model_copy(update={"id": "r-1"}), opener, "reminder")
    for n in (later, reminder):
        assert mail(n)["In-Reply-To"] == anchor and mail(n)["References"] == anchor
    handed_back = message_id("anchor-from-the-worker")
    assert mail(later, thread_id=handed_back)["In-Reply-To"] == handed_back


def test_a_digest_is_one_mail_listing_all_most_severe_first() -> None:
    ns = [
        notification(run_id=1, state="ok"),
        notification(run_id=2, state="alert", name="<b>orders</b>"),
        notification(run_id=3, state="error"),
    ]
    digest = digest_mail(ns, sender=SENDER, to=TO)
    message = cast(EmailMessage, message_from_bytes(digest.as_bytes(), policy=policy.default))
    assert message["Subject"] == "[Digest] 3 notifications from 1 monitor"
    plain, html = parts(message)
    assert plain.index("run 2") < plain.index("run 3") < plain.index("run 1")
    assert "<b>orders</b>" not in html and "&lt;b&gt;orders&lt;/b&gt;" in html
    reordered = digest_mail(list(reversed(ns)), sender=SENDER, to=TO)
    assert reordered["Message-ID"] == digest["Message-ID"]
    assert digest_mail(ns[:2], sender=SENDER, to=TO)["Message-ID"] != digest["Message-ID"]
