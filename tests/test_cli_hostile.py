"""Hostile arguments, files and pipes through the installed CLI.

Every absurd value ends in exit 2 and one line on stderr, before the command acts; a state file
that is no state of this version is refused before the configured store is touched; output into
a closed pipe ends without a traceback.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from notifier.domain.models import STATE_VERSION, MonitorState, Mute, NotifierState
from notifier.store.file import StateFile
from tests.fakes.cli import CLI, Result, World, cli
from tests.fakes.postgres import (
    postgres_server_fixture,  # noqa: F401  # the fixture, registered by importing it
    postgres_url_fixture,  # noqa: F401
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Settings that load; nothing listens at the Datafold host or the webhook."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATAFOLD_API_KEY": "dfk-hostile-0001",
        "DATAFOLD_HOST": "http://127.0.0.1:9",
        "NOTIFIER_MONITOR_IDS": "1",
        "NOTIFIER_WEBHOOK_URLS": "http://127.0.0.1:9/hook",
        "NOTIFIER_STATE_FILE": str(tmp_path / "state.json"),
        "NOTIFIER_LOG_FORMAT": "json",
    }


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit 2, one line on stderr holding every fragment, nothing on stdout, no traceback."""
    assert result.code == 2, (result.code, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(lines[0]) < 600
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


LONG = "x" * 10_000

HOSTILE_ARGUMENTS = [
    (["mute", "--monitor", "1", "--for", "99999999999999d"], "argument --for: '99999999999999d'"),
    (["mute", "--monitor", "1", "--for", "9" * 5000 + "s"], "argument --for"),
    (["mute", "--monitor", "1", "--for", "0s"], "more than 0 and at most 90d"),
    (["mute", "--monitor", "1", "--for", "91d"], "more than 0 and at most 90d"),
    (["mute", "--monitor", "1", "--for", "soon"], "is not a duration"),
    (["mute", "--monitor", "99999999999999999999999", "--for", "1h"], "is not a monitor ID"),
    (["mute", "--monitor", str(2**63), "--for", "1h"], "from 1 to 9223372036854775807"),
    (["mute", "--monitor", "0", "--for", "1h"], "is not a monitor ID"),
    (["mute", "--monitor", "-3", "--for", "1h"], "is not a monitor ID"),
    (["mute", "--monitor", "9" * 10_000, "--for", "1h"], "is not a monitor ID"),
    (["mute", "--tag", LONG, "--for", "1h"], "too long for a tag: at most 200 characters"),
    (["mute", "--tag", "   ", "--for", "1h"], "is no tag"),
    (["mute", "--tag", "prod\x1b[2J", "--for", "1h"], "control characters"),
    (["mute", "--monitor", "1", "--for", "1h", "--reason", "y" * 100_000], "too long for a reason"),
    (["mute", "--monitor", "1", "--for", "1h", "--reason", "\x07bell"], "control characters"),
    (["mute", "--monitor", "1"], "required: --for"),
    (["unmute", "--id", "\x01" * 50], "is not a mute ID"),
    (["unmute", "--id", LONG], "is not a mute ID"),
    (["unmute", "--id", ""], "is not a mute ID"),
    (["unmute", "--monitor", "99999999999999999999999"], "is not a monitor ID"),
    (["unmute", "--tag", LONG], "too long for a tag"),
    (["demo", "--interval", "-1"], "argument --interval: '-1' is not a number of seconds"),
    (["demo", "--interval", "0"], "from 1 to 86400"),
    (["demo", "--interval", "nan"], "argument --interval: 'nan'"),
    (["demo", "--interval", "1e308"], "argument --interval: '1e308'"),
    (["demo", "--duration", "nan"], "argument --duration: 'nan'"),
    (["demo", "--duration", "inf"], "argument --duration: 'inf'"),
    (["demo", "--duration", "0"], "argument --duration: '0'"),
    (["simulate", "--port", "99999"], "argument --port: '99999' is not a port"),
    (["simulate", "--port", "-1"], "is not a port"),
    (["simulate", "--port", "eighty"], "is not a port"),
    (["simulate", "--host", LONG], "is not a host name or address"),
    (["simulate", "--host", "a" * 100, "--port", "0"], "cannot listen on"),
    (["simulate", "--host", "10.255.255.1", "--port", "0"], "cannot listen on 10.255.255.1:0"),
    (["simulate", "--api-key", ""], "is no API key"),
    (["--env-file", "{tmp}", "once"], "is a directory, not an env file"),
    (["--env-file", "/dev/zero", "once"], "is not a regular file"),
    (["--env-file", "{tmp}/missing.env", "once"], "cannot be read: No such file"),
    (["state", "import", "{tmp}/missing.json"], "missing.json does not exist"),
    (["state", "import", "{tmp}"], "is a directory"),
    (["state", "import", "/dev/zero"], "/dev/zero is not a regular file"),
    (["state", "import", "a" * 5000], "aaa: File name too long"),
    (["state"], "required: ACTION"),
    (["check", "extra"], "unrecognized arguments: extra"),
    (["bogus"], "invalid choice: 'bogus'"),
    ([], "required: COMMAND"),
]


@pytest.mark.parametrize(
    ("args", "fragment"),
    HOSTILE_ARGUMENTS,
    ids=[" ".join(args)[:40] or "nothing" for args, _ in HOSTILE_ARGUMENTS],
)
async def test_absurd_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = await cli(*argv, env=offline_env(tmp_path), cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "state.json").exists()  # nothing acted


async def test_accepted_values_at_the_edges_still_work(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    reason = "deploy  window\tof the " + "z" * 170  # spaces collapse; 200 characters then
    muted = await cli(
        "mute", "--monitor", str(2**63 - 1), "--for", "90d", "--reason", reason, env=env
    )
    assert muted.code == 0, muted.stderr
    tagged = await cli("mute", "--tag", "t" * 200, "--for", "1s", env=env)
    assert tagged.code == 0, tagged.stderr
    [kept, _] = NotifierState.model_validate_json((tmp_path / "state.json").read_bytes()).mutes
    assert kept.monitor_id == 2**63 - 1 and kept.reason == " ".join(reason.split())
    lifted = await cli("unmute", "--id", kept.id, env=env)
    assert lifted.code == 0, lifted.stderr


def valid_state() -> NotifierState:
    return NotifierState(
        monitors={7: MonitorState(watch_since=T0, baselined=True, last_polled_at=T0)},
        mutes=[
            Mute(
                id="0a1b2c3d",
                monitor_id=7,
                until=datetime.now(UTC) + timedelta(days=1),
                reason="imported",
                created_at=T0,
            )
        ],
    )


BAD_STATES: dict[str, tuple[bytes, str]] = {
    "newer": (
        f'{{"version": {STATE_VERSION + 1}, "monitors": {{}}}}'.encode(),
        f"has version {STATE_VERSION + 1}, newer than this notifier understands "
        f"({STATE_VERSION}): upgrade datafold-notifier",
    ),
    "not-json": (b"{'version': 1}", "is not JSON"),
    "another-shape": (b'{"name": "datafold-notifier", "version": "0.1.0"}', "is not a notifier"),
    "no-version": (b'{"monitors": {}}', "is not a notifier state (it has no version)"),
    "typo": (b'{"version": 1, "monitor": {}}', "(unknown field monitor)"),
    "list": (b"[]", "is not a notifier state (a JSON list, not an object)"),
    "empty": (b"", "is empty"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "is not JSON (recursion limit exceeded"),
    "not-utf8": (b"\xff\xfe{}", "is not JSON"),
}


def write_bad(tmp_path: Path, name: str) -> tuple[Path, str]:
    """The file for case `name` and the problem its error must name."""
    path = tmp_path / f"import-{name}.json"
    if name == "huge":
        with path.open("wb") as handle:
            handle.truncate(300 * 1024 * 1024)  # sparse: nothing is written to disk
        return path, "larger than a state can be (256 MiB)"
    content, problem = BAD_STATES[name]
    path.write_bytes(content)
    return path, problem


@pytest.mark.parametrize("name", [*BAD_STATES, "huge"])
async def test_importing_no_state_changes_nothing_in_the_state_file(
    tmp_path: Path, name: str
) -> None:
    env = offline_env(tmp_path)
    state_file = tmp_path / "state.json"
    await StateFile(state_file).save(valid_state())
    before, mtime = state_file.read_bytes(), state_file.stat().st_mtime_ns
    bad, problem = write_bad(tmp_path, name)
    result = await cli("state", "import", str(bad), env=env)
    assert_one_line_error(result, f"state file {bad} ", problem)
    assert state_file.read_bytes() == before and state_file.stat().st_mtime_ns == mtime


async def test_an_import_replaces_the_state_file_mutes_and_all(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    assert (await cli("mute", "--tag", "old", "--for", "1h", env=env)).code == 0
    source, state = tmp_path / "import.json", valid_state()
    source.write_text(state.model_dump_json())
    result = await cli("state", "import", str(source), env=env)
    assert result.code == 0, result.stderr
    saved = NotifierState.model_validate_json((tmp_path / "state.json").read_bytes())
    assert saved == state  # the old mute went with the old state


async def test_export_to_an_unwritable_place_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    assert (await cli("mute", "--monitor", "7", "--for", "1h", env=env)).code == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target, problem in [
        (tmp_path / "no" / "such" / "dir.json", "No such file or directory"),
        (tmp_path, "it is a directory"),
        (blocker / "below-a-file.json", "Not a directory"),
        (Path("/proc/export.json"), "cannot write state file /proc/export.json"),
    ]:
        result = await cli("state", "export", str(target), env=env)
        assert_one_line_error(result, f"cannot write state file {target}", problem)
    assert not (tmp_path / "no").exists()
    exported = tmp_path / "copy.json"
    result = await cli("state", "export", str(exported), env=env)
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == [
        "copy.json"
    ]  # no lock files beside an export


async def _closed_stdout(*args: str, env: dict[str, str]) -> Result:
    """Run the CLI with stdout a pipe whose reader has already gone: every write fails EPIPE."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = await asyncio.create_subprocess_exec(
            CLI, *args, env=env, stdout=writer, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(writer)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    assert proc.returncode is not None
    return Result(proc.returncode, "", err.decode())


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["mute", "--help"],
        ["--version"],
        ["state", "export", "-"],
        ["mute", "--monitor", "7", "--for", "1h"],
        ["demo", "--duration", "5"],
    ],
    ids=lambda args: " ".join(args),
)
async def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    env = offline_env(tmp_path)
    if args[0] == "state":
        assert (await cli("mute", "--monitor", "7", "--for", "1h", env=env)).code == 0
    result = await _closed_stdout(*args, env=env)
    assert result.code in (0, 141), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert "crashed" not in result.stderr


async def test_check_into_a_closed_pipe_ends_quietly(world: World) -> None:
    result = await _closed_stdout("check", env=world.env)
    assert result.code == 141, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert not [e for e in result.events() if e["level"] == "error"]


pg = pytest.mark.postgres


@pg
async def test_importing_no_state_changes_nothing_in_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {**offline_env(tmp_path), "NOTIFIER_STATE_URL": postgres_url}
    good, state = tmp_path / "good.json", valid_state()
    good.write_text(state.model_dump_json())
    assert (await cli("state", "import", str(good), env=env)).code == 0

    async def stored() -> tuple[object, ...]:
        async with await psycopg.AsyncConnection.connect(postgres_url, connect_timeout=5) as conn:
            document = await (await conn.execute("SELECT * FROM notifier_state")).fetchall()
            mutes = await (
                await conn.execute("SELECT * FROM notifier_mutes ORDER BY id")
            ).fetchall()
            lease = await (await conn.execute("SELECT * FROM notifier_lease")).fetchall()
        return document, mutes, lease

    before = await stored()
    assert before[1], "the good import wrote its mute"
    for name in [*BAD_STATES, "huge"]:
        bad, problem = write_bad(tmp_path, name)
        result = await cli("state", "import", "--force", str(bad), env=env)
        assert_one_line_error(result, f"state file {bad} ", problem)
        assert await stored() == before, name
        bad.unlink()
    exported = await cli("state", "export", "-", env=env)
    assert exported.code == 0, exported.stderr
    assert NotifierState.model_validate_json(exported.stdout) == state
