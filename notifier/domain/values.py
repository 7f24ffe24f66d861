"""Small value checks shared by settings, the routes file and the adapters: URLs, lists, `whsec_`
secrets and `Retry-After`.

Pure: the standard library only, time passed in. A check raises `ValueError` (or returns a
problem) in one line that never quotes the value, since the value may be a secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

#: The longest wait a Retry-After is read as (about 30 years): anything longer is as good as never.
RETRY_AFTER_MAX = 1e9
#: The shortest `whsec_` key settings and the routes file accept, in bytes.
WHSEC_MIN_BYTES = 16
WHSEC_PREFIX = "whsec_"
_WHSEC_TOO_SHORT = f"is too short: use at least {WHSEC_MIN_BYTES} random bytes, base64"
#: Why plain http:// to another host is refused, wherever a URL is configured.
PLAIN_HTTP_REFUSED = (
    "plain http:// to a host other than this machine is refused (the traffic carries secrets)"
)


def split_list(value: Any) -> Any:
    """Comma- (or whitespace-) separated text to a list; blanks dropped."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


def http_url(value: str) -> str:
    """An http(s) URL with a host, a valid port and no credentials (it is not echoed back)."""
    value = value.strip()
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError("must be an http:// or https:// URL with a host (and a valid port)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    return value


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine (localhost, *.localhost or a loopback address)."""
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_remote_plain_http(url: str) -> bool:
    """Whether `url` is plain http:// to another machine, refused unless NOTIFIER_ALLOW_HTTP."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname)


def whsec_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks `whsec_` secret (base64 after the prefix).

    Raises `ValueError` with a one-line reason that never shows the secret; any non-empty key is
    accepted (settings and the routes file ask for `WHSEC_MIN_BYTES` through `whsec_problem`).
    """
    if not secret.startswith(WHSEC_PREFIX):
        raise ValueError("must be a Standard Webhooks secret starting with whsec_")
    encoded = secret.removeprefix(WHSEC_PREFIX).strip()
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64 after whsec_") from None
    if not key:
        raise ValueError(_WHSEC_TOO_SHORT)
    return key


def whsec_problem(secret: str) -> str | None:
    """Why `secret` is no usable Standard Webhooks secret (for settings and the routes file), or
    None: it must decode (`whsec_key`) to at least `WHSEC_MIN_BYTES` bytes."""
    try:
        key = whsec_key(secret)
    except ValueError as exc:
        return str(exc)
    if len(key) < WHSEC_MIN_BYTES:
        return _WHSEC_TOO_SHORT
    return None


def nth_secret(index: int, count: int) -> str:
    """How a message names secret `index` (from 1) of `count`, without showing it."""
    return f"secret number {index}" if count > 1 else "the secret"


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` value (delta-seconds or an HTTP-date) asks for at the aware
    instant `now`, between 0 and `RETRY_AFTER_MAX`; None if absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now.astimezone(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX)
