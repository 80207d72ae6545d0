"""The web client end to end: Debian's Chromium, driven by Playwright, talking to the real server.

Chromium's fake capture device plays a real speech clip as the microphone. Skipped only where
Chromium or Playwright is missing; `.ci/run` installs both, so CI always runs these.
"""

from __future__ import annotations

import json
import re
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtasr.server import Server
from rtasr.wer import wer

from .helpers import TRANSCRIPTS, clip_at, silence

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium is not installed (apt-get install chromium)")


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


class Page:
    """A page of the web client with everything it said on its socket and console recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # the text frames the page sent
        self.problems: list[str] = []
        page.on("websocket", self._on_socket)
        page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _on_socket(self, ws: Any) -> None:
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload))
              if isinstance(payload, str) else None)
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload))
              if isinstance(payload, str) else None)

    def types(self) -> list[str]:
        return [m["type"] for m in self.received]

    async def final_text(self) -> str:
        texts = await self.page.locator("#finals li").evaluate_all(
            "items => items.map(li => li.childNodes[1].textContent)")
        return " ".join(texts)

    async def stop_and_check(self) -> None:
        await self.page.click("#stop")
        await self.page.wait_for_function(
            "() => document.getElementById('state').dataset.state === 'idle'", timeout=30_000)
        assert {"type": "end"} in self.sent
        assert self.types()[-1] == "end"
        assert await self.page.locator("#message").is_hidden()
        assert self.problems == []


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = np.concatenate([silence(0.8, 16000), clip_at("agent-alreadyon", 16000),
                            silence(3.0, 16000)])
    return write_wav(tmp_path_factory.mktemp("web") / "mic.wav", audio)


@pytest.fixture
async def browser(mic_wav: Path) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
                  "--autoplay-policy=no-user-gesture-required"])
        yield browser
        await browser.close()


async def open_client(browser: Any, server: Server, **options: Any) -> Page:
    context = await browser.new_context(**options)
    await context.grant_permissions(["microphone"])
    page = Page(await context.new_page())
    await page.page.goto(f"http://127.0.0.1:{server.port}/")
    await page.page.wait_for_function(
        "() => document.getElementById('server-info').textContent.includes('tiny.en')")
    return page


async def test_microphone_to_final_text(browser: Any, server: Server) -> None:
    client = await open_client(browser, server)
    page = client.page
    await page.focus("#start")  # keyboard-usable: Enter on the focused button starts it
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#finals li", timeout=30_000)
    text = await client.final_text()
    assert wer(TRANSCRIPTS["agent-alreadyon"], text) <= 0.2, text
    types = client.types()
    assert types[0] == "ready" and "partial" in types
    assert types.index("partial") < types.index("final")  # tentative text came first
    assert await page.locator("#finals .lat").count() == 1  # the final's latency is shown
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-client.png"), full_page=True)
    await client.stop_and_check()


async def test_file_picker_streams_a_file(browser: Any, server: Server,
                                          tmp_path: Path) -> None:
    client = await open_client(browser, server, viewport={"width": 390, "height": 844})
    page = client.page
    audio = np.concatenate([silence(0.5, 8000), clip_at("tt-weasels", 8000),
                            silence(1.0, 8000)])
    await page.set_input_files("#file", str(write_wav(tmp_path / "weasels.wav", audio, 8000)))
    # the file plays through in real time, then the page sends `end` by itself
    await page.wait_for_function(
        "() => document.getElementById('state').dataset.state === 'idle' && "
        "document.querySelectorAll('#finals li').length > 0", timeout=30_000)
    text = await client.final_text()
    assert wer(TRANSCRIPTS["tt-weasels"], text) <= 0.2, text
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-client-phone.png"), full_page=True)
    assert {"type": "end"} in client.sent and client.types()[-1] == "end"
    async with page.expect_download() as download:
        await page.click("#download-srt")
    srt = Path(await (await download.value).path()).read_text()
    first = srt.split("\n")
    assert first[0] == "1" and re.fullmatch(r"00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}", first[1])
    assert wer(TRANSCRIPTS["tt-weasels"], first[2]) <= 0.2
    assert client.problems == []


async def test_unreachable_server_is_reported(browser: Any, server: Server) -> None:
    client = await open_client(browser, server)
    page = client.page
    # point the page's sockets at a port where nothing listens
    await page.evaluate("() => { window.WebSocket = class extends WebSocket {"
                        " constructor(url) { super(url.replace(/:\\d+\\//, ':1/')); } }; }")
    await page.click("#start")
    message = page.locator("#message")
    await message.wait_for(state="visible", timeout=10_000)
    assert "Cannot reach the server" in await message.inner_text()
    assert await page.locator("#start").is_enabled()  # the user can try again
