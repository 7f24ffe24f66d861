"""The status page in a real browser: `datafold-notifier run` with every secret configured, a
hostile monitor name, a failing webhook and a mute; headless Chromium reads the page's DOM and
takes a phone-sized screenshot (its path is printed; see it with `pytest -s`)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.postgres import unavailable
from tests.fakes.subprocess_daemon import Daemon

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
PHONE = (390, 844)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("chromium not found: run tools/ensure-chromium.sh (make ensure-chromium)")


async def run_chromium(profile: Path, *args: str) -> bytes:
    """Headless Chromium with a throwaway profile; its stdout. No sandbox: tests run as root in
    containers, and it only loads this test's own page on 127.0.0.1."""
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG, checked whole."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
        if kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    step = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(idat), width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (
                    line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


async def status(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/status") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def test_status_page_in_headless_chromium(world: World, tmp_path: Path) -> None:
    chromium()  # skip (or, in CI, fail) before starting anything
    world.sim.add_monitor(3, name=HOSTILE, monitor_type="diff")
    env = {
        **world.env,
        "NOTIFIER_MONITOR_IDS": "1,2,3",
        "NOTIFIER_HEALTH_PORT": "0",
        "NOTIFIER_POLL_INTERVAL_SECONDS": "1",
    }
    muted = await cli(
        "mute", "--monitor", "2", "--for", "1h", "--reason", "<b>deploy</b> & co", env=env
    )
    assert muted.code == 0, muted.err
    world.receiver.reply(*[500] * 1000)  # the webhook keeps failing: its notification waits
    daemon = await Daemon.start(env)
    try:
        await daemon.wait_event("cycle_finished")
        listening = daemon.event("status_listening")
        assert listening is not None
        base = f"http://127.0.0.1:{listening['port']}"
        world.sim.add_run(3, state="alert", started_at=world.now())
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            document = await status(http, base)
            while not [d for d in document["destinations"] if d["waiting"] and d["last_error"]]:
                assert time.monotonic() < deadline, document
                await asyncio.sleep(0.1)
                document = await status(http, base)
            async with http.get(f"{base}/") as response:
                page = await response.text()
            async with http.get(f"{base}/api/status") as response:
                api = await response.text()
        dom = (await run_chromium(tmp_path / "profile", "--dump-dom", f"{base}/")).decode()
        screenshot = tmp_path / "status-page.png"
        await run_chromium(
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            f"--window-size={PHONE[0]},{PHONE[1]}",
            f"{base}/",
        )
    finally:
        await daemon.stop()
    print(f"status page screenshot: {screenshot}")

    monitors = {m["id"]: m for m in document["monitors"]}
    assert monitors[3]["name"] == HOSTILE and monitors[3]["incident_state"] == "alert"
    assert monitors[2]["muted_by"] == "monitor 2" and monitors[2]["muted_until"]
    assert document["role"] == "single" and document["cycles"]
    [hook] = [d for d in document["destinations"] if d["name"].startswith("webhook-")]
    assert hook["waiting"] == 1 and hook["last_error"] == "HTTP 500" and hook["oldest_since"]

    for secret in [*SECRETS, env["DATAFOLD_API_KEY"], env["NOTIFIER_WEBHOOK_URLS"]]:
        for shown, what in ((page, "/"), (api, "/api/status"), (dom, "the DOM")):
            assert secret not in shown, f"{what} shows a secret"

    # The browser built the rows, and the hostile name is text, not markup.
    assert "<title>datafold-notifier: running</title>" in dom
    for cell in ("Monitor 1</td>", "Monitor 2</td>", "&lt;script&gt;document.title="):
        assert cell in dom, cell
    assert "<script" not in dom and "<img" not in dom
    assert "&lt;b&gt;deploy&lt;/b&gt; &amp; co" in dom  # the mute's reason
    assert 'http-equiv="refresh"' in dom

    width, height, rows = png_pixels(screenshot.read_bytes())
    assert (width, height) == PHONE
    colours = {row[x : x + 3] for row in rows[::4] for x in range(0, len(row), 12)}
    assert len(colours) > 20, "the screenshot is (nearly) blank"
    background = rows[2][:3]
    inked = sum(row[x : x + 3] != background for row in rows for x in range(0, len(row), 12))
    assert inked > 0.02 * width * height / 4, "the screenshot is (nearly) blank"
