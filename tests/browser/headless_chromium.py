"""Serve a folder on 127.0.0.1 and look at its pages in headless Chromium (Debian's chromium and chromedriver, selenium).

Used by the browser tests and to take the README screenshot::

    .venv/bin/python tests/browser/headless_chromium.py demo_output/reports model_id=support-bot-v3/dt=2026-11-07/index.html shot.png

The browser runs with a fresh profile under a temporary directory, no network services
(background networking, component updates, sync and QUIC off) and the console log
captured (``goog:loggingPrefs``), so a test can assert that a page logged no error.
"""

from __future__ import annotations

import base64
import functools
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """A static HTTP server for ``root`` on a free port of 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Browser:
    """A headless Chromium driven by selenium."""

    driver: Any

    def open(self, url: str) -> list[dict[str, Any]]:
        """Load ``url`` and return the console entries it logged (level, message)."""
        self.driver.get_log("browser")  # drop whatever an earlier page left
        self.driver.get(url)
        return self.driver.get_log("browser")

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def script(self, source: str) -> Any:
        return self.driver.execute_script(source)

    def viewport(self, width: int, height: int) -> None:
        """Lay pages out in a window of exactly ``width`` x ``height`` CSS pixels (scale 1, not mobile), via the DevTools protocol."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, path: Path) -> Path:
        """A full-page PNG (the whole document height, not just the window), via the DevTools protocol."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                                       "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                                                                                "scale": 1}})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium with a fresh profile; quit and the profile removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="modelwatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def errors(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console entries at level SEVERE (errors, failed loads, CSP violations)."""
    return [e for e in entries if e.get("level") == "SEVERE"]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: headless_chromium.py ROOT_DIR PAGE_PATH OUT.png", file=sys.stderr)
        return 2
    root, page, out = Path(argv[0]), argv[1], Path(argv[2])
    with serve(root) as base, chromium() as browser:
        logged = browser.open(f"{base}/{page}")
        browser.screenshot(out)
    for entry in errors(logged):
        print(f"console error: {entry['message']}", file=sys.stderr)
    print(out)
    return 1 if errors(logged) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
