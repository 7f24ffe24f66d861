"""Reading a PostgreSQL URL as libpq does, and what of it no message may show."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from notifier.domain.text import one_line
from notifier.store.postgres.errors import PostgresStateError

#: Said wherever a URL cannot be used as written: how to write a password that holds / or @.
_ENCODE_HINT = (
    "if the user name or password holds special characters, percent-encode them "
    "(/ as %2F, @ as %40, : as %3A, % as %25, # as %23)"
)


def first_line(exc: BaseException) -> str:
    """psycopg messages span lines (DETAIL, HINT, server lists): keep them on one line."""
    return one_line(str(exc)) or type(exc).__name__


def url_secrets(url: str) -> set[str]:
    """What of a PostgreSQL URL no message or log may show: its password as libpq reads it and
    as written (raw, percent-decoded, percent-encoded), whatever characters it holds.

    As written is the text between the first ':' of the user information and the last '@': what
    a person meant, where libpq stops at the first '/' or '@' of an unencoded password.
    """
    found: set[str] = set()
    try:
        password = conninfo_to_dict(url).get("password")
    except (psycopg.Error, ValueError):
        password = None
    if password:
        found.add(str(password))
    _, scheme, rest = url.partition("://")
    if scheme and "@" in rest:
        user_info = rest.rpartition("@")[0]
        _, colon, written = user_info.partition(":")
        if colon and written:
            found |= {written, unquote(written), quote(written, safe="")}
    return {secret for secret in found if secret}


def target(url: str) -> tuple[str, str, str]:
    """Host, port and database of `url` as libpq reads them, refusing a URL it would misread.

    An unencoded '/' or '@' in the password makes libpq read part of the password as the host,
    port or database, which messages name: such a URL is refused, naming nothing of it. libpq's
    own parse errors quote the offending text; only what precedes the quote is kept.
    """
    try:
        params = conninfo_to_dict(url)
    except (psycopg.Error, ValueError) as exc:
        kind = first_line(exc).split('"', 1)[0].strip().rstrip(":").strip()
        raise PostgresStateError(
            f"invalid PostgreSQL URL: {kind or 'cannot be parsed'}; {_ENCODE_HINT}"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    if "@" in host + port + dbname or not re.fullmatch(r"[0-9]+(,[0-9]*)*", port):
        raise PostgresStateError(
            "invalid PostgreSQL URL: its host, port or database cannot be read as written; "
            f"{_ENCODE_HINT}"
        )
    return host, port, dbname
