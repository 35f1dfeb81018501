"""Renders every dashboard page in headless Chromium and reports what each
one drew, as JSON on stdout:

    python render.py --url http://127.0.0.1:8501 \
        --pages sales=/,payments=/payments,crypto=/crypto [--screenshots DIR]

For each page (name=path): the charts drawn (Vega-Lite charts with a canvas or SVG of
non-zero size), the exceptions shown, the notices (info/warning text), any dialog (such
as Streamlit's "Page not found"), and
the load time (navigation until the script finished and every chart was
drawn), cold (queries run) and warm (cached). It drives Chromium through the
DevTools protocol over a websocket (the `websockets` package Streamlit
already installs): no WebDriver, no Node. Exit status 2 when Chromium is
missing, with what to install.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import base64
import urllib.request

from websockets.sync.client import connect

# What a page shows, read from the DOM in one evaluation.
PROBE = r"""
(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const drawn = charts.filter(c => [...c.querySelectorAll('canvas, svg')]
      .some(g => g.getBoundingClientRect().width > 50 && g.getBoundingClientRect().height > 50));
  const text = sel => [...document.querySelectorAll(sel)].map(e => e.innerText.trim().slice(0, 400));
  const main = document.querySelector('[data-testid="stMain"]');
  return {
    state: app ? app.getAttribute('data-test-script-state') : null,
    charts: charts.length,
    drawn: drawn.length,
    tables: document.querySelectorAll('[data-testid="stDataFrame"]').length,
    metrics: document.querySelectorAll('[data-testid="stMetric"]').length,
    exceptions: text('[data-testid="stException"]'),
    notices: text('[data-testid="stAlert"]'),
    dialogs: text('[role="dialog"]'),
    title: (document.querySelector('h1') || {}).innerText || null,
    height: main ? Math.max(main.scrollHeight, document.body.scrollHeight) : document.body.scrollHeight,
  };
})()
"""


def chromium() -> str:
    for name in (os.environ.get("TRIBUTARY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.stderr.write(
        "render.py: no Chromium found: install it (Debian: apt-get install chromium) "
        "or set TRIBUTARY_CHROMIUM to its path\n"
    )
    sys.exit(2)


class Browser:
    """One headless Chromium and a websocket to its first tab."""

    def __init__(self, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="tributary-chromium-")
        self.process = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        if port is None:
            raise RuntimeError("chromium did not open its DevTools port within 30 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            tabs = [t for t in json.load(reply) if t.get("type") == "page"]
        self.socket = connect(tabs[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10).__enter__()
        self.ids = itertools.count(1)
        self.width = width
        self.height = height
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params):
        id_ = next(self.ids)
        self.socket.send(json.dumps({"id": id_, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == id_:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def probe(self) -> dict:
        result = self.call("Runtime.evaluate", expression=PROBE, returnByValue=True)
        return result.get("result", {}).get("value") or {}

    def close(self):
        try:
            self.socket.close()
        finally:
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def visit(browser: Browser, url: str, timeout: float) -> dict:
    """Opens `url` and waits until the script ran and its charts are drawn
    (and stay drawn for half a second)."""
    start = time.monotonic()
    browser.call("Page.navigate", url=url)
    seen, stable_since = None, None
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        state = browser.probe()
        settled = state.get("state") == "notRunning" and state.get("drawn") == state.get("charts")
        key = (state.get("charts"), state.get("drawn"), state.get("metrics"), len(state.get("exceptions") or []))
        if settled and key == seen:
            if now - stable_since >= 0.5:
                state["load_ms"] = round((stable_since - start) * 1000)
                return state
        else:
            seen, stable_since = (key if settled else None), now
        if now - start > timeout:
            state["load_ms"] = None
            state["timed_out"] = True
            return state


def screenshot(browser: Browser, state: dict, path: str):
    height = min(max(int(state.get("height") or browser.height), browser.height), 4000)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=browser.width, height=height, deviceScaleFactor=1, mobile=False,
    )
    time.sleep(1.0)  # let the charts re-lay out to the taller window
    shot = browser.call("Page.captureScreenshot", format="png")
    with open(path, "wb") as out:
        out.write(base64.b64decode(shot["data"]))
    browser.call("Emulation.clearDeviceMetricsOverride")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pages", required=True, help="comma-separated name=path")
    parser.add_argument("--screenshots", help="directory for dashboard-<page>.png")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    browser = Browser(1400, 1000)
    report = {}
    try:
        pages = dict(p.split("=", 1) for p in args.pages.split(",") if p)
        base = args.url.rstrip("/")
        for page, path in pages.items():
            report[page] = visit(browser, base + path, args.timeout)
        for page, path in pages.items():
            warm = visit(browser, base + path, args.timeout)
            report[page]["warm_load_ms"] = warm.get("load_ms")
            if args.screenshots:
                os.makedirs(args.screenshots, exist_ok=True)
                path = os.path.join(args.screenshots, f"dashboard-{page}.png")
                screenshot(browser, warm, path)
                report[page]["screenshot"] = path
    finally:
        browser.close()
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
