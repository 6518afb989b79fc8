"""Render the app icons (public/icons/*.png) from public/icons/icon.svg with Chromium.

The PNGs are committed; run this (``make icons``) after changing the SVG. It uses
Debian's Chromium through Playwright, the same browser the tests drive, so no
image library becomes a dependency of pichat. One SVG gives every icon:

- ``icon-192.png``, ``icon-512.png``: purpose ``any`` (Android's launcher and
  install prompt), the square with rounded corners on a transparent ground;
- ``maskable-512.png``: purpose ``maskable``, the full square (the launcher cuts
  its own shape; the bubble stays inside the 80 % safe zone);
- ``apple-touch-icon.png``: 180 x 180, opaque and square (iOS rounds it itself).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parent.parent / "public" / "icons"
CHROMIUM = os.environ.get("PICHAT_CHROMIUM", "/usr/bin/chromium")
#: file name -> (size in px, corner radius as a share of the size)
OUTPUTS: dict[str, tuple[int, float]] = {
    "icon-192.png": (192, 0.22),
    "icon-512.png": (512, 0.22),
    "maskable-512.png": (512, 0.0),
    "apple-touch-icon.png": (180, 0.0),
}


def main() -> None:
    """Write every PNG of :data:`OUTPUTS`."""
    svg = base64.b64encode((ICONS / "icon.svg").read_bytes()).decode()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        for name, (size, radius) in OUTPUTS.items():
            page = browser.new_page(viewport={"width": size, "height": size})
            page.set_content(
                "<style>html,body{margin:0;background:transparent}"
                f"img{{display:block;width:{size}px;height:{size}px;"
                f"border-radius:{radius * size:.1f}px}}</style>"
                f'<img src="data:image/svg+xml;base64,{svg}">'
            )
            page.screenshot(path=str(ICONS / name), omit_background=True)
            page.close()
            print(f"wrote {ICONS / name}")
        browser.close()


if __name__ == "__main__":
    main()
