"""The state file: atomic, versioned, locked, and clear about problems."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.domain.models import (
    STATE_VERSION,
    Mute,
    NotifierState,
)
from notifier.store.file import (
    StateError,
    StateFile,
    StateProblem,
    parse_state,
    read_state_file,
    write_state_file,
)
from tests.fakes.states import T0, sample_state


async def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert await StateFile(tmp_path / "s.json").load() == NotifierState()


async def test_round_trip_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert await store.save(sample_state()) is True
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert await StateFile(path).load() == sample_state()


async def test_save_leaves_no_temp_files_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    await store.save(sample_state())
    await store.save(NotifierState())
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == ["s.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert await store.save(sample_state()) is True
    mtime = path.stat().st_mtime_ns
    assert await store.save(sample_state()) is False
    assert path.stat().st_mtime_ns == mtime
    reloaded = StateFile(path)
    await reloaded.load()
    assert await reloaded.save(sample_state()) is False


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b'{"version": 1, "monitors": {"x": 1}}',
        b"\xff\xfe",
        b"",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": 1, "mutes": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["truncated", "not-object", "wrong-shape", "not-utf8", "empty", "deep", "deep-inside"],
)
async def test_corrupt_file_is_moved_aside_and_logged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    store = StateFile(path, clock=lambda: T0)
    with capture_logs() as logs:
        state = await store.load()
    assert state == NotifierState()
    aside = tmp_path / "s.json.corrupt-20261126T120000Z"
    assert aside.read_bytes() == content
    assert not path.exists()
    [entry] = [e for e in logs if e["event"] == "state_file_corrupt"]
    assert entry["log_level"] == "error" and entry["path"] == str(path)


@pytest.mark.parametrize(
    "content",
    ['{"version": 99}', '{"version": 99, "monitors": "a new shape"}'],
    ids=["number", "new-shape"],
)
async def test_newer_version_is_refused_and_kept(tmp_path: Path, content: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(StateError, match=r"version 99, newer .*\(1\): upgrade"):
        await StateFile(path).load()
    for read in (StateFile(path).peek, lambda: read_state_file(path)):
        with pytest.raises(StateError, match=r"version 99, newer .*\(1\): upgrade"):
            read()
    with pytest.raises(StateError, match="newer"):
        StateFile(path).update_mutes(list)
    assert path.read_text() == content


async def test_a_version_written_as_text_counts_for_the_daemon_not_for_an_import(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"version": "99"}')
    with pytest.raises(StateError, match="version 99, newer"):
        await StateFile(path).load()
    with pytest.raises(StateError, match='its version "99" is not a version number'):
        read_state_file(path)


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


async def test_unwritable_location_gives_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = StateFile(blocker / "s.json")  # a directory that is a file
    with pytest.raises(StateError) as info:
        await store.save(sample_state())
    assert str(blocker / "s.json") in str(info.value) and "\n" not in str(info.value)


def test_peek_has_no_side_effects(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    assert store.peek() is None
    path.write_text("garbage")
    with pytest.raises(StateError, match=r"is not JSON .*corrupt, and `run` will move it aside"):
        store.peek()
    assert path.read_text() == "garbage"


MUTE = (
    '{"id": "ab12cd34", "monitor_id": 7, "until": "2026-11-26T13:00:00Z", '
    '"created_at": "2026-11-26T12:00:00Z"}'
)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b" \n\t", "is empty"),
        (b"{not json", "is not JSON (key must be a string"),
        (b"\xff\xfe\x00", "is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not JSON (recursion limit exceeded"),
        (b"[1, 2]", "is not a notifier state (a JSON list, not an object)"),
        (b'"state"', "is not a notifier state (a JSON string, not an object)"),
        (b"null", "is not a notifier state (a JSON null, not an object)"),
        (b"{}", "is not a notifier state (it has no version)"),
        (b'{"name": "package.json", "version": "1.0.0"}', 'its version "1.0.0" is not'),
        (b'{"version": true}', "its version true is not a version number"),
        (b'{"version": 0}', "its version 0 is not a version number"),
        (b'{"version": 1.5}', "its version 1.5 is not a version number"),
        (b'{"version": 2}', "has version 2, newer than this notifier understands (1)"),
        (b'{"version": 1, "monitors": []}', "(at monitors: Input should be a valid dictionary"),
        (b'{"version": 1, "monitor": {}}', "(unknown field monitor)"),
        (b'{"version": 1, "outbox": [{"pending": []}]}', "(at outbox.0.notification: Field"),
        (
            b'{"version": 1, "monitors": {"7": {"watch_since": "2026-11-26T12:00:00Z", "x": 1}}}',
            "(unknown field monitors.7.x)",
        ),
        (
            b'{"version": 1, "monitors": {"99999999999999999999": '
            b'{"watch_since": "2026-11-26T12:00:00Z"}}}',
            "(a number beyond 64 bits at monitors.99999999999999999999)",
        ),
        (
            ('{"version": 1, "mutes": [' + MUTE.replace("13:00:00Z", "13:00:00") + "]}").encode(),
            "(a time without a time zone at mutes.0.until)",
        ),
        (
            (
                '{"version": 1, "mutes": ['
                + MUTE.replace('"monitor_id": 7', '"monitor_id": 1e30')
                + "]}"
            ).encode(),
            "(at mutes.0.monitor_id",
        ),
    ],
)
def test_an_import_is_validated_in_full(content: bytes, problem: str) -> None:
    with pytest.raises(StateProblem) as info:
        parse_state(content, strict=True)
    assert str(info.value).startswith(problem) or problem in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
    assert info.value.newer == ("newer" in problem)


async def test_a_valid_import_reads_back_what_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = sample_state()
    state.mutes = [Mute.model_validate_json(MUTE)]
    await StateFile(path).save(state)
    assert read_state_file(path) == state
    assert parse_state(path.read_bytes(), strict=True).version == STATE_VERSION


def test_reading_an_import_names_the_file_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(StateError, match=f"state file {missing} does not exist"):
        read_state_file(missing)
    with pytest.raises(StateError, match=f"state file {tmp_path} is a directory"):
        read_state_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(StateError, match="is not a regular file"):
        read_state_file(fifo)
    with pytest.raises(StateError, match="is not a regular file"):
        read_state_file(Path("/dev/zero"))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2000)
    with pytest.raises(StateError, match=r"big.json is 2000 bytes, larger than a state can be"):
        read_state_file(big, max_bytes=1000)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[]")
    with pytest.raises(StateError, match=f"state file {garbage} is not a notifier state"):
        read_state_file(garbage)


async def test_replace_writes_the_imported_mutes_over_the_files_own(tmp_path: Path) -> None:
    """An import is the whole state: the mutes in the file it replaces do not survive it."""
    path = tmp_path / "s.json"
    old = Mute.model_validate_json(MUTE)
    StateFile(path).update_mutes(lambda _: [old])
    imported = sample_state()
    new = old.model_copy(update={"id": "ffff0000", "until": T0 + timedelta(days=1)})
    imported.mutes = [new]
    StateFile(path).replace(imported)
    assert (await StateFile(path).load()).mutes == [new]


async def test_replace_works_over_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("garbage")
    StateFile(path).replace(sample_state())
    assert await StateFile(path).load() == sample_state()


def test_write_state_file_is_atomic_0600_and_creates_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out" / "copy.json"
    with pytest.raises(StateError, match=f"cannot write state file {target}: No such file"):
        write_state_file(target, sample_state())
    assert not target.parent.exists()
    with pytest.raises(StateError, match=f"cannot write state file {tmp_path}: it is a directory"):
        write_state_file(tmp_path, sample_state())
    target.parent.mkdir()
    write_state_file(target, sample_state())
    assert [p.name for p in target.parent.iterdir()] == ["copy.json"]  # no lock files
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_state_file(target) == sample_state()


async def test_taking_the_lock_removes_temp_files_of_an_interrupted_save(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    await StateFile(path).save(sample_state())
    leftover = tmp_path / ".s.json.abc123.tmp"
    leftover.write_text("half")
    unrelated = tmp_path / ".other.json.abc123.tmp"
    unrelated.write_text("not ours")
    with StateFile(path).locked():
        assert not leftover.exists() and unrelated.exists()
    assert await StateFile(path).load() == sample_state()


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
