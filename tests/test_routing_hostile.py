"""Routing against hostile monitor names: patterns run in linear time, bounded, refused at load
when RE2 cannot take them; a daemon routing such names keeps answering /healthz and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.domain.models import MonitorInfo
from notifier.route.patterns import NAME_MATCH_MAX, PATTERN_MAX, NamePattern
from notifier.route.routes_file import RoutesError
from notifier.route.rules import Match, Routes
from notifier.run.routes import load_routes
from tests.fakes.cli import CLI, World

#: Generous: the machine is shared. Python's `re` needs hours or more for any of these.
QUICK = 1.0

#: Patterns that backtrack exponentially in Python's `re` when they fail near the end.
CATASTROPHIC = [
    "(a+)+$",
    "(a+)+b",
    "(x+x+)+y",
    "(a|aa)+$",
    "(a|a?)+$",
    "^(\\w+\\s?)*$",
    "(.*a){20}$",
    "(?i)(A+)+$",
]
#: Globs whose `fnmatch` translation tries the name once per glob position (no worse).
SLOW_GLOBS = [
    "*a*a*a*a*a*a*a*b",
    "*" + "a" * 990 + "b",
    "*" + "?" * 990 + "b",
    "*" + "a?" * 495 + "b*",
]
#: Names just short enough to be matched, and far too long; ASCII and 2-byte UTF-8.
NAMES = [
    pytest.param("a" * (NAME_MATCH_MAX - 1) + "!", id="at-limit"),
    pytest.param("é" * (NAME_MATCH_MAX - 1) + "!", id="at-limit-utf8"),
    pytest.param("a" * 100_000 + "!", id="100k"),
    pytest.param("ab" * 50_000, id="100k-ab"),
]


def monitor(name: str | None) -> MonitorInfo:
    return MonitorInfo(id=7, name=name, tags=["finance"], owner="ana@example.com")


def timed(pattern: NamePattern, name: str) -> tuple[bool, float]:
    started = time.perf_counter()
    result = pattern.matches(name)
    return result, time.perf_counter() - started


# `NamePattern` directly: `MonitorInfo` may cut long names before they get here.
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("source", CATASTROPHIC)
def test_a_catastrophic_regex_returns_quickly(source: str, name: str) -> None:
    pattern = NamePattern.regex(source)
    result, elapsed = timed(pattern, name)
    assert elapsed < QUICK, f"{elapsed:.3f}s"
    again, elapsed = timed(pattern, name)  # warm: RE2 reuses its DFA cache
    assert again is result and elapsed < QUICK, f"{elapsed:.3f}s"
    started = time.perf_counter()
    Match(name_regex=pattern).matches(monitor(name), "alert")
    assert time.perf_counter() - started < QUICK


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("glob", SLOW_GLOBS)
def test_a_slow_glob_returns_quickly(glob: str, name: str) -> None:
    result, elapsed = timed(NamePattern.glob(glob), name)
    assert not result
    assert elapsed < QUICK, f"{elapsed:.3f}s"


@pytest.mark.parametrize("name", ["a" * NAME_MATCH_MAX, "é" * NAME_MATCH_MAX])
def test_a_big_program_at_the_name_limit_stays_bounded(name: str) -> None:
    """Past its DFA budget RE2 steps through every instruction per byte: the limits bound that
    (about 0.1 s here, measured; Python's `re` would never finish)."""
    result, elapsed = timed(NamePattern.regex("(.{0,100}){9}b"), name)
    assert not result
    assert elapsed < QUICK, f"{elapsed:.3f}s"


def test_a_name_over_the_limit_meets_no_name_condition() -> None:
    name = "orders_" + "x" * NAME_MATCH_MAX
    for pattern in (NamePattern.glob("*"), NamePattern.regex(""), NamePattern.glob("orders_*")):
        assert pattern.matches(name[:NAME_MATCH_MAX])
        assert not pattern.matches(name)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("(?i)^ORDERS", "orders_daily", True),
        ("^ORDERS", "orders_daily", False),
        ("(?i:ORDERS)_daily$", "Orders_daily", True),
        ("(?i:ORDERS)_DAILY$", "orders_daily", False),
        ("(?i)^été_", "ÉTÉ_ventes", True),
        ("(?i)straße", "STRASSE", False),  # RE2 folds case letter by letter, as `re` does
        ("^orders_v[0-9]+$", "orders_v12", True),
        ("^orders_v[0-9]+$", "orders_v12\n", False),  # `$` is the end of the name in RE2
        ("(?P<team>[a-z]+)_daily", "finance_daily", True),
        ("\\bdaily\\b", "orders daily report", True),
        ("^\\w+$", "café", False),  # RE2's \w, \d, \s and \b are ASCII only
        ("^\\pL+$", "café", True),  # \pL is any letter
        ("", "anything", True),
    ],
)
def test_regex_syntax_as_documented(pattern: str, name: str, expected: bool) -> None:
    assert Match.model_validate({"name_regex": pattern}).matches(monitor(name), "x") is expected


@pytest.mark.parametrize(
    ("glob", "name", "expected"),
    [
        ("orders_*", "ORDERS_daily", True),
        ("STRASSE_*", "straße_1", True),  # casefolded, as before
        ("[a-c]*", "b1", True),
        ("[!a-c]*", "b1", False),
        ("[z-a]*", "z", False),  # a reversed range is empty
        ("[!z-a]", "q", True),
        ("[*", "[*x", True),  # an unclosed [ is itself
        ("a\\b", "a\\b", True),  # a backslash escapes nothing
        ("(a+)+$", "(a+)+$", True),  # RE2 syntax is no glob syntax
        ("*", "line\nbreak", True),
    ],
)
def test_glob_as_documented(glob: str, name: str, expected: bool) -> None:
    assert Match.model_validate({"name": glob}).matches(monitor(name), "x") is expected


def test_a_lone_surrogate_in_a_name_is_matched_not_raised() -> None:
    name = "orders_\ud800_daily"  # JSON allows it; UTF-8 does not
    assert Match.model_validate({"name": "orders_*"}).matches(monitor(name), "x")
    assert Match.model_validate({"name_regex": "_daily$"}).matches(monitor(name), "x")


def test_patterns_compare_and_dump_as_written() -> None:
    first = Match.model_validate({"name": "orders*", "name_regex": "(?i)daily"})
    second = Match.model_validate({"name": "orders*", "name_regex": "(?i)daily"})
    assert first == second and hash(first) == hash(second)
    assert first != Match.model_validate({"name": "orders*", "name_regex": "daily"})
    assert first.model_dump(include={"name", "name_regex"}) == {
        "name": "orders*",
        "name_regex": "(?i)daily",
    }
    assert json.loads(first.model_dump_json())["name_regex"] == "(?i)daily"
    assert repr(first.name) == "NamePattern.glob('orders*')"


HEAD = """
[destinations.team]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[[routes]]
name = "finance"
match = { tags = ["finance"] }
to = ["team"]
"""
RE2_SYNTAX = "(RE2 syntax: no backreferences or lookaround; \\z, not \\Z, for the end)"


def _second_route(key: str, value: str) -> str:
    return HEAD + f"\n[[routes]]\nname = \"orders\"\nmatch = {{ {key} = '{value}' }}\nto = []\n"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name_regex", "(a)\\1", "invalid escape sequence: \\1"),
        ("name_regex", "(?P<x>a)(?P=x)", "invalid perl operator: (?P"),
        ("name_regex", "orders(?=_daily)", "invalid perl operator: (?="),
        ("name_regex", "orders(?!_daily)", "invalid perl operator: (?!"),
        ("name_regex", "(?<=orders)_daily", "invalid perl operator: (?<="),
        ("name_regex", "(?<!x)_daily", "invalid perl operator: (?<!"),
        ("name_regex", "(?>a+)b", "invalid perl operator: (?>"),
        ("name_regex", "a++", "bad repetition operator: ++"),
        ("name_regex", "daily\\Z", "invalid escape sequence: \\Z"),
        ("name_regex", "(?x) orders", "invalid perl operator: (?x"),
        ("name_regex", "orders(", "missing ): orders("),
        ("name_regex", "a{1001}", "invalid repetition size: {1001}"),
        ("name_regex", "(\\pL{0,30}){30}", "pattern too large - compile failed"),
    ],
)
def test_a_pattern_re2_cannot_take_is_refused_at_load(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(_second_route(key, value), encoding="utf-8")
    with pytest.raises(RoutesError) as caught:
        load_routes(path, {"SLACK_BOT_TOKEN": "xoxb-1"})
    text = str(caught.value)
    assert "\n" not in text
    assert text == (
        f"{path}: routes[1].match.name_regex: not a valid regular expression: {message} "
        f"{RE2_SYNTAX}"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name_regex", "a" * (PATTERN_MAX + 1), "1001 characters long: at most 1000 are accepted"),
        ("name", "*" * (PATTERN_MAX + 1), "1001 characters long: at most 1000 are accepted"),
        ("name", "", "an empty glob matches no name: give at least one character"),
    ],
)
def test_an_overlong_or_empty_pattern_is_refused_at_load(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(_second_route(key, value), encoding="utf-8")
    with pytest.raises(RoutesError) as caught:
        load_routes(path, {"SLACK_BOT_TOKEN": "xoxb-1"})
    assert str(caught.value) == f"{path}: routes[1].match.{key}: {message}"


def test_a_pattern_at_the_length_limit_is_accepted() -> None:
    table: dict[str, Any] = {
        "destinations": {"team": {"type": "slack", "channel": "C1", "token": "t"}},
        "routes": [
            {"match": {"name_regex": "a" * PATTERN_MAX, "name": "?" * PATTERN_MAX}, "to": ["team"]}
        ],
    }
    [route] = Routes.model_validate(table).routes
    assert route.match.name is not None and route.match.name_regex is not None
    assert route.match.name.matches("a" * PATTERN_MAX)
    assert route.match.name_regex.matches("a" * PATTERN_MAX)


async def test_the_event_loop_keeps_ticking_while_hostile_names_are_routed() -> None:
    match = Match.model_validate({"name_regex": "(x+x+)+y", "name": "*a*a*a*a*a*a*a*b"})
    names = ["x" * n + "!" for n in range(0, NAME_MATCH_MAX, 25)] + ["a" * 100_000]
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    for name in names:
        assert match.name is not None and match.name_regex is not None
        match.name.matches(name)
        match.name_regex.matches(name)
        match.matches(monitor(name), "alert")
        await asyncio.sleep(0)
    stop.set()
    await ticker
    assert max(gaps) < QUICK, f"longest stall {max(gaps):.3f}s"


ROUTES = """
[destinations.finance-slack]
type = "slack"
channel = "C0FINANCE"
token = "env:SLACK_BOT_TOKEN"

[destinations.team-slack]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[[routes]]
name = "slow in fnmatch"
match = { name = '*a*a*a*a*a*a*a*a*b' }
to = ["finance-slack"]

[[routes]]
name = "catastrophic in Python's re"
match = { name_regex = '(a+)+b' }
to = ["finance-slack"]

[default]
to = ["team-slack"]
"""


async def test_a_daemon_routing_hostile_names_answers_healthz_and_sigterm(
    world: World, tmp_path: Path
) -> None:
    hostile = "a" * 600  # whatever is kept of it, `(a+)+b` fails only after ~2^n steps in `re`
    world.sim.add_monitor(3, name=hostile, tags=["finance"])
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    env = {
        **world.env,
        "NOTIFIER_MONITOR_IDS": "3",
        "NOTIFIER_ROUTES_FILE": str(routes),
        "NOTIFIER_HEALTH_PORT": "0",
    }
    del env["NOTIFIER_WEBHOOK_URLS"]
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        port = None
        async with asyncio.timeout(15):
            while port is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
                event = json.loads(line)
                if event["event"] == "status_listening":
                    port = event["port"]
        await asyncio.sleep(1.5)  # the first cycle baselines the monitor
        world.sim.add_run(3, state="alert", started_at=world.now())
        world.sim.add_run(3, state="error", started_at=world.now(), error="boom")
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            deadline = time.monotonic() + 15
            while len(world.slack.messages) < 2 and time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status in (200, 503)
                await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200, await response.text()
        assert [m.channel for m in world.slack.messages] == ["C0123ABCD"] * 2
    finally:
        took, rest = await stop(proc)
    assert proc.returncode == 0, "".join(lines) + rest
    assert took < 5


async def stop(proc: asyncio.subprocess.Process) -> tuple[float, str]:
    """SIGTERM, then SIGKILL after 10 s (a hung daemon ignores SIGTERM): seconds taken, stderr."""
    started = time.monotonic()
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=10)
    except TimeoutError:
        proc.kill()
        _, rest = await proc.communicate()
    return time.monotonic() - started, rest.decode()
