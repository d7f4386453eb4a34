"""The demo chat in a real headless browser: Debian's chromium driven by Playwright.

Two pages join one room; one sends, the other shows the message. Skipped (with the reason)
when Playwright or /usr/bin/chromium is missing; never downloads a browser."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "main.py"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


def test_two_browser_pages_chat_in_one_room() -> None:
    env = dict(os.environ)  # every installed plugin, as a user of the demo has them
    server = subprocess.Popen(
        [sys.executable, str(DEMO), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = None
        for _ in range(50):
            line = server.stdout.readline()
            found = re.search(r"serving on (http://\S+)", line)
            if found:
                url = found.group(1).rstrip("/")
                break
        assert url is not None, "the demo did not start"
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                alice, bob = browser.new_page(), browser.new_page()
                for page, name in ((alice, "alice"), (bob, "bob")):
                    page.goto(f"{url}/static/chat.html")
                    page.fill("#room", "browsers")
                    page.fill("#name", name)
                    page.click("#join button")
                    sync_api.expect(page.locator("#status")).to_have_text("joined browsers")
                alice.fill("#text", "hello from a browser")
                alice.click("#send")
                sync_api.expect(bob.locator("#log li")).to_have_text(
                    ["alice: hello from a browser"]
                )
                sync_api.expect(alice.locator("#log li")).to_have_text(
                    ["alice: hello from a browser"]
                )
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
