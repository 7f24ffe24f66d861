"""The long tail through Apprise (an optional extra): Discord, Telegram, Pushover, ...

Pure: the URL's shape and the plain-http policy are checked here; whether Apprise knows the
service is for the sink to find out (it imports Apprise, this module must not).
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo

from notifier.domain.text import SECRET_MIN
from notifier.domain.values import is_loopback
from notifier.route.destinations.fields import DestinationModel, file_context, resolve_env

#: `service://…`: Apprise's schemes are short words (`tgram`, `pover`, `jsons`).
_APPRISE_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+")
#: Where a second URL would start (Apprise reads "a://x, b://y" as two services).
_SECOND_URL: Final = re.compile(r"[\s,][A-Za-z][A-Za-z0-9+.-]{0,31}://")
#: Apprise's generic schemes that post over plain http (their `…s://` twins use https).
PLAIN_HTTP_SCHEMES: Final = frozenset({"json", "form", "xml"})
#: A word this long in a URL is taken for a token even without a digit.
_TOKEN_LENGTH: Final = 16


def checked_apprise_url(url: SecretStr, info: ValidationInfo) -> SecretStr:
    """One Apprise URL, `service://…`; plain http (json://, form://, xml://) only to this
    machine unless the routes file allows it. Errors never quote the URL: it holds secrets."""
    text = url.get_secret_value().strip()
    if not _APPRISE_URL.fullmatch(text) or _SECOND_URL.search(text):
        raise ValueError(
            "must be one Apprise URL, service://… (discord://…, tgram://…, json://…), "
            "without spaces; give each service its own destination"
        )
    context = file_context(info)
    scheme = text.split("://", 1)[0].lower()
    if scheme in PLAIN_HTTP_SCHEMES and context is not None and not context.allow_http:
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        if not is_loopback(host):
            raise ValueError(
                f"{scheme}:// posts over plain http, refused to a host other than this machine "
                f"(the traffic carries secrets): use {scheme}s:// or set NOTIFIER_ALLOW_HTTP=true"
            )
    return SecretStr(text)


def url_secret_parts(url: str) -> list[str]:
    """The parts of an Apprise URL that may be a credential on their own, as the service's
    own requests and log lines may show them outside the URL (Telegram's bot token becomes
    `…/bot<token>/sendMessage`), raw and unquoted: the password, the path, a host that is no DNS
    name or address (the token of `tgram://`, `pover://`), and the user, path segments and query
    values that look like tokens (a digit, or 16 characters), so words such as `notify` or
    `markdown` are not blanked out of every log line."""
    rest = url.split("://", 1)[-1]
    netloc, _, tail = rest.partition("/")
    netloc, _, netloc_query = netloc.partition("?")
    path, _, query = ("/" + tail).partition("?") if tail else ("", "", netloc_query)
    userinfo, _, host = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    always = [password, path] + ([] if _is_host_name(host) else [host])
    maybe = [user, *path.split("/"), *(p.partition("=")[2] for p in re.split(r"[&;]", query))]
    if password:  # sent as HTTP Basic: a server may say the header back
        basic = f"{unquote(user)}:{unquote(password)}".encode()
        always.append(base64.b64encode(basic).decode())
    found: list[str] = []
    for part in always + [p for p in maybe if _token_like(p)]:
        for variant in (part, unquote(part)):
            if len(variant) >= SECRET_MIN and variant not in found:
                found.append(variant)
    return found


def _token_like(part: str) -> bool:
    return any(c.isdigit() for c in part) or len(part) >= _TOKEN_LENGTH


def _is_host_name(host: str) -> bool:
    """A DNS name with a dot, `localhost` or an IP address (with or without a port): a place,
    not a credential."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    return is_loopback(name) or "." in name or ":" in name


#: An Apprise URL, `env:NAME` in a routes file (it holds the service's credentials).
AppriseUrl = Annotated[SecretStr, BeforeValidator(resolve_env), AfterValidator(checked_apprise_url)]


class AppriseDestination(DestinationModel):
    """One Apprise URL (`discord://…`, `tgram://…`, `json://…`): it holds the service's
    credentials, so it is an `env:` secret. Fire and forget: no update, thread or digest."""

    type: Literal["apprise"] = "apprise"
    url: AppriseUrl

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact. The sink blanks the URL's credential-like parts
        (`url_secret_parts`) out of what Apprise and its HTTP client log."""
        return [self.url]
