"""An Apprise destination end to end: the installed CLI, a routes file with `type = "apprise"`,
Apprise's json:// scheme to a local server. Messages, a recovery, an outage kept in the outbox,
check, the URL in no output at debug, and the one-line error when the extra is missing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.fakes.cli import SECRETS, World, cli
from tests.test_apprise_sink import PASSWORD, QUERY_TOKEN, TOKEN, JsonReceiver

ROUTES = """
[destinations.chat]
type = "apprise"
url = "env:APPRISE_URL"

[default]
to = ["chat"]
"""

#: The CLI's `main` with `import apprise` failing, as where the extra is not installed.
WITHOUT_APPRISE = (
    "import sys; sys.modules['apprise'] = None; "
    "from notifier.cli.main import main; sys.exit(main())"
)


def routes_env(world: World, tmp_path: Path, url: str) -> dict[str, str]:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    env = {
        **world.env,
        "NOTIFIER_ROUTES_FILE": str(routes),
        "APPRISE_URL": url,
        "NOTIFIER_LOG_LEVEL": "debug",
    }
    del env["NOTIFIER_WEBHOOK_URLS"]
    return env


async def test_messages_a_recovery_and_an_outage_through_the_cli(
    world: World, tmp_path: Path
) -> None:
    world.sim.add_monitor(3, name="**[ledger](https://evil.example)** @everyone")
    fake = JsonReceiver()
    async with fake.serve() as url:
        env = {**routes_env(world, tmp_path, url), "NOTIFIER_MONITOR_IDS": "1,3"}
        outputs: list[str] = []

        async def once() -> None:
            result = await cli("once", env=env)
            outputs.extend([result.stdout, result.stderr])
            assert result.code == 0, result.stderr

        await once()
        world.sim.add_run(1, state="alert", started_at=world.now())
        world.sim.add_run(3, state="error", started_at=world.now(), error="boom")
        await once()
        assert sorted(post["title"] for post in fake.posts) == [
            "❌ Error: \\*\\*\\[ledger\\]\\(https://evil.example\\)\\*\\* \\@everyone",
            "🚨 Alert: orders prod vs staging",
        ]
        alert = next(p for p in fake.posts if p["title"].startswith("🚨"))
        assert "- **Monitor:** orders prod vs staging (\\#1)" in alert["message"]
        assert "- **State:** Alert" in alert["message"] and "[Open monitor](" in alert["message"]
        assert world.slack.messages == []  # only the routes file's destination

        # The service down: nothing lost, the outbox delivers on the next cycle.
        world.sim.add_run(1, state="ok", started_at=world.now())
        fake.statuses = [500]
        await once()
        assert len(fake.posts) == 3 and fake.posts[-1]["title"].startswith("✅ Recovered")
        await once()
        assert len(fake.posts) == 4
        recovery = fake.posts[-1]
        assert recovery["title"] == "✅ Recovered: orders prod vs staging"
        assert recovery["message"].startswith("Passing again.")

        check = await cli("check", env=env)
        outputs += [check.stdout, check.stderr]
        assert check.code == 0, check.stdout
        assert any(
            line.startswith("ok   chat:") and "parses as JSON" in line
            for line in check.stdout.splitlines()
        )
        assert len(fake.posts) == 4  # check sent nothing

    assert any("[REDACTED]" in text for text in outputs)
    for text in outputs:
        for secret in (url, TOKEN, QUERY_TOKEN, PASSWORD, *SECRETS):
            assert secret not in text


async def test_without_the_extra_one_line_names_the_destination_and_the_fix(
    world: World, tmp_path: Path
) -> None:
    env = routes_env(world, tmp_path, f"json://127.0.0.1:9/hooks/{TOKEN}")
    for command in ("once", "check"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WITHOUT_APPRISE,
            command,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
        assert proc.returncode == 2, err.decode()
        # Log events are JSON lines; the error is the one line that is not, and no traceback.
        [line] = [text for text in err.decode().splitlines() if not text.startswith("{")]
        assert "Traceback" not in err.decode()
        assert line == (
            "datafold-notifier: error: routes: destination 'chat' is type = \"apprise\", which "
            "needs the apprise extra: pip install 'datafold-notifier[apprise]'"
        )
        assert TOKEN not in out.decode() + err.decode()
