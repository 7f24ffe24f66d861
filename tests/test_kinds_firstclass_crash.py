"""Crash safety of the PagerDuty and email destinations (issue 14, point 7): `run` is SIGKILLed at
a chosen point of the cycle that delivers an alert and an error, then restarted.

What the design promises (tests/test_crash.py for Slack and webhooks): the state is saved once
per cycle, after delivery. A notification a destination accepted before the kill but that the
saved state does not record yet is delivered again after the restart, once, and with the same
idempotency key: PagerDuty's `dedup_key` (the incident's ID, so PagerDuty updates the alert it
has: no second incident) and the mail's `Message-ID` (so the receiving side can drop the copy).
A notification no destination had accepted, or one the saved state records, is sent exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.fakes.cli import World
from tests.fakes.email import MailServer
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty, Reply
from tests.fakes.subprocess_daemon import Daemon

pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")

#: On PYTHONPATH of every daemon: a `sitecustomize` that can hold a state write before its rename.
PAUSE_HOOK = Path(__file__).parent / "fakes" / "crash_sitecustomize"
ROUTING_KEY = "PdCrash0123456789abcdef01234567z"
CREDENTIALS = ("smtp-crash-user", "smtp-crash-password-0042")
BROKEN = {"cycle_failed", "crashed", "state_file_corrupt", "state_save_failed"}

ROUTES = """
[destinations.pd-oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{pd_url}"

[destinations.ops-mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
username = "env:SMTP_USERNAME"
password = "env:SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]

[default]
to = ["pd-oncall", "ops-mail"]
"""


@dataclass
class Crash:
    world: World
    pagerduty: FakePagerDuty
    mail: MailServer
    env: dict[str, str]
    pause_flag: Path
    reaper: list[Daemon]

    async def start(self) -> Daemon:
        daemon = await Daemon.start(self.env)
        self.reaper.append(daemon)
        return daemon

    def triggers(self) -> Counter[str]:
        """How many triggers PagerDuty accepted, by `dedup_key`."""
        return Counter(
            e["dedup_key"] for e in self.pagerduty.events if e["event_action"] == "trigger"
        )

    def mails(self) -> list[Any]:
        return [received.message for received in self.mail.mails]

    def first_mails(self) -> Counter[str]:
        """How many copies of each incident's first mail the SMTP server accepted, by
        Message-ID (a recovery replies to one: In-Reply-To)."""
        return Counter(str(m["Message-ID"]) for m in self.mails() if m["In-Reply-To"] is None)

    def recorded(self, runs: dict[int, tuple[int, str]]) -> bool:
        """The state file records `runs` (run → monitor, state) as handled, nothing pending."""
        state = json.loads(self.world.state_file.read_text())
        for run_id, (monitor_id, run_state) in runs.items():
            run = state["monitors"].get(str(monitor_id), {}).get("runs", {}).get(str(run_id))
            if run is None or run_state not in run["handled"]:
                return False
        return state["outbox"] == []


@asynccontextmanager
async def crash_world(world: World, tmp_path: Path, reaper: list[Daemon]) -> AsyncIterator[Crash]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mail = MailServer(ca=ca, credentials=CREDENTIALS)
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as pd_url:
        with mail.serve() as port:
            routes = tmp_path / "routes.toml"
            routes.write_text(ROUTES.format(pd_url=pd_url + ENQUEUE_PATH, smtp_port=port))
            env = {
                **world.env,
                "NOTIFIER_ROUTES_FILE": str(routes),
                "NOTIFIER_CA_BUNDLE": str(ca_file),
                "NOTIFIER_POLL_INTERVAL_SECONDS": "1",
                "PD_ROUTING_KEY": ROUTING_KEY,
                "SMTP_USERNAME": CREDENTIALS[0],
                "SMTP_PASSWORD": CREDENTIALS[1],
                "PYTHONPATH": str(PAUSE_HOOK),
                "CRASH_PAUSE_FLAG": str(tmp_path / "pause-flag.json"),
            }
            del env["NOTIFIER_WEBHOOK_URLS"]
            yield Crash(world, pagerduty, mail, env, tmp_path / "pause-flag.json", reaper)


#: kill point → copies (PagerDuty triggers, first mails) each notification gets in all.
CASES = {
    # PagerDuty hangs on the first event (its answer would be a 503); the mails went out. The
    # SMTP server accepted both: re-sent after the restart, same Message-IDs. PagerDuty had
    # accepted nothing: one trigger each.
    "pagerduty_hangs": (1, 2),
    # Both destinations accepted everything; the state write is held before its rename: the
    # restart re-detects both runs and re-sends, with the same dedup_keys and Message-IDs.
    "mid_write": (2, 2),
    # The cycle's state was saved: nothing is sent again.
    "saved": (1, 1),
}


@pytest.mark.parametrize("kill_at", sorted(CASES))
async def test_sigkill_keeps_dedup_key_and_message_id_stable(
    world: World, tmp_path: Path, reaper: list[Daemon], kill_at: str
) -> None:
    """An alert and an error, killed at `kill_at`, restarted, then the alert's recovery.

    The SMTP server gets a Message-ID twice only when the kill came after it accepted the mail
    (250 to DATA) and before the cycle's state save: the copy has the same Message-ID. PagerDuty
    gets a second trigger only in the same window, on the same `dedup_key`: one alert per
    incident either way. Otherwise each is sent exactly once.
    """
    async with crash_world(world, tmp_path, reaper) as crash:
        daemon = await crash.start()
        await daemon.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
        await daemon.wait_event("state_saved")

        if kill_at == "pagerduty_hangs":
            crash.pagerduty.reply(Reply(503, delay=30))
        # Right after a cycle, so that the next one finds both runs.
        await daemon.wait_event("cycle_finished", len(daemon.events))
        alert = world.sim.add_run(1, state="alert", started_at=world.now())
        error = world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        if kill_at == "mid_write":
            crash.pause_flag.write_text(json.dumps([alert, error]))
            await daemon.wait_event("crash_paused_before_replace")
        elif kill_at == "pagerduty_hangs":
            await daemon.wait_for(
                lambda: (
                    len(crash.mail.mails) == 2
                    and ("POST", ENQUEUE_PATH) in crash.pagerduty.requests
                )
            )
            assert crash.pagerduty.events == []
        else:
            detected = await daemon.wait_event("run_detected", where=lambda e: e["run_id"] == error)
            await daemon.wait_event("state_saved", detected)
        await daemon.kill()
        crash.pause_flag.unlink(missing_ok=True)

        daemon = await crash.start()
        pd_copies, mail_copies = CASES[kill_at]
        await daemon.wait_for(
            lambda: (
                sum(crash.triggers().values()) == 2 * pd_copies
                and sum(crash.first_mails().values()) == 2 * mail_copies
            )
        )
        await daemon.wait_for(lambda: crash.recorded({alert: (1, "alert"), error: (2, "error")}))

        # The incident survived the crash: the recovery resolves the same alert, replies to the
        # same mail.
        world.sim.add_run(1, state="ok", started_at=world.now())
        await daemon.wait_for(lambda: crash.pagerduty.events[-1]["event_action"] == "resolve")
        await daemon.wait_for(lambda: len(crash.mail.mails) == 2 * mail_copies + 1)
        assert await daemon.stop() == 0

    triggers = crash.triggers()
    assert len(triggers) == 2, "one PagerDuty alert per incident, whatever was re-sent"
    assert set(triggers.values()) == {pd_copies}
    assert crash.pagerduty.events[-1]["dedup_key"] in triggers
    assert crash.pagerduty.refused == []
    first_mails = crash.first_mails()
    assert len(first_mails) == 2 and set(first_mails.values()) == {mail_copies}
    recovery = crash.mails()[-1]
    assert recovery["In-Reply-To"] in first_mails
    assert str(recovery["Subject"]).startswith("[Recovered]")
    alert_trigger = next(
        e for e in crash.pagerduty.events if e["payload"]["custom_details"]["run"]["id"] == alert
    )
    assert crash.pagerduty.events[-1]["dedup_key"] == alert_trigger["dedup_key"]
    for process in reaper:
        assert not [e for e in process.events if e.get("event") in BROKEN], process.events[-6:]
        assert ROUTING_KEY not in process.output and CREDENTIALS[1] not in process.output
