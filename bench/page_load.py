"""Time from page load to 1000 messages of history drawn, in Debian's Chromium.

``.venv/bin/python -m bench.page_load [--messages 1000] [--runs 5]``

A real pichat gets ``--messages`` messages of history (replayed in full on join),
then a fresh browser context loads the page, which rejoins on its own (the name is
in storage, as after a reload) and draws the history. The figure is the time from
the navigation's start to the first animation frame in which every message is in
the log, read from the page's own ``performance.now()``; "welcome" is when the
history frame arrived and "drawing" the time from there to drawn. Runs with the CPU
at full speed and throttled 4x (Chromium's CPU throttling, roughly a low-end phone).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.browser.chat import ChatClient
from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS
from tests.daemon import Daemon

# Installed before the page's own scripts: it stores a name so the page rejoins at
# once, and watches frames until the log holds every message.
PROBE = """
localStorage.setItem("pichat.name", "bench");
sessionStorage.setItem("pichat.joined", "1");
window.__drawn = null;
window.__welcome = null;
// Notes when the first frame (the welcome with the history) arrives, before the
// page's own handler runs: the rest of the time is the page building the log.
const NativeWebSocket = WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", () => {
      if (window.__welcome === null) window.__welcome = performance.now();
    });
  }
};
const want = %d;
const watch = () => {
  if (document.querySelectorAll("#log .msg").length >= want) {
    window.__drawn = performance.now();
  } else {
    requestAnimationFrame(watch);
  }
};
requestAnimationFrame(watch);
"""


def fill(url: str, count: int) -> None:
    """Store ``count`` messages of realistic length."""
    with ChatClient(url, "filler") as client:
        for number in range(count):
            client.say(f"message {number}: the quick brown fox jumps over the lazy dog, again.")


def measure(browser: Browser, url: str, count: int, throttle: float) -> tuple[float, float, float]:
    """One cold load: ms to history drawn, to DOMContentLoaded, to the welcome frame."""
    context = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        context.add_init_script(PROBE % count)
        page = context.new_page()
        if throttle > 1:
            cdp = context.new_cdp_session(page)
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_function("() => window.__drawn !== null", timeout=120_000)
        drawn = float(page.evaluate("window.__drawn"))
        loaded = float(
            page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        )
        welcome = float(page.evaluate("window.__welcome"))
        return drawn, loaded, welcome
    finally:
        context.close()


def main() -> int:
    """Run the measurement and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = {
        "history_replay": args.messages,
        "history_max_messages": max(args.messages, 1000),
        "rate_messages": 1_000_000,
        "log_level": "warning",
    }
    with tempfile.TemporaryDirectory() as directory, sync_playwright() as driver:
        with Daemon(Path(directory), config=config) as daemon:
            fill(daemon.ws_url, args.messages)
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                measure(browser, daemon.http_url, args.messages, 1)  # warm-up
                print(f"page load to {args.messages} messages of history drawn (ms)")
                print(
                    f"{'cpu':>6} {'median':>8} {'min':>8} {'max':>8}"
                    f" {'DOMContentLoaded':>17} {'welcome':>8} {'drawing':>8}"
                )
                for throttle in (1.0, 4.0):
                    runs = [
                        measure(browser, daemon.http_url, args.messages, throttle)
                        for _ in range(args.runs)
                    ]
                    drawn = [run[0] for run in runs]
                    loaded = statistics.median(run[1] for run in runs)
                    welcome = statistics.median(run[2] for run in runs)
                    drawing = statistics.median(run[0] - run[2] for run in runs)
                    print(
                        f"{throttle:>5.0f}x {statistics.median(drawn):>8.0f} "
                        f"{min(drawn):>8.0f} {max(drawn):>8.0f} {loaded:>17.0f}"
                        f" {welcome:>8.0f} {drawing:>8.0f}"
                    )
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
