"""A minimal DevTools-protocol client for browser tests: Debian's headless Chromium, no driver.

Starts ``/usr/bin/chromium`` with a throw-away profile, loads a page and reports console errors,
uncaught exceptions, network requests, script results and a full-page screenshot. Only the
``websockets`` package is needed (playwright would bring a 100+ MB driver for the same five calls).
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = os.environ.get("RISKWATCH_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--remote-debugging-port=0"]
START_TIMEOUT_S = 60


class Chromium:
    """``with Chromium() as browser: page = browser.open(url)``."""

    def __init__(self, executable: str = CHROMIUM, width: int = 1200, height: int = 900):
        self.executable = executable
        self.size = (width, height)
        self._ids = itertools.count(1)

    def __enter__(self) -> "Chromium":
        if not shutil.which(self.executable):
            raise RuntimeError(f"{self.executable} not found: install Debian's chromium package (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="riskwatch-chromium-")
        self._log = open(Path(self._profile) / "chromium.log", "wb")
        self._process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start; see its log in {self._profile}")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=START_TIMEOUT_S))
        return self

    def __exit__(self, *exc) -> None:
        try:
            if getattr(self, "_ws", None) is not None:
                try:
                    self.send("Browser.close")
                except Exception:  # the browser may close the socket before answering
                    pass
                self._stack.close()
        finally:
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             events: list | None = None) -> dict:
        """Send one command and return its result; events arriving meanwhile go to ``events``."""
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=START_TIMEOUT_S))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if events is not None and "method" in reply:
                events.append(reply)

    def open(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False})
        page.call("Page.navigate", {"url": url})
        page.wait_for("Page.loadEventFired")
        return page


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session, self.events)

    def wait_for(self, method: str) -> dict:
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            reply = json.loads(self.browser._ws.recv(timeout=START_TIMEOUT_S))
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (e.g. failed loads)."""
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return errors

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def pdf(self, path: str | Path) -> Path:
        data = self.call("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
