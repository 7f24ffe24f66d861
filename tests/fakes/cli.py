"""Runs the installed CLI against the simulator, a fake Slack and a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from notifier.demo.server import serve
from notifier.demo.simulator import Simulator
from tests.fakes.slack import FakeSlack
from tests.fakes.teams import SIGNATURE as TEAMS_SIGNATURE
from tests.fakes.webhook import WebhookReceiver

CLI = str(Path(sys.executable).parent / "datafold-notifier")
API_KEY = "dfk-e2e-distinctive-api-key-0001"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: The secrets of the kinds of issue 14 as tests/test_kinds_leak.py configures them (of a URL,
#: its secret parts: a whole URL holds a port, so the test adds it). In SECRETS, so every check
#: against SECRETS covers them too.
KIND_SECRETS = {
    "pagerduty routing key": "PdLeak0123456789abcdef0123456789",
    "teams signature": TEAMS_SIGNATURE,
    "smtp username": "smtp-leak-user-6604",
    "smtp password": "smtp-leak-pass/7713+x",  # "/" and "+": its quoted forms differ
    "alertmanager token": "am-leak-token+5518/==",
    "alertmanager url password": "am-leak-url-pass-3307",
    "alertmanager url path": "am-leak-path-5150",  # a proxy's secret path before /api/v2
    "apprise token": "apprise-leak-token-8846",
    "apprise password": "apprise-leak/pass+1925",  # written URL-quoted in the URL
    "apprise query token": "apprise-leak-query-4460",
}
SECRETS = [
    API_KEY,
    WHSEC,
    FakeSlack.token,
    "s3cr3t-url-token",
    FakeSlack.WEBHOOK_PATH,
    *KIND_SECRETS.values(),
]


def kind_apprise_url(netloc: str) -> str:
    """A json:// Apprise URL to `netloc` with KIND_SECRETS' password (quoted), a token in the
    path and one in the query."""
    password = quote(KIND_SECRETS["apprise password"], safe="")
    token, query = KIND_SECRETS["apprise token"], KIND_SECRETS["apprise query token"]
    return f"json://notifier:{password}@{netloc}/hooks/{token}?-key={query}"


def dead_kinds_env(dead: str = "127.0.0.1:9") -> dict[str, str]:
    """Every kind of issue 14 from its variables, with KIND_SECRETS, at `dead` (where nothing
    listens): each delivery and probe fails, so the error paths run."""
    return {
        "PAGERDUTY_ROUTING_KEY": KIND_SECRETS["pagerduty routing key"],
        "PAGERDUTY_URL": f"http://{dead}/v2/enqueue",
        "TEAMS_WEBHOOK_URL": f"http://{dead}/workflows/1/paths/invoke?sig={TEAMS_SIGNATURE}",
        "NOTIFIER_SMTP_HOST": dead.split(":")[0],
        "NOTIFIER_SMTP_PORT": dead.split(":")[1],
        "NOTIFIER_SMTP_USERNAME": KIND_SECRETS["smtp username"],
        "NOTIFIER_SMTP_PASSWORD": KIND_SECRETS["smtp password"],
        "NOTIFIER_EMAIL_FROM": "notifier@example.test",
        "NOTIFIER_EMAIL_TO": "oncall@example.test",
        "ALERTMANAGER_URL": f"http://{dead}",
        "ALERTMANAGER_TOKEN": KIND_SECRETS["alertmanager token"],
        "APPRISE_URL": kind_apprise_url(dead),
    }


SLACK_CHANNEL = "C0123ABCD"


def cli_env(
    datafold_url: str, slack_url: str, hook_url: str, monitors: Iterable[int], state_file: Path
) -> dict[str, str]:
    """The CLI's environment against local servers: every destination on, JSON logs."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATAFOLD_API_KEY": API_KEY,
        "DATAFOLD_HOST": datafold_url,
        "NOTIFIER_MONITOR_IDS": ",".join(str(m) for m in monitors),
        "NOTIFIER_STATE_FILE": str(state_file),
        "SLACK_BOT_TOKEN": FakeSlack.token,
        "SLACK_CHANNEL": SLACK_CHANNEL,
        "SLACK_API_URL": slack_url + "/api/",
        "NOTIFIER_WEBHOOK_URLS": hook_url,
        "NOTIFIER_WEBHOOK_SECRET": WHSEC,
        "NOTIFIER_LOG_FORMAT": "json",
        # Tests send bursts: Slack's real pace (1 per second per channel) has its own test.
        "NOTIFIER_SLACK_MESSAGES_PER_SECOND": "50",
    }


@dataclass
class World:
    sim: Simulator
    slack: FakeSlack
    receiver: WebhookReceiver
    env: dict[str, str]
    state_file: Path

    def now(self) -> datetime:
        return datetime.now(UTC)


@asynccontextmanager
async def make_world(tmp_path: Path) -> AsyncIterator[World]:
    sim = Simulator(API_KEY)
    sim.add_monitor(1, name="orders prod vs staging", monitor_type="diff", tags=["prod"])
    sim.add_monitor(2, name="revenue metric", monitor_type="metric")
    slack, receiver = FakeSlack(), WebhookReceiver()
    async with serve(sim) as sim_url, slack.serve() as slack_url, receiver.serve() as hook_url:
        state_file = tmp_path / "state.json"
        env = {
            **cli_env(sim_url, slack_url, hook_url, (1, 2), state_file),
            "NOTIFIER_LOG_LEVEL": "debug",
            "NOTIFIER_POLL_INTERVAL_SECONDS": "1",
            "NOTIFIER_SHUTDOWN_GRACE_SECONDS": "5",
        }
        yield World(sim, slack, receiver, env, state_file)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, object]]:
        """Every stderr line parsed as JSON: fails the test on a loose line."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]


async def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
