"""Open a batch report in headless Chromium: write a screenshot, or print the DOM after its scripts ran.

    python scripts/screenshot_report.py outputs/demo/state.jsonl [--png report.png] [--dom]

It (re)writes the report with ``batchgen report`` first, then drives Debian's ``chromium``
(``apt-get install chromium``). tests/test_report.py imports ``find_chromium``, ``dump_dom`` and
``screenshot`` from here, so what a human looks at is what the test checks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--virtual-time-budget=5000"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _chromium(page: Path, *extra: str, fragment: str = "", timeout: float = 90) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="batchgen-chromium-") as profile:
        return subprocess.run([binary, *_FLAGS, f"--user-data-dir={profile}", *extra,
                               page.resolve().as_uri() + (f"#{fragment}" if fragment else "")],
                              capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: Path, fragment: str = "") -> str:
    """The page's DOM once its load handlers ran (virtual time lets image loads finish first)."""
    done = _chromium(page, "--dump-dom", fragment=fragment)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium could not render {page} (exit {done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 900) -> Path:
    done = _chromium(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if done.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {page} (exit {done.returncode}): {done.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path, help="a batch's state.jsonl")
    parser.add_argument("--png", type=Path, help="where to write the screenshot (default: report.png beside it)")
    parser.add_argument("--height", type=int, default=900, help="window height in pixels (default 900)")
    parser.add_argument("--dom", action="store_true", help="print the DOM after the page's scripts ran")
    args = parser.parse_args(argv)
    from batchgen.report import write_report
    page = write_report(args.state).path
    if args.dom:
        print(dump_dom(page))
        return 0
    png = screenshot(page, args.png or page.with_name("report.png"), height=args.height)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
