"""Crash safety (issue 4, point 3): SIGKILL anywhere in a cycle; no alert lost, none sent thrice.

`datafold-notifier run` is killed after the fetch, during delivery, during and right after the
state write, while Slack and the webhook succeed, fail or hang; then restarted. Every alert/error
run reaches each destination at least once and at most twice, the state file parses after every
kill, history and `ok` runs are never sent. A full or read-only state directory gives one clear
error and leaves the previous state byte-identical.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import resource
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from notifier.domain.models import IN_PROGRESS_STATES, NotifierState
from tests.fakes.cli import CLI, World, cli
from tests.fakes.crash_receiver import CrashReceiver
from tests.fakes.delivery_audit import (
    DESTINATIONS,
    NOTIFY_STATES,
    deliveries_per_run,
    delivery_problems,
    log_problems,
    slack_run_id,
)
from tests.fakes.subprocess_daemon import Daemon, Event
from tests.fakes.webhook import Reply

#: On PYTHONPATH of every daemon: a `sitecustomize` that can hold a state write before its rename.
PAUSE_HOOK = Path(__file__).parent / "fakes" / "crash_sitecustomize"
#: Events that must never appear, whatever is killed when.
BROKEN = {"cycle_failed", "crashed", "state_file_corrupt", "state_save_failed", "daemon_killed"}


@pytest.fixture
async def reaper() -> AsyncIterator[list[Daemon]]:
    """Daemons a test starts; whatever is still alive at the end (a failed test) is killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


def destination(sink_name: str) -> str:
    """The state names the webhook after a hash of its URL; the test calls it "webhook"."""
    return "webhook" if sink_name.startswith("webhook-") else sink_name


@dataclass
class CrashTrial:
    """One world, the runs the test made in it, and what each destination accepted.

    `exposures[(run, destination)]` counts kills after which the state file did not record a
    delivery the destination had already accepted: each one allows one repeat, no more.
    """

    world: World
    receiver: CrashReceiver
    env: dict[str, str]
    pause_flag: Path
    daemons: list[Daemon]
    notify: dict[int, tuple[int, str]] = field(default_factory=dict)
    quiet: set[int] = field(default_factory=set)
    waiting: dict[int, int] = field(default_factory=dict)
    exposures: Counter[tuple[int, str]] = field(default_factory=Counter)
    kills: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.world.state_file

    async def start(self) -> Daemon:
        daemon = await Daemon.start(self.env)
        self.daemons.append(daemon)
        return daemon

    def add(self, monitor_id: int, state: str, *, ago: float = 0.0) -> int:
        """A run started `ago` seconds before now; `ago` > 0 makes it history at baseline."""
        started = self.world.now() - timedelta(seconds=ago)
        error = "Query failed: relation does not exist" if state == "error" else None
        run_id = self.world.sim.add_run(monitor_id, state=state, started_at=started, error=error)
        self._file(run_id, monitor_id, state, history=ago > 0)
        return run_id

    def finish(self, run_id: int, state: str) -> None:
        """An in-progress run reaches `state` (news if it is alert/error, even if it is old)."""
        monitor_id = self.waiting.pop(run_id)
        error = "Connection timed out" if state == "error" else None
        self.world.sim.set_run_state(monitor_id, run_id, state, error=error)
        self._file(run_id, monitor_id, state, history=False)

    def _file(self, run_id: int, monitor_id: int, state: str, *, history: bool) -> None:
        if state in IN_PROGRESS_STATES:
            self.waiting[run_id] = monitor_id
        elif state in NOTIFY_STATES and not history:
            self.notify[run_id] = (monitor_id, state)
        else:
            self.quiet.add(run_id)

    def pause_write_recording(self, runs: set[int]) -> None:
        """The next state write that records one of `runs` stops before its rename."""
        self.pause_flag.write_text(json.dumps(sorted(runs)))

    def received(self) -> dict[str, Counter[int]]:
        return deliveries_per_run(self.receiver.accepted, self.world.slack)

    def saved_state(self) -> NotifierState:
        """The state file as a restart would read it; it must always parse."""
        raw = self.state_file.read_bytes()
        json.loads(raw)
        return NotifierState.model_validate_json(raw)

    def recorded(self, state: NotifierState, run_id: int, dest: str) -> bool:
        """The state says `dest` has this run: it is handled and not pending for `dest`."""
        monitor_id, notify_state = self.notify[run_id]
        monitor = state.monitors.get(monitor_id)
        tracked = monitor.runs.get(run_id) if monitor else None
        if tracked is None or notify_state not in tracked.handled:
            return False
        return not any(
            entry.notification.event.run_id == run_id
            and any(destination(name) == dest for name in entry.pending)
            for entry in state.outbox
        )

    def all_accepted_recorded(self) -> bool:
        """Every delivery a destination accepted so far is in the state file."""
        state = self.saved_state()
        received = self.received()
        return all(
            self.recorded(state, run_id, dest)
            for dest in DESTINATIONS
            for run_id in received[dest]
            if run_id in self.notify
        )

    def delivered_everywhere(self) -> bool:
        received = self.received()
        return all(received[dest][run] for dest in DESTINATIONS for run in self.notify)

    async def kill(self, daemon: Daemon) -> None:
        """SIGKILL, then check what a restart would find: a state file that parses, no loss."""
        self.kills.append(await daemon.kill())
        await asyncio.sleep(0.05)  # a request the dead daemon had already sent lands now
        self.pause_flag.unlink(missing_ok=True)
        state = self.saved_state()
        queued = {
            entry.notification.event.run_id
            for entry in state.outbox
            if entry.notification.kind == "run"
        }
        assert not queued & self.quiet, "a history or ok run was queued as an alert"
        received = self.received()
        for run_id in self.notify:
            for dest in DESTINATIONS:
                if received[dest][run_id] and not self.recorded(state, run_id, dest):
                    self.exposures[(run_id, dest)] += 1

    async def until_quiet(self, daemon: Daemon, within: float = 20) -> None:
        """Every run delivered everywhere and recorded in the state file."""
        try:
            await daemon.wait_for(
                lambda: self.delivered_everywhere() and self.all_accepted_recorded(), within
            )
        except AssertionError as exc:
            lines = [*self.unfinished(), *self.problems(), str(exc)[:1500]]
            raise AssertionError("\n".join(lines)) from None

    def unfinished(self) -> list[str]:
        state, received = self.saved_state(), self.received()
        return [
            f"{dest}: run {run_id} " + ("not recorded" if received[dest][run_id] else "missing")
            for run_id in sorted(self.notify)
            for dest in DESTINATIONS
            if not (received[dest][run_id] and self.recorded(state, run_id, dest))
        ]

    async def stop(self, daemon: Daemon) -> None:
        await daemon.wait_event("daemon_started")  # SIGTERM before that is not handled yet
        code = await daemon.stop()
        assert code == 0, daemon.events[-6:]
        assert daemon.events[-1]["event"] == "daemon_stopped"

    def problems(self) -> list[str]:
        """Everything wrong with the outcome, as readable lines."""
        return delivery_problems(
            self.received(), self.notify, self.exposures, self.quiet
        ) + log_problems(self.daemons, BROKEN)

    def stray_temp_files(self) -> list[str]:
        pattern = f".{self.state_file.name}.*.tmp"
        return sorted(p.name for p in self.state_file.parent.glob(pattern))


#: Runs there before the first start: quiet history, and two still in progress (news later).
HISTORY = ((1, "alert"), (2, "error"), (1, "ok"), (2, "checking"), (1, "created"))


def trial(
    world: World, receiver: CrashReceiver, hook_url: str, tmp: Path, reaper: list[Daemon]
) -> CrashTrial:
    """A trial with history on both monitors: two quiet finished runs and two in progress."""
    env = {
        **world.env,
        "NOTIFIER_WEBHOOK_URLS": hook_url,
        "NOTIFIER_POLL_INTERVAL_SECONDS": "1",
        "PYTHONPATH": str(PAUSE_HOOK),
        "CRASH_PAUSE_FLAG": str(tmp / "pause-flag.json"),
    }
    crash = CrashTrial(world, receiver, env, tmp / "pause-flag.json", reaper)
    for monitor_id, state in HISTORY:
        crash.add(monitor_id, state, ago=300)
    return crash


async def baseline(crash: CrashTrial) -> Daemon:
    daemon = await crash.start()
    await daemon.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
    await daemon.wait_event("state_saved")
    return daemon


def misbehave(crash: CrashTrial, behaviour: str, delay: float = 1.0) -> None:
    """Destinations fail or hang for the next requests, across restarts: Slack answers 500 to
    one send (and slack_sdk's retry of it), the webhook 503 to two; or each hangs once."""
    if behaviour == "failing":
        crash.world.slack.server_error(times=2)
        crash.receiver.reply(Reply(503), Reply(503))
    elif behaviour == "slow":
        crash.world.slack.slow(delay)
        crash.receiver.reply(Reply(delay=delay))


async def reach(kill_at: str, daemon: Daemon, crash: CrashTrial, news: set[int]) -> None:
    """Wait until the daemon is at `kill_at` in the cycle that handles `news`."""

    def about_news(event: Event) -> bool:
        return event.get("run_id") in news

    if kill_at == "detected":  # fetched, detected, nothing delivered yet
        await daemon.wait_event("run_detected", where=about_news)
    elif kill_at == "sent":  # one destination accepted one notification
        await daemon.wait_event("notification_sent", where=about_news)
    elif kill_at == "stuck":  # a delivery hangs in a slow receiver
        await daemon.wait_for(lambda: crash.receiver.in_flight > 0)
    elif kill_at == "mid_write":  # temp file written and fsynced, not renamed yet
        await daemon.wait_event("crash_paused_before_replace")
    else:  # "saving": just before the atomic write; "saved": just after it
        detected = await daemon.wait_event("run_detected", where=about_news)
        await daemon.wait_event(f"state_{kill_at}", detected)


KILL_POINTS = ("detected", "sent", "saving", "mid_write", "saved")
BEHAVIOURS = ("ok", "failing", "slow")
#: A slow destination only matters while a delivery is in flight; elsewhere it is "ok" again.
CASES = [(kill, behaviour) for kill in KILL_POINTS for behaviour in ("ok", "failing")]
CASES += [("sent", "slow"), ("stuck", "slow")]


@pytest.mark.parametrize(("kill_at", "behaviour"), CASES)
async def test_sigkill_at_a_point_of_the_cycle(
    world: World, tmp_path: Path, reaper: list[Daemon], kill_at: str, behaviour: str
) -> None:
    receiver = CrashReceiver()
    async with receiver.serve() as hook_url:
        crash = trial(world, receiver, hook_url, tmp_path, reaper)
        daemon = await baseline(crash)
        misbehave(crash, behaviour)
        news = {crash.add(1, "alert"), crash.add(2, "error"), crash.add(1, "ok")}
        in_progress = sorted(crash.waiting)
        crash.finish(in_progress[0], "alert")
        crash.finish(in_progress[1], "ok")
        news |= set(in_progress)
        if kill_at == "mid_write":
            crash.pause_write_recording(news)
        await reach(kill_at, daemon, crash, news)
        await crash.kill(daemon)
        crash.add(2, "alert")  # while it is down
        daemon = await crash.start()
        await crash.until_quiet(daemon)
        await crash.stop(daemon)
    assert crash.problems() == []
    assert len(crash.notify) == 4 and crash.kills
    if kill_at == "mid_write":
        assert crash.kills == ["crash_paused_before_replace"]
    if kill_at == "stuck" or (kill_at, behaviour) == ("mid_write", "ok"):
        assert crash.exposures, "the kill should have come between a delivery and its save"
    assert crash.stray_temp_files() == [], "a killed write left its temp file behind"


async def random_kills(
    world: World, tmp_path: Path, reaper: list[Daemon], *, seed: int, rounds: int
) -> CrashTrial:
    """Kill at a random moment of a round, restart, again; destinations misbehave at random.

    Before each kill the daemon is given time to record what destinations accepted after the
    previous kill, so no delivery is exposed to two kills and "at most twice" must hold.
    """
    rng = random.Random(seed)
    receiver = CrashReceiver()
    async with receiver.serve() as hook_url:
        crash = trial(world, receiver, hook_url, tmp_path, reaper)
        daemon = await baseline(crash)
        for _ in range(rounds):
            await daemon.wait_for(crash.all_accepted_recorded)
            misbehave(crash, rng.choice(BEHAVIOURS), delay=rng.uniform(0.2, 1.0))
            for run_id in list(crash.waiting):
                if rng.random() < 0.5:
                    crash.finish(run_id, rng.choice(("alert", "error", "ok")))
            for _ in range(rng.randint(0, 3)):
                crash.add(rng.choice((1, 2)), rng.choice(("alert", "error", "ok", "checking")))
            await daemon.wait_event("daemon_started")
            await asyncio.sleep(rng.uniform(0.0, 1.6))  # its first cycle runs at once
            await crash.kill(daemon)
            if rng.random() < 0.3:
                crash.add(rng.choice((1, 2)), rng.choice(NOTIFY_STATES))
            daemon = await crash.start()
        for run_id in list(crash.waiting):
            crash.finish(run_id, rng.choice(("alert", "ok")))
        await crash.until_quiet(daemon, within=60)
        await crash.stop(daemon)
    return crash


@pytest.mark.timeout(90)
async def test_sigkill_at_random_moments(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    crash = await random_kills(world, tmp_path, reaper, seed=20261126, rounds=10)
    assert crash.problems() == [], f"kills landed after: {Counter(crash.kills)}"
    assert len(crash.notify) >= 10
    assert crash.stray_temp_files() == [], "a killed write left its temp file behind"


@pytest.mark.skipif(
    not os.environ.get("NOTIFIER_SOAK"),
    reason="soak: set NOTIFIER_SOAK=1 (NOTIFIER_SOAK_ROUNDS, default 300: about 8 min; "
    "NOTIFIER_SOAK_SEED to replay)",
)
@pytest.mark.timeout(3600)
async def test_soak_sigkill_at_random_moments(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    seed = int(os.environ.get("NOTIFIER_SOAK_SEED", str(random.randrange(2**32))))
    rounds = int(os.environ.get("NOTIFIER_SOAK_ROUNDS", "300"))
    print(f"NOTIFIER_SOAK_SEED={seed} NOTIFIER_SOAK_ROUNDS={rounds}")  # shown when it fails
    crash = await random_kills(world, tmp_path, reaper, seed=seed, rounds=rounds)
    assert crash.problems() == [], f"seed {seed}; kills landed after: {Counter(crash.kills)}"
    assert crash.stray_temp_files() == [], f"seed {seed}"


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
