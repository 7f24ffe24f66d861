"""Transport security: TLS verified by default, a custom CA bundle, plain http refused."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from notifier.demo.simulator import Simulator
from notifier.run.config import ConfigError, load_settings
from tests.fakes.cli import API_KEY, World, cli


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_datafold(ca: trustme.CA) -> AsyncIterator[str]:
    """The simulator behind TLS with a certificate from a CA the system does not know."""
    sim = Simulator(API_KEY)
    sim.add_monitor(1, name="orders")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}"
    finally:
        await runner.cleanup()


async def test_unknown_ca_is_refused_and_a_ca_bundle_fixes_it(
    world: World, https_datafold: str, ca: trustme.CA, tmp_path: Path
) -> None:
    env = {**world.env, "DATAFOLD_HOST": https_datafold, "NOTIFIER_MONITOR_IDS": "1"}
    refused = await cli("once", env=env)
    assert refused.code == 1
    [failed] = [e for e in refused.events() if e["event"] == "poll_failed"]
    assert failed["kind"] == "unavailable"

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trusted = await cli("once", env={**env, "NOTIFIER_CA_BUNDLE": str(bundle)})
    assert trusted.code == 0, trusted.stderr
    assert any(e["event"] == "monitor_baselined" for e in trusted.events())


@pytest.fixture
def base_env(bare_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFOLD_API_KEY", "dfk-test-key-123456")


@pytest.mark.usefixtures("base_env")
@pytest.mark.parametrize(
    ("name", "url", "allowed"),
    [
        ("DATAFOLD_HOST", "http://datafold.internal", False),
        ("DATAFOLD_HOST", "http://127.0.0.1:8300", True),
        ("DATAFOLD_HOST", "http://localhost:8300", True),
        ("DATAFOLD_HOST", "http://[::1]:8300", True),
        ("SLACK_API_URL", "http://slack.internal/api/", False),
        ("SLACK_WEBHOOK_URL", "http://hooks.example/services/secret-path", False),
        ("NOTIFIER_WEBHOOK_URLS", "https://ok.example/a,http://10.1.2.3/secret-path", False),
        ("NOTIFIER_WEBHOOK_URLS", "https://ok.example/a,http://127.0.0.2:9/x", True),
    ],
)
def test_plain_http_is_refused_unless_loopback_or_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str, allowed: bool
) -> None:
    monkeypatch.setenv(name, url)
    if allowed:
        load_settings()
        return
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert name in message and "NOTIFIER_ALLOW_HTTP" in message
    assert "secret-path" not in message
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP", "true")
    load_settings()


@pytest.mark.usefixtures("base_env")
def test_ca_bundle_must_be_pem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    for value in (str(tmp_path / "missing.pem"), str(tmp_path / "junk.pem")):
        monkeypatch.setenv("NOTIFIER_CA_BUNDLE", value)
        with pytest.raises(ConfigError, match="NOTIFIER_CA_BUNDLE"):
            load_settings()
