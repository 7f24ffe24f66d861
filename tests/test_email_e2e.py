"""An email destination end to end: the installed CLI, a routes file, a real SMTP server (aiosmtpd)
with STARTTLS from a throwaway CA and AUTH. A mail, a threaded recovery, an outage kept in the
outbox, a digest, `check`, and the password in no output at debug level."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.email import PASSWORD, USERNAME, MailServer

pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")

ROUTES = """
[destinations.oncall-mail]
type = "email"
host = "127.0.0.1"
port = {port}
username = "env:SMTP_USERNAME"
password = "env:SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]
digest_threshold = 2

[default]
to = ["oncall-mail"]
"""


async def test_mails_threading_an_outage_and_a_digest_through_the_cli(
    world: World, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = MailServer(ca=ca, credentials=(USERNAME, PASSWORD))
    outputs: list[str] = []
    with server.serve() as port:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(port=port))
        env = {
            **world.env,
            "NOTIFIER_ROUTES_FILE": str(routes),
            "SMTP_USERNAME": USERNAME,
            "SMTP_PASSWORD": PASSWORD,
            # The throwaway CA that signed the server's certificate, trusted as an operator would.
            "NOTIFIER_CA_BUNDLE": str(ca_file),
            "NOTIFIER_LOG_LEVEL": "debug",
        }
        del env["NOTIFIER_WEBHOOK_URLS"]

        async def once() -> str:
            result = await cli("once", env=env)
            outputs.extend([result.stdout, result.stderr])
            assert result.code == 0, result.stderr
            return result.stderr

        await once()
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        await once()
        [alert] = [mail.message for mail in server.mails]
        assert alert["Subject"] == f"[Alert] orders prod vs staging (run {run})"
        assert alert.get_body(("html",)) is not None and alert.get_body(("plain",)) is not None
        assert world.slack.messages == []  # only the routes file's destination

        # The server drops the connection: nothing lost, the next cycle delivers the recovery.
        world.sim.add_run(1, state="ok", started_at=world.now())
        server.drop_in_data = True
        failed = await once()
        assert "dropped the connection" in failed and len(server.mails) == 1
        server.drop_in_data = False
        await once()
        recovered = server.mails[-1].message
        assert recovered["Subject"].startswith("[Recovered] orders prod vs staging")
        assert recovered["In-Reply-To"] == alert["Message-ID"] == recovered["References"]

        # More than digest_threshold waiting: one digest mail.
        for monitor in (1, 2):
            world.sim.add_run(monitor, state="alert", started_at=world.now())
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        await once()
        assert len(server.mails) == 3
        assert server.mails[-1].message["Subject"].startswith("[Digest] 3 notifications")

        check = await cli("check", env=env)
        outputs += [check.stdout, check.stderr]
        assert check.code == 0, check.stdout
        assert any(
            "oncall-mail" in line and "starttls; authenticated" in line
            for line in check.stdout.splitlines()
        )
    assert len(server.mails) == 3 and set(server.logins) == {USERNAME}
    for text in outputs:
        for secret in (PASSWORD, *SECRETS):
            assert secret not in text
