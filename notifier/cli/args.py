"""The command line's value checks: each option's value is refused, in one line that names it,
before any command acts on it."""

from __future__ import annotations

import argparse
import math
import re
import stat
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from notifier.domain.models import TAG_MAX
from notifier.domain.text import clip, escape_controls
from notifier.run.settings import Settings

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MUTE_MAX = timedelta(days=90)
#: IDs fit PostgreSQL's bigint, where the mutes of the high-availability store are kept.
ID_MAX = 2**63 - 1
#: The longest tag, reason, mute ID, host or API key an option takes.
TEXT_MAX = 200
#: The longest `demo --duration`: a year.
DEMO_MAX = 365 * 86400.0
#: The longest error line: its start says what failed, its end why.
#: The largest env file read: settings take a few kilobytes.
ENV_FILE_MAX = 1024 * 1024
_MUTE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m`: a positive duration of at most 90 days."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found or not any(found.groups()):
        raise invalid(text, "is not a duration (use e.g. 90s, 30m, 2h, 1d)")
    # A number of more digits than 90 days has seconds is too long whatever its unit, and would
    # overflow timedelta (OverflowError, which argparse does not turn into a usage error).
    if any(len(g) > 8 for g in found.groups() if g):
        raise invalid(text, "is out of range: give more than 0 and at most 90d")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not timedelta(0) < duration <= MUTE_MAX:
        raise invalid(text, "is out of range: give more than 0 and at most 90d")
    return duration


def invalid(text: str, problem: str) -> argparse.ArgumentTypeError:
    """The error for a bad option value: the value (clipped, escaped) and what is wrong."""
    return argparse.ArgumentTypeError(f"{one_line_clip(repr(text), 60)} {problem}")


def monitor_id(text: str) -> int:
    """A monitor ID: a whole number from 1 to 2**63-1."""
    try:
        value = int(text) if len(text) <= 30 else None
    except ValueError:
        value = None
    if value is None or not 1 <= value <= ID_MAX:
        raise invalid(text, f"is not a monitor ID (a whole number from 1 to {ID_MAX})")
    return value


def printable(text: str, what: str, *, collapse: bool = False, limit: int = TEXT_MAX) -> str:
    """`text` stripped (its runs of spaces collapsed too with `collapse`): not empty, at most
    `limit` characters, and nothing a terminal or a log line would misread (control
    characters, undecodable bytes)."""
    cleaned = " ".join(text.split()) if collapse else text.strip()
    if not cleaned:
        raise invalid(text, f"is no {what}: give one")
    if len(cleaned) > limit:
        raise invalid(text, f"is too long for a {what}: at most {limit} characters")
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise invalid(text, f"is no {what}: it has control characters or undecodable bytes")
    return cleaned


def tag(text: str) -> str:
    """A tag as `--tag` takes it: printable, at most `TAG_MAX` characters."""
    return printable(text, "tag", limit=TAG_MAX)  # a longer tag is cut when read: never matched


def destination_name(text: str) -> str:
    """A destination's name as the routes (or `check`) give it: printable."""
    return printable(text, "destination name")


def reason(text: str) -> str:
    """A mute's reason: printable, its runs of spaces collapsed."""
    return printable(text, "reason", collapse=True)


def mute_id(text: str) -> str:
    """A mute ID as `check` shows it."""
    if not _MUTE_ID.fullmatch(text):
        raise invalid(text, "is not a mute ID (letters and digits, as `check` shows them)")
    return text


def api_key(text: str) -> str:
    """The API key `simulate` accepts: printable."""
    return printable(text, "API key")


def host(text: str) -> str:
    """A host name or address to bind: no spaces or control characters."""
    if len(text) > 253 or not text or any(char.isspace() or ord(char) < 32 for char in text):
        raise invalid(text, "is not a host name or address")
    return text


def port(text: str) -> int:
    """A port from 0 (any free one) to 65535."""
    try:
        value = int(text) if len(text) <= 10 else None
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 65535:
        raise invalid(text, "is not a port (a whole number from 0 to 65535; 0 picks a free one)")
    return value


def setting_range(name: str) -> tuple[float, float]:
    """The bounds (ge, le) `Settings` puts on a numeric setting, so an option keeps to them."""
    low, high = -math.inf, math.inf
    for bound in Settings.model_fields[name].metadata:  # annotated_types.Ge, Le
        low = float(getattr(bound, "ge", low))
        high = float(getattr(bound, "le", high))
    return low, high


def seconds_between(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """A type for a number of seconds from `low` (exclusive when `above`) to `high`."""

    def seconds(text: str) -> float:
        try:
            value = float(text) if len(text) <= 30 else math.nan
        except ValueError:
            value = math.nan
        within = (low < value if above else low <= value) and value <= high
        if not within:  # NaN fails both comparisons
            first = f"more than {low:g}" if above else f"from {low:g}"
            raise invalid(text, f"is not a number of seconds {first} to {high:g}")
        return value

    return seconds


def env_file(text: str) -> Path:
    """An env file: a regular file of at most `ENV_FILE_MAX` bytes."""
    path = Path(text)
    try:
        info = path.stat()
    except OSError as exc:
        raise invalid(text, f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(info.st_mode):
        raise invalid(text, "is a directory, not an env file")
    if not stat.S_ISREG(info.st_mode):
        raise invalid(text, "is not a regular file")
    if info.st_size > ENV_FILE_MAX:
        raise invalid(text, f"is larger than an env file can be ({ENV_FILE_MAX} bytes)")
    return path


def one_line_clip(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters (argparse echoes values, which may be huge)."""
    return clip(escape_controls(text), limit)
