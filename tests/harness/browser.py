"""A real headless Chromium for the console's tests: Debian's `chromium` driven through its
`chromedriver` by Selenium (no tool downloads a browser of its own), with a private profile, and
the flags that keep it off the network this machine does not have."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.harness.binaries import require

LAPTOP = (1366, 900)
PHONE = (390, 844)
ARTIFACTS = Path(
    os.environ.get("VIGIL_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
"""Where screenshots go (a test artifact; not in git)."""


@contextlib.contextmanager
def chromium(size: tuple[int, int] = LAPTOP) -> Iterator[webdriver.Chrome]:
    """A headless Chromium at `size`, quit (with its profile removed) on exit."""
    binary = require("chromium")
    driver_path = require("chromedriver")
    with tempfile.TemporaryDirectory(prefix="vigil-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (
            "--headless=new",
            "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
        ):
            options.add_argument(flag)
        service = Service(executable_path=driver_path, log_output=os.devnull)
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_window_size(*size)
            driver.set_page_load_timeout(30)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the whole page (not only the viewport) as ARTIFACTS/console/<name>.png."""
    folder = ARTIFACTS / "console"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    width = driver.execute_script("return document.documentElement.scrollWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    original = driver.get_window_size()
    driver.set_window_size(original["width"], max(int(height), original["height"]))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(original["width"], original["height"])
    assert int(width) <= original["width"] + 1, f"{name}: the page scrolls sideways ({width} px)"
    return path
