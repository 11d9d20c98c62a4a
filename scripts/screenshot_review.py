"""Open ``batchgen review`` of a batch in headless Chromium and write a screenshot of the page.

    python scripts/screenshot_review.py outputs/demo/state.jsonl [--png review.png] [--keys KEYS]

It starts the review server on 127.0.0.1 (a free port, a fresh token) in this process, drives
Debian's ``chromium`` and ``chromium-driver`` through selenium (``pip install -e '.[dev]'``),
optionally types keys into the page first (``--keys $'1j2jrslower camera\\n'`` picks take 1 of
the first row, take 2 of the second, and marks the third for redo with a note), and stops the
server. tests/test_review_browser.py imports ``start_chromium``, ``wait_ready`` and ``type_keys``
from here, so what a human looks at is what the test drives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-first-run",
          "--mute-audio", "--hide-scrollbars"]


def find_chromedriver() -> str | None:
    found = shutil.which("chromedriver")
    return found or ("/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else None)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def missing() -> str:
    """Why a browser cannot be driven here ('' when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "chromium is not installed (apt-get install chromium)"
    if find_chromedriver() is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return ""


def start_chromium(profile: str, width: int = 1280, height: int = 900):
    """A headless Chromium under selenium, with a fresh profile folder and no network chatter."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    for flag in (*_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=find_chromedriver()), options=options)


def wait_ready(driver, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body && document.body.dataset.ready === '1'"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path, help="a batch's state.jsonl")
    parser.add_argument("--png", type=Path, help="where to write the screenshot (default: review.png beside it)")
    parser.add_argument("--keys", default="", help="keys to type into the page before the picture (a newline is Enter)")
    parser.add_argument("--height", type=int, default=1400, help="window height in pixels (default 1400)")
    args = parser.parse_args(argv)
    reason = missing()
    if reason:
        print(f"cannot take a screenshot: {reason}", file=sys.stderr)
        return 2
    from batchgen.review import ReviewThread
    png = (args.png or args.state.with_name("review.png")).resolve()
    with ReviewThread(args.state) as review, tempfile.TemporaryDirectory(prefix="batchgen-chromium-") as profile:
        driver = start_chromium(profile, height=args.height)
        try:
            driver.get(review.url)
            wait_ready(driver)
            type_keys(driver, args.keys)
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(png))
        finally:
            driver.quit()
    print(f"wrote {png}")
    return 0


def type_keys(driver, keys: str) -> None:
    """Type ``keys`` as a reviewer would; a newline is Enter (it saves a redo note). Waits for each save."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for key in keys:
        typing = driver.execute_script("return document.activeElement.tagName === 'INPUT'")
        before = int(driver.execute_script("return Number(document.body.dataset.saved)"))
        ActionChains(driver).send_keys(Keys.ENTER if key == "\n" else key).perform()
        if (key == "\n") if typing else (key in "123456789xur"):
            WebDriverWait(driver, 10).until(
                lambda d: int(d.execute_script("return Number(document.body.dataset.saved)")) > before)


if __name__ == "__main__":
    sys.exit(main())
