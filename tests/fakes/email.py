"""A real SMTP server (aiosmtpd) on 127.0.0.1, port 0, in its own thread: STARTTLS or implicit
TLS with a throwaway CA's certificate, AUTH (refused before TLS, as aiosmtpd does by default),
recipients it refuses, and a mode that drops the connection in the middle of DATA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USERNAME = "mailer"
PASSWORD = "smtp-distinctive-password-0001"


class _BoundController(Controller):
    """aiosmtpd's Controller reaches its server at `port`: with port 0, learn the bound one."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Received:
    """One mail as the server took it: the envelope and the parsed message."""

    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class MailServer:
    """What the server accepts and refuses; `mails` collects what it accepted."""

    ca: trustme.CA | None = None
    implicit_tls: bool = False
    credentials: tuple[str, str] | None = None
    refuse: frozenset[str] = frozenset()
    drop_in_data: bool = False
    mails: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_in_data:
            assert server.transport is not None
            server.transport.abort()
            return "250 never seen"
        content = cast(bytes, envelope.original_content)
        message = cast(EmailMessage, message_from_bytes(content, policy=policy.default))
        self.mails.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append(login)
        # handled=False: aiosmtpd answers a refusal itself (535).
        return AuthResult(success=(login, password) == self.credentials, handled=False)

    def _server_tls(self) -> ssl.SSLContext:
        assert self.ca is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        return context

    @contextmanager
    def serve(self, port: int = 0) -> Iterator[int]:
        """Run it; yields the port on 127.0.0.1 (`port`, to come back where a stopped one was)."""
        tls = self._server_tls() if self.ca is not None else None
        options: dict[str, Any] = {"authenticator": self._authenticate}
        if tls is not None and not self.implicit_tls:
            options["tls_context"] = tls
        controller = _BoundController(
            self,
            hostname="127.0.0.1",
            port=port,
            ssl_context=tls if self.implicit_tls else None,
            # No TLS at all: allow AUTH in clear, so a test can show the client refuses it.
            auth_require_tls=tls is not None,
            **options,
        )
        controller.start()
        try:
            yield controller.port
        finally:
            controller.stop()
