"""How a command ends: its exit code, and its error as one line on stderr."""

from __future__ import annotations

import os
import signal
import sys

from notifier.domain.text import escape_controls
from notifier.run.logs import REDACTOR

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: What a shell reports for a process killed by SIGPIPE: `datafold-notifier check | head -1`.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
#: The longest error line: its start says what failed, its end why.
FAIL_MAX = 500


def fail(message: str) -> int:
    """Print `message` as the command's one error line (secrets redacted, controls escaped,
    the middle of an overlong line cut); the exit code for an unusable configuration."""
    line = escape_controls(REDACTOR.redact(message))
    if len(line) > FAIL_MAX:  # a path of thousands of characters: keep both ends
        half = FAIL_MAX // 2
        line = f"{line[:half]}…{line[-half:]}"
    print(f"datafold-notifier: error: {line}", file=sys.stderr)
    return EXIT_CONFIG


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
