"""The shared value checks (`notifier.domain.values`), table by table."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from notifier.domain.values import (
    RETRY_AFTER_MAX,
    WHSEC_MIN_BYTES,
    http_url,
    is_loopback,
    is_remote_plain_http,
    retry_after_seconds,
    split_list,
    whsec_key,
    whsec_problem,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY16 = bytes(range(16))
SECRET16 = "whsec_" + base64.b64encode(KEY16).decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,2, 3", ["1", "2", "3"]),
        ("a b\tc", ["a", "b", "c"]),
        (" , ,", []),
        ("", []),
        (["kept", "as is"], ["kept", "as is"]),
        (None, None),
    ],
)
def test_split_list(value: Any, expected: Any) -> None:
    assert split_list(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", "https://example.com"),
        ("  http://127.0.0.1:8080/hook  ", "http://127.0.0.1:8080/hook"),
        ("https://[::1]:443/x", "https://[::1]:443/x"),
    ],
)
def test_http_url_accepts(value: str, expected: str) -> None:
    assert http_url(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ftp://example.com", "http:// or https:// URL"),
        ("https://", "http:// or https:// URL"),
        ("example.com", "http:// or https:// URL"),
        ("https://example.com:0", "valid port"),
        ("https://example.com:99999", "valid port"),
        ("https://user:hunter2@example.com", "credentials"),
        ("https://user@example.com", "credentials"),
    ],
)
def test_http_url_refuses_without_echoing(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        http_url(value)
    assert "hunter2" not in str(caught.value)
    assert "example.com" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/hook", True),
        ("http://127.0.0.1:9000/hook", False),
        ("http://localhost/hook", False),
        ("https://example.com/hook", False),
    ],
)
def test_is_remote_plain_http(url: str, expected: bool) -> None:
    assert is_remote_plain_http(url) is expected


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        (SECRET16, KEY16),
        (SECRET16.rstrip("="), KEY16),  # padding is optional
        ("whsec_" + base64.b64encode(b"k").decode(), b"k"),  # short keys still sign
        ("whsec_ " + base64.b64encode(KEY16).decode() + " ", KEY16),
    ],
)
def test_whsec_key_decodes(secret: str, key: bytes) -> None:
    assert whsec_key(secret) == key


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "starting with whsec_"),
        ("whsec_not*base64!", "not valid base64"),
        ("whsec_", "too short"),
    ],
)
def test_whsec_key_refuses_in_one_line_without_the_secret(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        whsec_key(secret)
    message = str(caught.value)
    assert "\n" not in message
    assert "c2VjcmV0" not in message and "base64!" not in message


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (SECRET16, None),
        ("whsec_" + base64.b64encode(bytes(WHSEC_MIN_BYTES - 1)).decode(), "is too short"),
        ("whsec_", "is too short"),
        ("whsec_%%%", "is not valid base64 after whsec_"),
        ("plain-text-secret", "must be a Standard Webhooks secret starting with whsec_"),
    ],
)
def test_whsec_problem(secret: str, problem: str | None) -> None:
    found = whsec_problem(secret)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (None, NOW, None),
        ("", NOW, None),
        ("soon", NOW, None),
        ("nan", NOW, None),
        ("inf", NOW, None),
        ("5", NOW, 5.0),
        (" 2.5 ", NOW, 2.5),
        ("-3", NOW, 0.0),
        ("1e20", NOW, RETRY_AFTER_MAX),
        ("Wed, 01 May 2024 12:00:30 GMT", NOW, 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", NOW, 0.0),
        # `now` in another zone is the same instant.
        ("Wed, 01 May 2024 12:00:30 GMT", NOW.astimezone(timezone(timedelta(hours=2))), 30.0),
    ],
)
def test_retry_after_seconds(value: str | None, now: datetime, expected: float | None) -> None:
    assert retry_after_seconds(value, now) == expected
