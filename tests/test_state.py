"""The state file: atomic, versioned, locked, and clear about problems."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.models import (
    MonitorInfo,
    MonitorState,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
    TrackedRun,
)
from notifier.state import StateError, StateFile

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def sample_state() -> NotifierState:
    event = RunEvent(monitor_id=7, run_id=70, state="alert", started_at=T0)
    notification = Notification(
        id=event.key, event=event, monitor=MonitorInfo(id=7, name="orders"), detected_at=T0
    )
    return NotifierState(
        monitors={
            7: MonitorState(
                watch_since=T0,
                baselined=True,
                runs={
                    70: TrackedRun(state="alert", handled=["alert"], first_seen=T0, last_seen=T0)
                },
            )
        },
        outbox=[OutboxEntry(notification=notification, pending=["slack"])],
    )


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "s.json").load() == NotifierState()


def test_round_trip_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert store.save(sample_state()) is True
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert StateFile(path).load() == sample_state()


def test_save_leaves_no_temp_files_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    store.save(sample_state())
    store.save(NotifierState())
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == ["s.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert store.save(sample_state()) is True
    mtime = path.stat().st_mtime_ns
    assert store.save(sample_state()) is False
    assert path.stat().st_mtime_ns == mtime
    reloaded = StateFile(path)
    reloaded.load()
    assert reloaded.save(sample_state()) is False


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"version": 1, "monitors": {"x": 1}}', b"\xff\xfe", b""],
    ids=["truncated", "not-object", "wrong-shape", "not-utf8", "empty"],
)
def test_corrupt_file_is_moved_aside_and_logged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    store = StateFile(path, clock=lambda: T0)
    with capture_logs() as logs:
        state = store.load()
    assert state == NotifierState()
    aside = tmp_path / "s.json.corrupt-20261126T120000Z"
    assert aside.read_bytes() == content
    assert not path.exists()
    [entry] = [e for e in logs if e["event"] == "state_file_corrupt"]
    assert entry["log_level"] == "error" and entry["path"] == str(path)


def test_newer_version_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"version": 99}')
    with pytest.raises(StateError, match=r"version 99.*upgrade"):
        StateFile(path).load()
    assert path.read_text() == '{"version": 99}'


def test_lock_keeps_a_second_daemon_off(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    first, second = StateFile(path), StateFile(path)
    with first.locked():
        with (
            pytest.raises(StateError, match="in use by another datafold-notifier"),
            second.locked(),
        ):
            pass
    with second.locked():
        pass


def test_unwritable_location_gives_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = StateFile(blocker / "s.json")  # a directory that is a file
    with pytest.raises(StateError) as info:
        store.save(sample_state())
    assert str(blocker / "s.json") in str(info.value) and "\n" not in str(info.value)


def test_peek_has_no_side_effects(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert store.peek() is None
    path.write_text("garbage")
    with pytest.raises(StateError, match="corrupt"):
        store.peek()
    assert path.read_text() == "garbage"


def test_taking_the_lock_removes_temp_files_of_an_interrupted_save(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateFile(path).save(sample_state())
    leftover = tmp_path / ".s.json.abc123.tmp"
    leftover.write_text("half")
    unrelated = tmp_path / ".other.json.abc123.tmp"
    unrelated.write_text("not ours")
    with StateFile(path).locked():
        assert not leftover.exists() and unrelated.exists()
    assert StateFile(path).load() == sample_state()


def test_stale_temp_files_are_removed_only_between_writes(tmp_path: Path) -> None:
    """`mute` may be writing (holding only the write lock) when a daemon starts: the daemon's
    clean-up of temp files waits for that write instead of deleting its temp file."""
    path = tmp_path / "s.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
            "time.sleep(1.0)",
            f"{path}.write.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    writing = tmp_path / ".s.json.abc.tmp"
    writing.write_text("{}")
    started = time.monotonic()
    with StateFile(path).locked():
        waited = time.monotonic() - started
    holder.wait(timeout=10)
    holder.stdout.close()
    assert waited >= 0.5, "the clean-up did not wait for the writer's lock"
    assert not writing.exists()  # the writer was gone by then: its leftover is cleaned up
