"""A full or read-only state directory (issue 4, point 3): one clear error naming the state
file, and the previous state left byte-identical, for `once` and `run`."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.cli import CLI, World, cli
from tests.fakes.delivery_audit import slack_run_id
from tests.fakes.subprocess_daemon import Daemon


def _limit_file_size(limit: int) -> Callable[[], None]:
    """For preexec_fn: a write beyond `limit` bytes fails with EFBIG, as on a full disk."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


_PR_CAPBSET_DROP = 24
#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: without them root obeys mode bits.
_DAC_CAPABILITIES = (1, 2, 3)


def _without_dac_override() -> Callable[[], None]:
    """For preexec_fn: root that respects a directory's mode (the interpreter lives under /root,
    mode 0700, so switching to an unprivileged user cannot run it)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def apply() -> None:
        for capability in _DAC_CAPABILITIES:
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return apply


async def _read_only(directory: Path) -> Callable[[], None] | None:
    """Make `directory` read-only for the notifier; the preexec_fn that takes, or a skip."""
    directory.chmod(0o555)
    preexec = _without_dac_override() if os.geteuid() == 0 else None
    try:
        probe = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            f": > '{directory}/probe'",
            preexec_fn=preexec,
            stderr=asyncio.subprocess.DEVNULL,
        )
        writable = await probe.wait() == 0
    except subprocess.SubprocessError:  # prctl refused in preexec_fn
        writable = True
    if writable:
        (directory / "probe").unlink(missing_ok=True)
        directory.chmod(0o755)
        pytest.skip("cannot make a directory read-only here (root without CAP_SETPCAP?)")
    return preexec


UNWRITABLE = {"full": "File too large", "read_only": "Permission denied"}


@pytest.mark.parametrize("command", ["once", "run"])
@pytest.mark.parametrize("condition", sorted(UNWRITABLE))
async def test_unwritable_state_directory_is_one_clear_error(
    world: World, tmp_path: Path, reaper: list[Daemon], condition: str, command: str
) -> None:
    state_file = tmp_path / "var" / "state.json"
    env = {**world.env, "NOTIFIER_STATE_FILE": str(state_file)}
    assert (await cli("once", env=env)).code == 0  # baselined; the lock file exists now
    run_id = world.sim.add_run(1, state="alert", started_at=world.now())
    before = state_file.read_bytes()
    if condition == "full":
        preexec: Callable[[], None] | None = _limit_file_size(len(before) // 2)
    else:
        preexec = await _read_only(state_file.parent)
    try:
        if command == "once":
            code, stderr = await _command("once", env, preexec)
        else:
            daemon = await Daemon.start(env, preexec)
            reaper.append(daemon)
            failed = await daemon.wait_event("state_save_failed")
            await daemon.wait_event("state_save_failed", failed + 1)  # a second cycle
            code = await daemon.stop()
            stderr = "\n".join([json.dumps(e) for e in daemon.events] + daemon.loose)
    finally:
        state_file.parent.chmod(0o755)

    complaints = [line for line in stderr.splitlines() if _is_error(line)]
    assert complaints, stderr[-2000:]
    for line in complaints:
        assert str(state_file) in line and UNWRITABLE[condition] in line, line
    assert code == 2  # the state file cannot be used: the same code for every command
    if command == "once":
        assert len(complaints) == 1, complaints
    else:
        assert {json.loads(c)["event"] for c in complaints} == {"state_save_failed"}
        # the save failed but the daemon remembers in memory: no resend every cycle
        assert [slack_run_id(m) for m in world.slack.messages] == [run_id]
    assert "Traceback" not in stderr and '"exception"' not in stderr
    assert state_file.read_bytes() == before
    assert sorted(p.name for p in state_file.parent.iterdir()) == [
        "state.json",
        "state.json.lock",
        "state.json.write.lock",
    ]


async def test_read_only_state_directory_from_the_start(world: World, tmp_path: Path) -> None:
    """No lock file can be made: `run` refuses to start, with one line naming the state file."""
    state_file = tmp_path / "var" / "state.json"
    env = {**world.env, "NOTIFIER_STATE_FILE": str(state_file)}
    assert (await cli("once", env=env)).code == 0
    Path(f"{state_file}.lock").unlink()
    Path(f"{state_file}.write.lock").unlink()
    before = state_file.read_bytes()
    preexec = await _read_only(state_file.parent)
    try:
        code, stderr = await _command("run", env, preexec)
    finally:
        state_file.parent.chmod(0o755)
    complaints = [line for line in stderr.splitlines() if _is_error(line)]
    assert code == 2, stderr
    assert len(complaints) == 1, stderr
    assert str(state_file) in complaints[0] and "Permission denied" in complaints[0]
    assert "another datafold-notifier" not in complaints[0]
    assert "Traceback" not in stderr
    assert state_file.read_bytes() == before
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["state.json"]


async def _command(
    command: str, env: dict[str, str], preexec: Callable[[], None] | None
) -> tuple[int, str]:
    """Run a CLI command to its end (killed if it takes 30 s); its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        CLI,
        command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=preexec,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def _is_error(line: str) -> bool:
    """A loose line (the CLI's own one-line error) or a JSON event at error level or above."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return bool(line.strip())
    return isinstance(event, dict) and event.get("level") in ("error", "critical")
