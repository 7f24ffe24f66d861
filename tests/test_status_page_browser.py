"""The status page in a real browser: `datafold-notifier run` with every secret configured, a
hostile monitor name, a failing webhook and a mute; headless Chromium, driven over the DevTools
protocol, lays the page out as a phone (390x844) and as a desktop, reads its DOM and geometry, and
takes the phone screenshot, saved to build/test-artifacts/status-page.png and named in the test
run's summary (tests/conftest.py prints what a test records as "terminal_summary")."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.postgres import unavailable
from tests.fakes.subprocess_daemon import Daemon

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
PHONE = (390, 844)
DESKTOP = (1280, 800)
ARTIFACT = Path(__file__).resolve().parent.parent / "build" / "test-artifacts" / "status-page.png"

#: The page's geometry as the browser laid it out: the document's widths, what in the monitors
#: and incidents scrolls sideways inside itself, and where given cells and their text are.
LAYOUT = """((wanted) => {
  const boxes = (cell) => {
    const text = document.createRange();
    text.selectNodeContents(cell);
    return [cell.getBoundingClientRect(), text.getBoundingClientRect()].map(
      (r) => ({left: r.left, right: r.right, width: r.width}));
  };
  const cell = ([section, first, heading]) => {
    const table = document.querySelector(`#${section} table`);
    const column = [...table.tHead.rows[0].cells].findIndex((th) => th.textContent === heading);
    const row = [...table.tBodies[0].rows].find((tr) => tr.cells[0].textContent.trim() === first);
    const found = row.cells[column];
    return {text: found.textContent, boxes: boxes(found)};
  };
  const inside = [...document.querySelectorAll("#monitors *, #incidents *")]
    .filter((e) => !e.closest("thead"));  // hidden on a phone, kept for screen readers
  const scrolls = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const width = document.documentElement.clientWidth;
  return {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    ready: document.readyState,
    url: location.href,
    scrolling: inside.filter((e) => scrolls(e) && e.scrollWidth > e.clientWidth)
      .map((e) => `${e.tagName}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`),
    outside: inside.map((e) => [e, e.getBoundingClientRect()])
      .filter(([e, r]) => r.width > 0 && (r.left < 0 || r.right > width))
      .map(([e, r]) => `${e.tagName}.${e.className}: ${r.left}..${r.right}`),
    thead: getComputedStyle(document.querySelector("#monitors thead")).position,
    table: getComputedStyle(document.querySelector("#monitors table")).display,
    cells: wanted.map(cell),
  };
})"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("chromium not found: run tools/ensure-chromium.sh (make ensure-chromium)")


class DevToolsPage:
    """One tab of a headless Chromium over the DevTools protocol: commands answered in order,
    the events seen meanwhile kept for `event`."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.session: str | None = None
        self.events: list[dict[str, Any]] = []
        self.sent = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.sent += 1
        message: dict[str, Any] = {"id": self.sent, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        await self.socket.send_json(message)
        while True:
            answer = await self._receive()
            if answer.get("id") == self.sent:
                assert "error" not in answer, (method, answer["error"])
                result: dict[str, Any] = answer["result"]
                return result
            self.events.append(answer)

    async def event(self, method: str) -> dict[str, Any]:
        """The first `method` event since the last navigation, awaited if not seen yet."""
        while True:
            for seen in self.events:
                if seen.get("method") == method:
                    return seen
            self.events.append(await self._receive())

    async def show(self, url: str, size: tuple[int, int], *, mobile: bool) -> None:
        """Load `url` in a viewport of `size` CSS pixels, as a phone lays it out if `mobile`."""
        width, height = size
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        self.events.clear()
        await self.send("Page.navigate", url=url)
        await self.event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"]["value"]

    async def _receive(self) -> dict[str, Any]:
        message = await self.socket.receive(timeout=30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        decoded: dict[str, Any] = json.loads(message.data)
        return decoded


@asynccontextmanager
async def devtools_page(profile: Path) -> AsyncIterator[DevToolsPage]:
    """Headless Chromium with a throwaway profile and one tab to drive. No sandbox: tests run as
    root in containers, and it only loads this test's own page on 127.0.0.1."""
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        prefix = b"DevTools listening on "
        line = b""
        while not line.startswith(prefix):
            line = await asyncio.wait_for(proc.stderr.readline(), timeout=30)
            assert line, "chromium exited before it listened for DevTools"
        drain = asyncio.create_task(proc.stderr.read())  # chromium must never block on a full pipe
        url = line.removeprefix(prefix).strip().decode()
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            page = DevToolsPage(ws)
            target = await page.send("Target.createTarget", url="about:blank")
            attached = await page.send(
                "Target.attachToTarget", targetId=target["targetId"], flatten=True
            )
            page.session = attached["sessionId"]
            await page.send("Page.enable")
            yield page
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            with suppress(Exception):
                await drain


def save_artifact(data: bytes, path: Path) -> None:
    """Written whole or not at all: test runs side by side may write the same path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


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


async def test_status_page_in_headless_chromium(
    world: World, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    chromium()  # skip (or, in CI, fail) before starting anything
    world.sim.add_monitor(3, name=HOSTILE, monitor_type="diff")
    env = {
        **world.env,
        "NOTIFIER_MONITOR_IDS": "1,2,3",
        "NOTIFIER_HEALTH_PORT": "0",
        # The page refreshes itself every interval: 30 s, so it never reloads mid-inspection.
        "NOTIFIER_POLL_INTERVAL_SECONDS": "30",
        "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "3600",  # the alert below is news at once
    }
    muted = await cli(
        "mute", "--monitor", "2", "--for", "1h", "--reason", "<b>deploy</b> & co", env=env
    )
    assert muted.code == 0, muted.err
    world.receiver.reply(*[500] * 1000)  # the webhook keeps failing: its notification waits
    world.sim.add_run(3, state="alert", started_at=world.now())
    daemon = await Daemon.start(env)
    try:
        await daemon.wait_event("cycle_finished")
        listening = daemon.event("status_listening")
        assert listening is not None
        base = f"http://127.0.0.1:{listening['port']}"
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
        wanted = [
            ["monitors", "Monitor 2", "Muted until"],
            ["monitors", HOSTILE + " #3", "Incident"],
            ["incidents", HOSTILE + " #3", "Since"],
        ]
        async with devtools_page(tmp_path / "profile") as tab:
            await tab.show(f"{base}/", PHONE, mobile=True)
            phone = await tab.evaluate(f"{LAYOUT}({json.dumps(wanted)})")
            shot = await tab.send("Page.captureScreenshot", format="png")
            screenshot = base64.b64decode(shot["data"])
            save_artifact(screenshot, ARTIFACT)
            record_property(
                "terminal_summary",
                f"status page screenshot: {ARTIFACT} ({len(screenshot)} bytes, "
                f"{PHONE[0]}x{PHONE[1]})",
            )
            dom = await tab.evaluate("document.documentElement.outerHTML")
            await tab.show(f"{base}/", DESKTOP, mobile=False)
            desktop = await tab.evaluate(f"{LAYOUT}({json.dumps(wanted)})")
    finally:
        await daemon.stop()

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

    # On a phone nothing scrolls sideways, and a monitor's mute and incident are on screen.
    assert phone["url"] == f"{base}/" and phone["ready"] == "complete", phone
    assert phone["clientWidth"] == PHONE[0], phone
    assert phone["scrollWidth"] <= PHONE[0], f"the page is {phone['scrollWidth']} px wide"
    assert phone["scrolling"] == [] and phone["outside"] == [], phone
    muted, incident, since = phone["cells"]
    assert muted["text"] != "—" and incident["text"].startswith("alert since"), phone["cells"]
    assert since["text"] != "—", phone["cells"]
    for cell in phone["cells"]:
        for box in cell["boxes"]:  # the cell, then its text
            assert box["width"] > 0 and 0 <= box["left"] and box["right"] <= PHONE[0], cell
    # A desktop keeps the tables: a heading row above the rows.
    assert desktop["table"] == "table" and desktop["thead"] == "static", desktop
    assert desktop["scrollWidth"] <= DESKTOP[0] and desktop["outside"] == [], desktop

    width, height, rows = png_pixels(screenshot)
    assert (width, height) == PHONE
    colours = {row[x : x + 3] for row in rows[::4] for x in range(0, len(row), 12)}
    assert len(colours) > 20, "the screenshot is (nearly) blank"
    background = rows[2][:3]
    inked = sum(row[x : x + 3] != background for row in rows for x in range(0, len(row), 12))
    assert inked > 0.02 * width * height / 4, "the screenshot is (nearly) blank"
