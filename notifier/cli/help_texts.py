"""What each command's `--help` teaches: a description, its exit codes and an example.

Kept beside the parser (`main.build_parser`), which gives every command (and `outbox`'s and
`state`'s actions) its entry here; the exit codes are those of docs/commands.md.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Help text is wrapped to this width.
WIDTH = 88
#: Every command ends with one of these too.
COMMON_EXITS = "141 the output went to a closed pipe (`| head`)"
ENV_FILE_HELP = (
    "read settings from this file instead of ./.env (environment variables still win); "
    "may be given before or after the command"
)


@dataclass(frozen=True)
class CommandHelp:
    description: str
    exits: str
    example: str


HELP: dict[str, CommandHelp] = {
    "run": CommandHelp(
        "The daemon: a poll cycle every NOTIFIER_POLL_INTERVAL_SECONDS until SIGTERM/SIGINT, then "
        "in-flight work finishes within NOTIFIER_SHUTDOWN_GRACE_SECONDS, the state is saved and "
        "it exits 0. A second signal exits at once. SIGHUP reloads the configuration.",
        "0 stopped by a signal; 2 bad configuration or state file",
        "datafold-notifier run --env-file /etc/datafold-notifier/env",
    ),
    "once": CommandHelp(
        "Exactly one poll cycle, delivery included (for cron, CI, debugging). With --dry-run it "
        "decides as usual but sends and saves nothing, printing what each destination would get.",
        "0 the cycle ran (failing monitors are logged); 1 no monitor could be polled (e.g. the "
        "key was refused); 2 bad configuration; --dry-run exits as once does",
        "datafold-notifier once --dry-run --json",
    ),
    "check": CommandHelp(
        "Validate the configuration, then check the API key and each monitor, where each "
        "monitor's events go (and its mutes), each destination without sending, and the state; "
        "one line each. With --routes FILE: only validate that routes file (for CI).",
        "0 all passed; 1 any failed; 2 bad configuration. With --routes: 0 valid, 1 invalid, "
        "2 unreadable",
        "datafold-notifier check --routes routes.yml",
    ),
    "send-test": CommandHelp(
        "Send a test alert marked [TEST], then its recovery, through each destination's real "
        "sink; one line per destination and step. Changes no state.",
        "0 every send succeeded; 1 any failed; 2 an unknown destination or bad configuration",
        "datafold-notifier send-test --destination slack",
    ),
    "demo": CommandHelp(
        "Run the daemon against the built-in Datafold simulator, printing each notification to "
        "the console (and to any destination you configured). Stops on Ctrl-C or SIGHUP.",
        "0 stopped; 2 bad configuration",
        "datafold-notifier demo --interval 2 --duration 60",
    ),
    "simulate": CommandHelp(
        "Serve the built-in Datafold simulator alone, to point a real notifier at. On start it "
        "prints the exact .env lines to use (DATAFOLD_HOST, DATAFOLD_API_KEY, "
        "NOTIFIER_MONITOR_IDS, and NOTIFIER_WEBHOOK_URLS for its own webhook inbox, which "
        "prints what it receives), its monitors with their tags, and when each alerts or "
        "errors. Paste the lines into a .env file and run `once` or `run` in that directory.",
        "0 stopped by SIGTERM/SIGINT; 2 cannot listen on the address, or a bad argument",
        "datafold-notifier simulate --port 8300   # then, in another terminal and directory:\n"
        "  # paste the printed lines into .env, then: datafold-notifier once",
    ),
    "mute": CommandHelp(
        "Silence a monitor, or every monitor with a tag, for a while. Kept in the state: a "
        "running daemon applies it from its next cycle.",
        "0 muted; 2 a bad argument (nothing is changed), bad configuration or state",
        "datafold-notifier mute --tag staging --for 2h --reason 'load test'",
    ),
    "unmute": CommandHelp(
        "Lift the mutes of a monitor or a tag, or one mute by its ID (as `check` shows it).",
        "0 lifted; 1 no active mute matched; 2 a bad argument, bad configuration or state",
        "datafold-notifier unmute --monitor 101",
    ),
    "outbox": CommandHelp(
        "See the notifications waiting for a destination, and retry or drop them; a running "
        "daemon applies a retry or drop at its next cycle.",
        "0 done; 1 the ID is not waiting (drop); 2 a bad argument or configuration",
        "datafold-notifier outbox list",
    ),
    "outbox list": CommandHelp(
        "What waits for which destination and why, as last saved, and the retries and drops "
        "not yet applied.",
        "0 listed; 2 bad configuration or state",
        "datafold-notifier outbox list --json",
    ),
    "outbox retry": CommandHelp(
        "Ask the next cycle to try what waits at once, lifting any Retry-After wait of the "
        "destination (one, or all). Prints what will be tried.",
        "0 requested; 2 a destination not configured, bad configuration or state",
        "datafold-notifier outbox retry --destination pagerduty",
    ),
    "outbox drop": CommandHelp(
        "Remove a waiting notification (for one destination, or all) at the next cycle, so it "
        "is never delivered there.",
        "0 requested; 1 the ID is not waiting (delivered meanwhile); 2 a bad argument, "
        "configuration or state",
        "datafold-notifier outbox drop 101-5-alert --destination slack",
    ),
    "state": CommandHelp(
        "Copy the whole state between a JSON file and the configured store (the state file, or "
        "PostgreSQL with NOTIFIER_STATE_URL) without re-notifying anything.",
        "0 copied; 2 the store is in use or unreadable, or FILE is no state of this version "
        "(nothing is replaced)",
        "datafold-notifier state export backup.json",
    ),
    "state export": CommandHelp(
        "Write the configured store's state (file or PostgreSQL) to a JSON file ('-': stdout).",
        "0 written; 2 the store is unreadable or bad configuration",
        "datafold-notifier state export - > backup.json",
    ),
    "state import": CommandHelp(
        "Replace the configured store's state with a JSON state file, read and validated whole "
        "first.",
        "0 imported; 2 the store is in use or unreadable, or FILE is no state of this version "
        "(nothing is replaced)",
        "datafold-notifier state import datafold-notifier.state.json",
    ),
}


def subcommands(
    parser: argparse.ArgumentParser, path: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser under `parser`, by its path ("run", "outbox list"), nested ones
    included."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                key = f"{path} {name}".strip()
                found[key] = sub
                found |= subcommands(sub, key)
    return found


def teach(parser: argparse.ArgumentParser, env_file_type: Callable[[str], Path]) -> None:
    """Give every command under `parser` its description, exit codes and example, and the
    global `--env-file`, so that it may follow the command too.

    The command's `--env-file` has no default (SUPPRESS): one given before the command is kept.
    """
    for path, sub in subcommands(parser).items():
        text = HELP[path]  # a KeyError here: a new command without its help
        sub.description = textwrap.fill(text.description, WIDTH)
        exits = textwrap.fill(
            f"{text.exits}; {COMMON_EXITS}", WIDTH, initial_indent="  ", subsequent_indent="  "
        )
        sub.epilog = f"exit codes:\n{exits}\n\nexample:\n  {text.example}"
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.add_argument(
            "--env-file",
            type=env_file_type,
            default=argparse.SUPPRESS,
            metavar="ENV_FILE",
            help=ENV_FILE_HELP,
        )
