"""The email sink against a real SMTP server (aiosmtpd on 127.0.0.1): plain, STARTTLS with a
throwaway CA and AUTH, implicit TLS, refusals, a dropped connection, threading and digests."""

from __future__ import annotations

import socket
import ssl
from email.message import EmailMessage
from typing import Any, cast

import pytest
import trustme

from notifier.deliver.render.email import message_id
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.email import EmailSink
from notifier.domain.models import MessageRef
from tests.fakes.email import PASSWORD, USERNAME, MailServer
from tests.fakes.samples import notification
from tests.test_email_render import in_incident, opening

# aiosmtpd itself sets the deprecated Session.login_data on every successful AUTH.
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")

SENDER, TO = "notifier@example.test", ["oncall@example.test", "data@example.test"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA) -> ssl.SSLContext:
    """The client's verification with the throwaway CA added, as NOTIFIER_CA_BUNDLE would."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def sink(port: int, **options: Any) -> EmailSink:
    return EmailSink("127.0.0.1", port=port, sender=SENDER, to=TO, timeout=5, **options)


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return cast(EmailMessage, part).get_content()


async def test_a_plain_mail_arrives_with_both_parts_and_its_headers() -> None:
    server = MailServer()
    n = notification(state="error", error="relation orders does not exist")
    with server.serve() as port:
        assert await sink(port, security="none").send(n) is None  # opens no incident
    [received] = server.mails
    assert received.sender == SENDER and received.recipients == TO
    message = received.message
    assert message["Subject"] == "[Error] orders prod vs staging (run 98123)"
    assert message["Message-ID"] == message_id(n.id)
    assert "relation orders does not exist" in body(message, "plain")
    assert "relation orders does not exist" in body(message, "html")


async def test_starttls_with_the_process_ca_and_auth(
    ca: trustme.CA, trusted: ssl.SSLContext
) -> None:
    server = MailServer(ca=ca, credentials=(USERNAME, PASSWORD))
    with server.serve() as port:
        mailer = sink(port, username=USERNAME, password=PASSWORD, tls=trusted)
        await mailer.send(notification())
        [check] = await mailer.check()
        # Without the CA, the server's certificate is refused: verification is never off.
        untrusted = sink(port, username=USERNAME, password=PASSWORD)
        with pytest.raises(DeliveryError, match="TLS") as refused:
            await untrusted.send(notification())
    assert len(server.mails) == 1  # check sent nothing
    assert server.logins == [USERNAME, USERNAME]
    assert check.ok and "starttls; authenticated" in check.detail
    assert refused.value.whole_destination


async def test_implicit_tls(ca: trustme.CA, trusted: ssl.SSLContext) -> None:
    server = MailServer(ca=ca, implicit_tls=True)
    with server.serve() as port:
        await sink(port, security="tls", tls=trusted).send(notification())
    assert len(server.mails) == 1


async def test_starttls_is_required_when_configured() -> None:
    with MailServer().serve() as port:  # offers no STARTTLS
        with pytest.raises(DeliveryError) as error:
            await sink(port).send(notification())
    assert error.value.whole_destination


async def test_refused_credentials_are_one_line_without_the_password(
    ca: trustme.CA, trusted: ssl.SSLContext
) -> None:
    server = MailServer(ca=ca, credentials=(USERNAME, PASSWORD))
    wrong = "not-the-" + PASSWORD
    with server.serve() as port:
        mailer = sink(port, username=USERNAME, password=wrong, tls=trusted, name="oncall-mail")
        with pytest.raises(DeliveryError) as error:
            await mailer.send(notification())
        [check] = await mailer.check()
    assert str(error.value) == "oncall-mail: the SMTP server refused the credentials (535)"
    assert error.value.whole_destination and error.value.__cause__ is None
    assert not check.ok and "535" in check.detail
    for text in (str(error.value), check.detail, repr(mailer)):
        assert wrong not in text and PASSWORD not in text
    assert server.mails == []


async def test_a_connection_dropped_in_the_middle_of_data_fails_the_destination() -> None:
    server = MailServer(drop_in_data=True)
    with server.serve() as port:
        with pytest.raises(DeliveryError, match="dropped the connection") as error:
            await sink(port, security="none").send(notification())
    assert error.value.whole_destination


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast(int, probe.getsockname()[1])


async def test_a_server_that_is_not_there_fails_the_destination() -> None:
    mailer = sink(closed_port(), security="none")
    with pytest.raises(DeliveryError) as error:
        await mailer.send(notification())
    assert error.value.whole_destination
    [check] = await mailer.check()
    assert not check.ok


async def test_refused_recipients_fail_this_mail_only() -> None:
    server = MailServer(refuse=frozenset(TO))
    with server.serve() as port:
        with pytest.raises(DeliveryError, match="refused every recipient") as error:
            await sink(port, security="none").send(notification())
    assert not error.value.whole_destination and error.value.permanent  # 550: not resent


async def test_a_mail_some_recipients_took_is_delivered() -> None:
    server = MailServer(refuse=frozenset(TO[:1]))
    with server.serve() as port:
        await sink(port, security="none").send(notification())  # a retry would repeat it
    [received] = server.mails
    assert received.recipients == TO[1:]


async def test_a_server_that_never_answers_is_bounded_by_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never greets
        mailer = EmailSink(
            "127.0.0.1",
            port=silent.getsockname()[1],
            sender=SENDER,
            to=TO,
            timeout=0.3,
            security="none",
        )
        with pytest.raises(DeliveryError, match="did not answer in time") as error:
            await mailer.send(notification())
    assert error.value.whole_destination


async def test_the_incidents_later_mails_reply_to_its_first() -> None:
    server = MailServer()
    opener = opening(notification())
    later = in_incident(notification(run_id=98130), opener)
    with server.serve() as port:
        mailer = sink(port, security="none")
        anchor = await mailer.send(opener)
        assert anchor == MessageRef(channel="email", ts=message_id(opener.id))
        assert await mailer.send(later, thread=anchor) is None
        await mailer.send(opener)  # a retry after a restart: the same Message-ID again
    first, second, retried = (mail.message for mail in server.mails)
    assert second["In-Reply-To"] == first["Message-ID"] == second["References"]
    assert retried["Message-ID"] == first["Message-ID"]


async def test_a_storm_goes_out_as_one_digest() -> None:
    server = MailServer()
    storm = [notification(run_id=run) for run in range(1, 8)]
    with server.serve() as port:
        mailer = sink(port, security="none", digest_threshold=5)
        await mailer.send_digest(storm)
    [digest] = server.mails
    assert digest.message["Subject"] == "[Digest] 7 notifications from 1 monitor"
    assert all(f"(run {run})" in body(digest.message, "plain") for run in range(1, 8))
