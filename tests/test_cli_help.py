"""Help that teaches: every command's --help has a description, its exit codes and an example;
--env-file works before or after the command; a configuration error says which .env was read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notifier.cli.help_texts import HELP, subcommands
from notifier.cli.main import build_parser
from tests.fakes.cli import cli

COMMANDS = sorted(subcommands(build_parser()))
ENV = {"PATH": os.environ.get("PATH", ""), "NOTIFIER_LOG_FORMAT": "json"}


def test_every_command_is_found_and_every_help_entry_is_a_command() -> None:
    assert {"run", "once", "check", "simulate", "outbox drop", "state import"} <= set(COMMANDS)
    assert set(HELP) == set(COMMANDS)  # no help for a command that is gone


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_a_description_exit_codes_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args([*command.split(), "--help"])
    assert ended.value.code == 0
    shown = capsys.readouterr().out
    usage, description = shown.split("\n\n")[:2]
    assert f"datafold-notifier {command}" in " ".join(usage.split())
    assert len(description.split()) >= 5, shown  # a sentence, not the usage or an option
    codes = shown.split("\nexit codes:\n", 1)[1].split("\n\n")[0]
    assert "0 " in codes and "2 " in codes, shown
    example = shown.split("\nexample:\n", 1)[1]
    assert example.strip().startswith(f"datafold-notifier {command}"), shown
    assert "--env-file" in shown  # the global option, after the command too


def _bad_ids_env(tmp_path: Path) -> Path:
    env_file = tmp_path / "custom.env"
    env_file.write_text("DATAFOLD_API_KEY=k\nNOTIFIER_MONITOR_IDS=not-a-number\n")
    return env_file


@pytest.mark.parametrize(
    "argv",
    [
        ("--env-file", "{file}", "check"),
        ("check", "--env-file", "{file}"),
        ("--env-file", "{file}", "mute", "--monitor", "1", "--for", "1h"),
        ("mute", "--monitor", "1", "--for", "1h", "--env-file", "{file}"),
        ("--env-file", "{file}", "outbox", "list"),
        ("outbox", "list", "--env-file", "{file}"),
    ],
    ids=["before-check", "after-check", "before-mute", "after-mute", "before-nested", "after"],
)
async def test_env_file_before_or_after_the_command(tmp_path: Path, argv: tuple[str, ...]) -> None:
    env_file = _bad_ids_env(tmp_path)
    args = [a.replace("{file}", str(env_file)) for a in argv]
    result = await cli(*args, env=ENV, cwd=tmp_path)
    # The file was read (its bad value is the error), and the error names it.
    assert result.code == 2, result.stderr
    assert "NOTIFIER_MONITOR_IDS" in result.stderr and "not-a-number" in result.stderr
    assert f"(read from the environment and {env_file})" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_missing_key_says_no_env_file_was_found(tmp_path: Path) -> None:
    result = await cli("check", env=ENV, cwd=tmp_path)
    assert result.code == 2
    assert "DATAFOLD_API_KEY" in result.stderr
    assert f"(read from the environment; no .env file found in {tmp_path})" in result.stderr


async def test_missing_key_names_the_env_file_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NOTIFIER_MONITOR_IDS=1\n")
    result = await cli("once", env=ENV, cwd=tmp_path)
    assert result.code == 2
    assert "DATAFOLD_API_KEY" in result.stderr
    assert f"(read from the environment and {tmp_path / '.env'})" in result.stderr


@pytest.mark.parametrize(
    ("lines", "culprit"),
    [
        (
            "DATAFOLD_API_KEY=k\nSLACK_WEBHOOK_URL=https://hooks.slack.com/services/T/B/x\n",
            "NOTIFIER_MONITOR_IDS: is empty",
        ),
        ("DATAFOLD_API_KEY=k\nNOTIFIER_MONITOR_IDS=1\n", "no destination: "),
        (
            "DATAFOLD_API_KEY_FILE=/nonexistent/key\nNOTIFIER_MONITOR_IDS=1\n",
            "DATAFOLD_API_KEY_FILE: cannot read /nonexistent/key",
        ),
    ],
    ids=["nothing-to-watch", "nowhere-to-send", "unreadable-secret-file"],
)
async def test_what_the_env_file_lacks_names_the_file(
    tmp_path: Path, lines: str, culprit: str
) -> None:
    """Nothing to watch, nowhere to send, a NAME_FILE that cannot be read: one line that says
    which .env it came from."""
    env_file = tmp_path / "notifier.env"
    env_file.write_text(lines)
    result = await cli("once", "--env-file", str(env_file), env=ENV, cwd=tmp_path)
    assert result.code == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert culprit in line
    assert line.endswith(f"(read from the environment and {env_file})")


def test_version_after_the_command_says_where_it_goes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["run", "--version"])
    assert ended.value.code == 2
    error = capsys.readouterr().err
    assert "--version goes before the command" in error
    assert len(error.strip().splitlines()) == 1
