"""Text from outside made safe to show on one line, and times as payloads write them. Pure.

Every adapter and renderer that echoes a name, an error detail or a stamp uses these, so "one
line" and "cut with …" mean the same everywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Final
from urllib.parse import quote

from notifier.domain.models import as_utc

#: What marks a cut: one character, so a cut text is exactly `limit` characters long.
ELLIPSIS: Final = "…"


def clip(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit - 1` and "…"."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def one_line(text: str, limit: int | None = None) -> str:
    """`text` with each run of whitespace (newlines, tabs) as one space, trimmed; cut with "…"
    past `limit` characters when a limit is given."""
    flat = " ".join(text.split())
    return flat if limit is None else clip(flat, limit)


def escape_controls(text: str) -> str:
    """Control characters and lone surrogates written as escapes (`\\n`, `\\x1b`), everything
    else kept: a file name holding a newline or a terminal escape still prints as one line."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char) in ("Cc", "Cs") else char for char in text
    )


def iso_z(value: datetime) -> str:
    """An ISO 8601 UTC stamp ending in `Z`, as payloads and queries write times."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


#: Shorter secrets are not searched for in text (they would garble ordinary words).
SECRET_MIN: Final = 6


def secret_forms(secret: str) -> set[str]:
    """The forms in which `secret` may show in text someone else wrote: itself, its
    percent-encoded form, and for a URL its path and query as a request line shows them without
    the host (each of at least `SECRET_MIN` characters)."""
    forms = {secret, quote(secret, safe="")}
    if "://" in secret:
        rest = secret.split("://", 1)[1]
        if "/" in rest:
            forms.add(rest[rest.find("/") :])
    return {form for form in forms if len(form) >= SECRET_MIN}


def without_secrets(text: str, secrets: Iterable[str | None], mark: str = "[REDACTED]") -> str:
    """`text` with every form of every secret (`secret_forms`) replaced by `mark`, longest
    first."""
    forms = sorted({f for s in secrets if s for f in secret_forms(s)}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, mark)
    return text
