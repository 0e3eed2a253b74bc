"""Headless Chromium (Debian's `chromium`) driven over its DevTools protocol with aiohttp's websocket client, which Ray
already installs: open a page, optionally with a cookie, wait for text, read the page's text and take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", "--remote-debugging-port=0"]


def render(url: str, *, cookie: tuple[str, str] | None = None, wait_for: list[str] = (), timeout: float = 60,
           screenshot: Path | None = None) -> str:
    """The text of the page at ``url`` once one of ``wait_for`` shows (or ``timeout`` passes), with a screenshot."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file, deadline = Path(profile) / "DevToolsActivePort", time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            return asyncio.run(_drive(port, url, cookie, list(wait_for), timeout, screenshot))
        finally:  # the browser and every helper process it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def _drive(port, url, cookie, wait_for, timeout, screenshot) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = itertools.count(1)

            async def call(method, **params):
                n = next(ids)
                await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                async for msg in ws:
                    data = json.loads(msg.data)
                    if data.get("id") == n:
                        if "error" in data:
                            raise RuntimeError(f"{method}: {data['error']}")
                        return data.get("result", {})
                raise RuntimeError("the DevTools connection closed")

            await call("Network.enable")
            if cookie:
                await call("Network.setCookie", name=cookie[0], value=cookie[1], url=url)
            await call("Page.enable")
            await call("Page.navigate", url=url)
            text, deadline = "", time.monotonic() + timeout
            while time.monotonic() < deadline:
                result = await call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = result.get("result", {}).get("value", "") or ""
                if any(w in text for w in wait_for):
                    break
                await asyncio.sleep(0.1)
            if screenshot:
                await asyncio.sleep(1)  # let the page finish drawing before the picture
                result = await call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = result.get("result", {}).get("value", "") or text
                shot = await call("Page.captureScreenshot", format="png")
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            return text
