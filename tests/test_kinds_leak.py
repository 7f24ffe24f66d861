"""No secret of the kinds of issue 14 in any output (issue 14, point 6), every way out at once.

One routes file holds a PagerDuty, a Teams, an email, an Alertmanager and an Apprise destination
against their local servers (the spec-enforcing fakes, aiosmtpd with STARTTLS and AUTH, the real
Alertmanager, a json:// receiver), and one of each kind on a port where nothing listens, all with
the secrets of `tests.fakes.cli.KIND_SECRETS`. At debug level: `check`, `once`, `once --dry-run`
(text and JSON), `send-test --all`, the daemon through deliveries, refusals and failures, reloads
(POST /-/reload, a refused one, SIGHUP), its status page, `/api/status` and `/metrics`, and
`outbox list`. The HTTP kinds also against a server that refuses, saying back the request. No
secret, nor its URL-quoted or JSON-escaped form, in any stdout, stderr, HTTP body or file the
notifier wrote. test_kinds_firstclass.py checks the same of PagerDuty, Teams and
email one failure at a time; test_settings_destinations.py of every kind from its variables.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.fakes.alertmanager import Alertmanager, running_alertmanager
from tests.fakes.cli import CLI, KIND_SECRETS, SECRETS, Result, World, cli, kind_apprise_url
from tests.fakes.email import MailServer
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty
from tests.fakes.pagerduty import Reply as PagerDutyReply
from tests.fakes.slack import serve_app
from tests.fakes.subprocess_daemon import Daemon
from tests.fakes.teams import FakeTeams
from tests.test_apprise_sink import JsonReceiver

pytestmark = [
    # About ten CLI processes, a daemon, reloads and a real Alertmanager in one test: about
    # 15 s on a quiet machine, more on a loaded one.
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

ROUTING_KEY = KIND_SECRETS["pagerduty routing key"]
SMTP_USERNAME = KIND_SECRETS["smtp username"]
SMTP_PASSWORD = KIND_SECRETS["smtp password"]
AM_TOKEN = KIND_SECRETS["alertmanager token"]
AM_URL_PASSWORD = KIND_SECRETS["alertmanager url password"]
DEAD = "127.0.0.1:9"
LIVE = ("pd", "teams", "mail", "am", "apprise")
DEAD_NAMES = tuple(f"{name}-dead" for name in LIVE)
#: The HTTP kinds against a server that refuses every request, echoing it (its path and query,
#: its Authorization header, its body) in its answer, as a misconfigured proxy may.
ECHO_NAMES = ("pd-echo", "teams-echo", "am-echo", "apprise-echo")
NAMES = LIVE + DEAD_NAMES + ECHO_NAMES

ROUTES = """
[destinations.pd]
type = "pagerduty"
routing_key = "env:LEAK_PD_KEY"
url = "{pd_url}"

[destinations.pd-dead]
type = "pagerduty"
routing_key = "env:LEAK_PD_KEY"
url = "http://{dead}/v2/enqueue"

[destinations.teams]
type = "teams"
url = "env:LEAK_TEAMS_URL"

[destinations.teams-dead]
type = "teams"
url = "env:LEAK_TEAMS_DEAD_URL"

[destinations.mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
username = "env:LEAK_SMTP_USERNAME"
password = "env:LEAK_SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]

[destinations.mail-dead]
type = "email"
host = "127.0.0.1"
port = 9
username = "env:LEAK_SMTP_USERNAME"
password = "env:LEAK_SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]

[destinations.am]
type = "alertmanager"
url = "env:LEAK_AM_URL"
token = "env:LEAK_AM_TOKEN"{am_labels}

[destinations.am-dead]
type = "alertmanager"
url = "env:LEAK_AM_DEAD_URL"
token = "env:LEAK_AM_TOKEN"

[destinations.apprise]
type = "apprise"
url = "env:LEAK_APPRISE_URL"

[destinations.apprise-dead]
type = "apprise"
url = "env:LEAK_APPRISE_DEAD_URL"

[destinations.pd-echo]
type = "pagerduty"
routing_key = "env:LEAK_PD_KEY"
url = "{echo_url}/v2/enqueue"

[destinations.teams-echo]
type = "teams"
url = "env:LEAK_TEAMS_ECHO_URL"

[destinations.am-echo]
type = "alertmanager"
url = "env:LEAK_AM_ECHO_URL"
token = "env:LEAK_AM_TOKEN"

[destinations.apprise-echo]
type = "apprise"
url = "env:LEAK_APPRISE_ECHO_URL"

{dead_routes}
[default]
to = [{to}]
"""
#: A monitor per dead or echoing destination, routed there alone (the others go to the live
#: ones): the outbox entry of its alert keeps that destination's error (an entry keeps only its
#: last one) for the state file and the status page.
DEAD_ROUTE = """
[[routes]]
match = {{ monitor_ids = [{monitor}] }}
to = ["{name}"]
"""
ALONE = DEAD_NAMES + ECHO_NAMES
ALONE_MONITORS = dict(zip(range(11, 11 + len(ALONE)), ALONE, strict=True))


async def echo(request: web.Request) -> web.Response:
    """Refuse, saying back all the request held."""
    body = (await request.read())[:4000].decode(errors="replace")
    auth = request.headers.get("Authorization", "")
    said = f"refused {request.method} {request.path_qs} authorization={auth} body={body}"
    return web.Response(status=401, text=said)


def forms(secret: str) -> set[str]:
    """A secret as it may show: itself, URL-quoted (path or query style), JSON-escaped."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
    }


@dataclass
class Servers:
    """Every kind's server, the CLI's environment, and every output and HTTP body seen."""

    world: World
    pagerduty: FakePagerDuty
    teams: FakeTeams
    mail: MailServer
    am: Alertmanager
    apprise: JsonReceiver
    routes: Path
    routes_format: dict[str, Any]
    env: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)

    def write_routes(self, am_labels: str = "") -> None:
        self.routes.write_text(ROUTES.format(**self.routes_format, am_labels=am_labels))

    def secrets(self) -> set[str]:
        urls = [self.env[name] for name in self.env if name.endswith("_URL")]
        urls = [url for url in urls if name_is_secret_url(url)]
        # Apprise sends the URL's user and password as HTTP Basic, which a server may say back.
        basic = f"notifier:{KIND_SECRETS['apprise password']}".encode()
        secrets = [*SECRETS, *urls, base64.b64encode(basic).decode()]
        return {form for secret in secrets for form in forms(secret)}

    def keep(self, label: str, text: str) -> None:
        self.outputs[f"{label} #{len(self.outputs)}"] = text

    async def cli(self, *args: str, **env: str) -> Result:
        result = await cli(*args, env={**self.env, **env})
        self.keep(f"{' '.join(args)} stdout", result.stdout)
        self.keep(f"{' '.join(args)} stderr", result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        return result


def name_is_secret_url(url: str) -> bool:
    """The destinations' URLs (each holds a secret), not Datafold's or the fakes' plain ones."""
    return any(secret in url for secret in KIND_SECRETS.values())


@asynccontextmanager
async def serve_every_kind(world: World, tmp_path: Path) -> AsyncIterator[Servers]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mail = MailServer(ca=ca, credentials=(SMTP_USERNAME, SMTP_PASSWORD))
    pagerduty, teams, apprise = FakePagerDuty(), FakeTeams(), JsonReceiver()
    async with AsyncExitStack() as stack:
        pd_url = await stack.enter_async_context(pagerduty.serve())
        teams_url = await stack.enter_async_context(teams.serve())
        apprise_port = urlsplit(await stack.enter_async_context(apprise.serve())).port
        am = await stack.enter_async_context(running_alertmanager())
        smtp_port = stack.enter_context(mail.serve())
        echo_app = web.Application()
        echo_app.router.add_route("*", "/{tail:.*}", echo)
        echo_url = await stack.enter_async_context(serve_app(echo_app))
        echo_netloc = urlsplit(echo_url).netloc
        env = {
            **world.env,
            "NOTIFIER_LOG_LEVEL": "debug",
            "NOTIFIER_CA_BUNDLE": str(ca_file),
            "LEAK_PD_KEY": ROUTING_KEY,
            "LEAK_TEAMS_URL": teams_url,
            "LEAK_TEAMS_DEAD_URL": teams_url.replace(urlsplit(teams_url).netloc, DEAD),
            "LEAK_SMTP_USERNAME": SMTP_USERNAME,
            "LEAK_SMTP_PASSWORD": SMTP_PASSWORD,
            "LEAK_AM_URL": am.url,
            "LEAK_AM_DEAD_URL": f"http://{DEAD}",
            "LEAK_AM_TOKEN": AM_TOKEN,
            "LEAK_APPRISE_URL": kind_apprise_url(f"127.0.0.1:{apprise_port}"),
            "LEAK_APPRISE_DEAD_URL": kind_apprise_url(DEAD),
            "LEAK_TEAMS_ECHO_URL": teams_url.replace(urlsplit(teams_url).netloc, echo_netloc),
            "LEAK_AM_ECHO_URL": f"{echo_url}/{KIND_SECRETS['alertmanager url path']}",
            "LEAK_APPRISE_ECHO_URL": kind_apprise_url(echo_netloc),
            "NOTIFIER_ROUTES_FILE": str(tmp_path / "routes.toml"),
            "NOTIFIER_MONITOR_IDS": ",".join(map(str, [1, 2, *ALONE_MONITORS])),
        }
        del env["NOTIFIER_WEBHOOK_URLS"]
        routes_format = {
            "pd_url": pd_url + ENQUEUE_PATH,
            "dead": DEAD,
            "echo_url": echo_url,
            "smtp_port": smtp_port,
            "to": ", ".join(f'"{name}"' for name in LIVE),
            "dead_routes": "".join(
                DEAD_ROUTE.format(monitor=monitor, name=name)
                for monitor, name in ALONE_MONITORS.items()
            ),
        }
        servers = Servers(
            world, pagerduty, teams, mail, am, apprise, tmp_path / "routes.toml", routes_format, env
        )
        servers.write_routes()
        yield servers


def check_verdicts(result: Result) -> dict[str, str]:
    """`check`'s verdict ("ok" or "FAIL") on each destination, by name."""
    verdicts = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        name = rest.split(": ", 1)[0].split()[-1] if ": " in rest else ""
        if name in NAMES:
            verdicts[name] = verdict
    return verdicts


def failed(daemon: Daemon, start: int) -> set[str]:
    """Destinations that failed or refused a delivery since event `start`."""
    names = ("delivery_failed", "notification_dropped")
    return {str(e["destination"]) for e in daemon.events[start:] if e.get("event") in names}


async def test_no_secret_of_any_kind_in_any_output_or_page_at_debug(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    for monitor, name in ALONE_MONITORS.items():
        world.sim.add_monitor(monitor, name=f"routed to {name}")
    async with serve_every_kind(world, tmp_path) as servers:
        # An Alertmanager URL with credentials is refused, in one line that does not show them.
        with_credentials = f"http://am-leak-user:{AM_URL_PASSWORD}@{DEAD}"
        refused = await servers.cli("check", LEAK_AM_DEAD_URL=with_credentials)
        assert refused.code == 2 and "must not carry credentials" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1

        checked = await servers.cli("check")
        assert checked.code == 1
        expected = {name: "ok" for name in LIVE} | {name: "FAIL" for name in DEAD_NAMES}
        expected["apprise-dead"] = "ok"  # Apprise has no dry run: only the URL is checked
        verdicts = check_verdicts(checked)
        assert {name: verdicts.get(name) for name in expected} == expected, checked.stdout
        assert (await servers.cli("once")).code == 0  # the baseline

        for monitor in (1, *ALONE_MONITORS):
            world.sim.add_run(monitor, state="alert", started_at=world.now())
        dry = await servers.cli("once", "--dry-run")
        assert dry.code == 0 and "pd" in dry.stdout
        dry_json = await servers.cli("once", "--dry-run", "--json")
        assert dry_json.code == 0 and '"routing_key"' in dry_json.stdout  # PagerDuty's body
        sent = await servers.cli("send-test", "--all")
        assert sent.code == 1  # the dead ones
        assert servers.pagerduty.events and servers.teams.cards and servers.mail.mails
        assert servers.apprise.posts

        env = {**servers.env, "NOTIFIER_HEALTH_PORT": "0", "NOTIFIER_POLL_INTERVAL_SECONDS": "1"}
        proc = await asyncio.create_subprocess_exec(
            CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        daemon = Daemon(proc)
        reaper.append(daemon)
        await daemon.wait_event("status_listening")
        listening = daemon.event("status_listening")
        assert listening is not None
        base = f"http://127.0.0.1:{listening['port']}"

        # The alert to every live destination; every dead one fails.
        pd_events = len(servers.pagerduty.events)
        await daemon.wait_event("cycle_finished")
        await daemon.wait_for(lambda: set(ALONE) <= failed(daemon, 0))
        assert len(servers.pagerduty.events) > pd_events
        await servers.am.wait_alerts(
            lambda alerts: any(a["labels"].get("monitor_id") == "1" for a in alerts)
        )

        # Every live destination but Alertmanager refuses or fails the next one.
        mark = len(daemon.events)
        echo = json.dumps({"status": "invalid event", "errors": [f"bad key {ROUTING_KEY}"]})
        servers.pagerduty.reply(PagerDutyReply(400, body=echo.encode()))
        servers.teams.reply(500)
        servers.apprise.statuses = [500]
        servers.mail.drop_in_data = True
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        await daemon.wait_for(lambda: {"pd", "teams", "mail", "apprise"} <= failed(daemon, mark))
        servers.mail.drop_in_data = False

        async with aiohttp.ClientSession() as http:

            async def fetch(method: str, path: str) -> int:
                async with http.request(method, base + path) as response:
                    servers.keep(f"{method} {path}", await response.text())
                    return response.status

            for path in ("/", "/api/status", "/metrics"):
                assert await fetch("GET", path) == 200
            status = json.loads(list(servers.outputs.values())[-2])
            errors = {row["name"]: row["last_error"] for row in status["destinations"]}
            assert all(errors.get(name) for name in ALONE), errors  # each one's error

            # A reload that changes a destination, one refused (a secret written in the file),
            # and SIGHUP back to the first.
            servers.write_routes(am_labels='\nlabels = { team = "data" }')
            assert await fetch("POST", "/-/reload") == 200
            inline = servers.routes.read_text().replace('"env:LEAK_PD_KEY"', f'"{ROUTING_KEY}"')
            servers.routes.write_text(inline)
            assert await fetch("POST", "/-/reload") == 500
            servers.write_routes()
            mark = len(daemon.events)
            proc.send_signal(signal.SIGHUP)
            await daemon.wait_event("config_reloaded", mark)
            await daemon.wait_event("cycle_finished", len(daemon.events))
            for path in ("/", "/api/status", "/metrics"):
                assert await fetch("GET", path) == 200
        assert len(daemon.named("config_reloaded")) == 2
        assert len(daemon.named("config_reload_failed")) == 1

        assert await daemon.stop() == 0
        assert proc.stdout is not None
        servers.keep("run stdout", (await proc.stdout.read()).decode())
        servers.keep("run stderr", daemon.output)

        listed = await servers.cli("outbox", "list")
        assert listed.code == 0
        assert all(name in listed.stdout for name in ALONE), listed.stdout
        listed_json = await servers.cli("outbox", "list", "--json")
        assert listed_json.code == 0 and "could not reach" in listed_json.stdout

        # `check --routes` of a file with a secret written in it: refused without echoing it.
        inline = tmp_path / "inline.toml"
        inline.write_text(
            servers.routes.read_text().replace('"env:LEAK_PD_KEY"', f'"{ROUTING_KEY}"')
        )
        refused_file = await servers.cli("check", "--routes", str(inline))
        assert refused_file.code != 0 and "pd" in refused_file.stdout + refused_file.stderr

    for written in sorted(tmp_path.rglob("*")):
        if written.is_file() and written.name not in ("ca.pem", "routes.toml", "inline.toml"):
            servers.keep(f"file {written.name}", written.read_text(errors="replace"))
    state = json.loads(world.state_file.read_text())
    errors = {tuple(entry["pending"]): entry["last_error"] for entry in state["outbox"]}
    assert all(errors.get((name,)) for name in ALONE), errors  # each one's error, saved
    secrets = servers.secrets()
    for label, text in servers.outputs.items():
        for secret in secrets:
            assert secret not in text, f"{label} shows {secret[:8]}…"
