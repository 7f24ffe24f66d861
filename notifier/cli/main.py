"""The `datafold-notifier` command: its parser, and which module runs each command.

Exit codes: 0 success; 1 the work failed (no monitor could be polled, a check failed); 2 the
configuration, an argument or the state file cannot be used (invalid, locked by another daemon,
unwritable); 141 the output went to a closed pipe (`| head`).

One module per command group: `service` (run, once), `mute` (mute, unmute), `outbox` (list,
retry, drop), `state` (export, import), `demo` (demo, simulate); `check` is `run/preflight.py`.
`args` checks option values, `config` reads what a command needs first, `exits` ends a command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import structlog

from notifier import __version__
from notifier.cli import args as arg
from notifier.cli.config import known_secrets, proxy_configured, read_routes, require_work
from notifier.cli.demo import demo, simulate
from notifier.cli.dry_run import dry_run
from notifier.cli.exits import EXIT_BROKEN_PIPE, EXIT_CONFIG, EXIT_FAILED, fail, silence_stdout
from notifier.cli.help_texts import ENV_FILE_HELP, teach
from notifier.cli.mute import mute, unmute
from notifier.cli.outbox import add_outbox_parser, outbox
from notifier.cli.routes_check import check_routes_file
from notifier.cli.send_test import send_test_command
from notifier.cli.service import once, run
from notifier.cli.state import state
from notifier.route.routes_file import RoutesError
from notifier.run.config import ConfigError, SettingError, env_source, load_settings
from notifier.run.daemon import StatusError
from notifier.run.logs import configure_logging
from notifier.run.preflight import run_checks
from notifier.run.routes import env_references
from notifier.store.store import StateError

log = structlog.get_logger("notifier.cli")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line; the usage is one `--help` away."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:") and "--version" in message.split():
            message += " (--version goes before the command: datafold-notifier --version)"
        self.exit(
            EXIT_CONFIG,
            f"{self.prog}: error: {arg.one_line_clip(message)} (see {self.prog} --help)\n",
        )


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; each value is checked here, before any command acts on it."""
    parser = _Parser(
        prog="datafold-notifier",
        description=(
            "Polls Datafold monitor runs and sends each new alert and error run to Slack, "
            "signed webhooks, PagerDuty, Microsoft Teams, email, Alertmanager or Apprise, exactly "
            "once. Configured by environment variables (and a .env file): see "
            "settings.example.env."
        ),
        epilog="Exit codes: 0 success, 1 the work failed, 2 configuration or state file unusable; "
        "each command's --help lists its own, with an example.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        type=arg.env_file,
        default=None,
        help=ENV_FILE_HELP,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run", help="the daemon: poll every interval until SIGTERM/SIGINT, then drain and exit 0"
    )
    once = commands.add_parser(
        "once",
        help="one poll cycle with delivery, then exit (1 if no monitor could be polled)",
    )
    once.add_argument(
        "--dry-run",
        action="store_true",
        help="decide as usual, but print what each destination would get instead of sending "
        "it, and save nothing",
    )
    once.add_argument(
        "--json", action="store_true", help="with --dry-run: print the rendered payloads as JSON"
    )
    send_test = commands.add_parser(
        "send-test",
        help="send a marked test alert, then its recovery, to the destinations and print each "
        "result; changes no state (1 if any failed)",
    )
    chosen = send_test.add_mutually_exclusive_group()
    chosen.add_argument(
        "--destination",
        action="append",
        type=arg.destination_name,
        metavar="NAME",
        help="only this destination (repeat for more); default: every destination",
    )
    chosen.add_argument("--all", action="store_true", help="every destination (the default)")
    send_test.add_argument(
        "--monitor",
        type=arg.monitor_id,
        metavar="ID",
        help="dress the test as this monitor (its details read from Datafold); default: a "
        "made-up monitor, and Datafold is not asked",
    )
    check = commands.add_parser(
        "check",
        help="check the configuration, API key, monitors, routes, destinations and state; "
        "one line each",
    )
    check.add_argument(
        "--routes",
        type=Path,
        metavar="FILE",
        help="only validate this routes file, needing no API key or other setting (for CI); "
        "env: variables not set are named, not refused; exit 0 valid, 1 invalid",
    )
    demo = commands.add_parser(
        "demo",
        help="run the daemon against the built-in Datafold simulator, printing notifications",
    )
    demo.add_argument(
        "--interval",
        type=arg.seconds_between(*arg.setting_range("poll_interval_seconds")),
        default=5.0,
        help="poll interval in seconds (default 5, from 1 to 86400)",
    )
    demo.add_argument(
        "--duration",
        type=arg.seconds_between(0.0, arg.DEMO_MAX, above=True),
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    mute = commands.add_parser(
        "mute",
        help="silence a monitor, or every monitor with a tag, for a while; kept in the state, "
        "a running daemon applies it from its next cycle",
    )
    target = mute.add_mutually_exclusive_group(required=True)
    target.add_argument("--monitor", type=arg.monitor_id, metavar="ID", help="the monitor's ID")
    target.add_argument("--tag", type=arg.tag, help="every monitor with this tag (case ignored)")
    mute.add_argument(
        "--for",
        dest="duration",
        type=arg.parse_duration,
        required=True,
        metavar="DURATION",
        help="how long: 90s, 30m, 2h, 1d, 1h30m (at most 90d)",
    )
    mute.add_argument(
        "--reason",
        type=arg.reason,
        help="shown by `check` and in the log of each muted event "
        f"(at most {arg.TEXT_MAX} characters)",
    )
    unmute = commands.add_parser("unmute", help="lift the mutes of a monitor, a tag, or one mute")
    which = unmute.add_mutually_exclusive_group(required=True)
    which.add_argument("--monitor", type=arg.monitor_id, metavar="ID")
    which.add_argument("--tag", type=arg.tag)
    which.add_argument(
        "--id", dest="mute_id", type=arg.mute_id, metavar="MUTE_ID", help="as `check` shows it"
    )
    add_outbox_parser(commands)
    state = commands.add_parser(
        "state",
        help="move the state between the file and PostgreSQL (NOTIFIER_STATE_URL) without "
        "re-notifying anything",
    )
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    export = state_commands.add_parser(
        "export", help="write the configured store's state (file or PostgreSQL) to a JSON file"
    )
    export.add_argument("file", type=Path, help="where to write it ('-' for stdout)")
    import_ = state_commands.add_parser(
        "import",
        help="replace the configured store's state (file or PostgreSQL) with a JSON state file",
    )
    import_.add_argument("file", type=Path, help="a state file, e.g. datafold-notifier.state.json")
    import_.add_argument(
        "--force",
        action="store_true",
        help="import although a replica holds the PostgreSQL lease (it may overwrite the import)",
    )
    simulate = commands.add_parser(
        "simulate",
        help="serve the built-in Datafold simulator alone, printing the .env lines that point "
        "a notifier at it",
    )
    simulate.add_argument(
        "--host", type=arg.host, default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    simulate.add_argument("--port", type=arg.port, default=8300, help="port (default 8300)")
    simulate.add_argument(
        "--api-key",
        type=arg.api_key,
        default="demo-key",
        help="the API key it accepts (default demo-key)",
    )
    teach(parser, arg.env_file)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `datafold-notifier` command; its exit code.

    Output into a closed pipe (`check | head -1`) ends quietly with 141, as a process killed by
    SIGPIPE would, instead of a traceback (Python ignores SIGPIPE; see its "Note on SIGPIPE").
    """
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # where the pipe's closing shows when the output was buffered
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "once" and args.json and not args.dry_run:
        parser.error("--json goes with --dry-run")
    try:
        if args.command == "simulate":
            return asyncio.run(simulate(args.host, args.port, args.api_key))
        if args.command == "demo":
            return asyncio.run(demo(args.env_file, args.interval, args.duration))
        if args.command == "check" and args.routes is not None:
            return check_routes_file(args.routes, args.env_file)
        if args.command == "send-test":
            return send_test_command(args)
        settings = load_settings(args.env_file)
        if args.command in ("mute", "unmute", "state", "outbox"):
            configure_logging(
                level=settings.log_level,
                fmt=settings.log_format,
                secrets=known_secrets(settings, args.env_file),
            )
            if args.command == "state":
                return asyncio.run(state(settings, args))
            if args.command == "outbox":
                return asyncio.run(outbox(settings, args))
            return asyncio.run(
                mute(settings, args) if args.command == "mute" else unmute(settings, args)
            )
        require_work(settings, args.command)
        routes = read_routes(settings, args.env_file)
        configure_logging(
            level=settings.log_level,
            fmt=settings.log_format,
            secrets=[*settings.secrets(), *routes.secrets()],
        )
        if settings.routes_file is not None and (
            unused := settings.destination_variables_set(env_references(settings.routes_file))
        ):
            log.warning(
                "environment_destinations_ignored",
                variables=unused,
                reason="NOTIFIER_ROUTES_FILE names the destinations and reads none of these "
                "through env:, so they do nothing",
            )
        if args.command == "check":
            return asyncio.run(
                run_checks(settings, routes, sys.stdout, trust_env=proxy_configured())
            )
        if args.command == "once" and args.dry_run:
            return asyncio.run(dry_run(settings, routes, as_json=args.json))
        if args.command == "once":
            return asyncio.run(once(settings, routes))
        return asyncio.run(run(settings, routes, args.env_file))
    except ConfigError as exc:
        where = f" {env_source(args.env_file)}" if isinstance(exc, SettingError) else ""
        return fail(f"configuration: {exc}{where}")
    except RoutesError as exc:
        return fail(f"routes: {exc}")
    except (StateError, StatusError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # stdout's reader went away: `main` ends quietly
    except Exception:
        # A bug: report it as one structured event, not loose traceback lines.
        log.exception("crashed", command=args.command)
        return EXIT_FAILED
