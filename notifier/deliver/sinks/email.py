"""The email sink: each notification one mail over SMTP (`aiosmtplib`), STARTTLS, implicit TLS or
plain (to this machine), with AUTH when credentials are set.

The Message-ID derives from the notification ID, so a retry after a restart re-sends the same
one and the receiving side can drop the copy; an incident's later mails reply to its first.
Neither the password nor the server's own words appear in an error: the reply code only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from notifier.deliver.render.email import digest_mail, message_id, notification_mail
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification
from notifier.route.destinations import EmailDestination

Security = Literal["starttls", "tls", "none"]
#: What `MessageRef.channel` says for an email anchor; `ts` holds the first mail's Message-ID.
THREAD_CHANNEL = "email"


def _reason(error: Exception) -> tuple[str, bool]:
    """A one-line reason without the server's text (it may echo what we sent), and whether the
    whole destination is failing (later mails would fail too) rather than this mail alone."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return f"the SMTP server refused the credentials ({error.code})", True
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({refused.code for refused in error.recipients})
        return f"the SMTP server refused every recipient ({', '.join(map(str, codes))})", False
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return f"the SMTP server refused the sender address ({error.code})", True
    if isinstance(error, aiosmtplib.SMTPDataError):
        # 5xx after DATA: this mail is refused (too large, content); 4xx: try again later.
        return f"the SMTP server refused the mail ({error.code})", error.code < 500
    if isinstance(error, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return "the SMTP server did not answer in time", True
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return "the SMTP server dropped the connection", True
    if isinstance(error, aiosmtplib.SMTPConnectError):
        return "could not connect to the SMTP server", True
    if isinstance(error, ssl.SSLError):
        return f"TLS with the SMTP server failed: {type(error).__name__}", True
    if isinstance(error, aiosmtplib.SMTPResponseException):
        if error.code == aiosmtplib.SMTPStatus.invalid_response:  # aiosmtplib's own -1
            return "the SMTP server's reply could not be read (too long or malformed)", True
        return f"the SMTP server answered {error.code}", True
    return f"SMTP failed: {type(error).__name__}", True


def _refused_for_good(error: Exception) -> bool:
    """A 5xx refusal of this mail (every recipient, or its content): resending will not help."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    return isinstance(error, aiosmtplib.SMTPDataError) and error.code >= 500


class EmailSink:
    """Sends one mail per notification; returns the first mail of an incident as its anchor."""

    def __init__(
        self,
        host: str,
        *,
        sender: str,
        to: Sequence[str],
        port: int = 587,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        timeout: float = 30,
        name: str = "email",
        digest_threshold: int | None = None,
    ) -> None:
        self.name = name
        self.digest_threshold = digest_threshold
        self._host = host
        self._port = port
        self._security: Security = security
        self._sender = sender
        self._to = list(to)
        self._username = username
        self._password = password
        self._tls = tls
        self._timeout = timeout

    @classmethod
    def from_destination(
        cls, name: str, destination: EmailDestination, context: SinkContext
    ) -> EmailSink:
        """The sink for an `email` destination of the routes."""
        return cls(
            destination.host,
            sender=destination.sender,
            to=destination.to,
            port=destination.port,
            security=destination.security,
            username=destination.username.get_secret_value() if destination.username else None,
            password=destination.password.get_secret_value() if destination.password else None,
            tls=context.tls,
            timeout=context.timeout,
            name=name,
            digest_threshold=destination.digest_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"EmailSink(name={self.name!r}, host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, recipients={len(self._to)})"
        )

    def _client(self) -> aiosmtplib.SMTP:
        tls = self._security != "none"
        return aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
            use_tls=self._security == "tls",
            # True: STARTTLS is required (a server that does not offer it is an error).
            start_tls=self._security == "starttls",
            validate_certs=True,
            tls_context=(self._tls or ssl.create_default_context()) if tls else None,
        )

    async def _deliver(self, message: EmailMessage) -> None:
        client = self._client()
        try:
            # aiosmtplib's timeout is per command: bound the whole exchange too.
            async with asyncio.timeout(self._timeout), client:
                # Some recipients refused, others not: the mail went out; a retry would repeat it.
                await client.send_message(message, sender=self._sender, recipients=self._to)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            reason, whole = _reason(error)
            raise DeliveryError(
                self.name, reason, whole_destination=whole, permanent=_refused_for_good(error)
            ) from None

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        """Mail it; an incident's first mail is returned as the anchor its later mails reply to."""
        thread_id = thread.ts if thread is not None and thread.channel == THREAD_CHANNEL else None
        message = notification_mail(
            notification, sender=self._sender, to=self._to, thread_id=thread_id
        )
        await self._deliver(message)
        if notification.opens_incident:
            return MessageRef(channel=THREAD_CHANNEL, ts=message_id(notification.id))
        return None

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Many notifications as one mail."""
        if notifications:
            await self._deliver(digest_mail(notifications, sender=self._sender, to=self._to))

    async def check(self) -> list[CheckResult]:
        """Connect, EHLO, STARTTLS and AUTH as configured, then QUIT without sending."""
        client = self._client()
        try:
            async with asyncio.timeout(self._timeout), client:
                pass
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            reason, _ = _reason(error)
            return [CheckResult(self.name, False, reason)]
        auth = "authenticated" if self._username else "no credentials set"
        where = f"{self._host}:{self._port}"
        return [CheckResult(self.name, True, f"SMTP {where} reachable ({self._security}; {auth})")]
