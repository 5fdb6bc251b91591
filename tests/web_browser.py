"""Helpers for the web page's browser tests: Debian's headless Chromium driven by Selenium (the driver is
given by path, so Selenium never downloads one), and an in-process server over a job store that already
holds a finished job (for the page's own logic: editing, search, keys, accessibility; no model runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from service_support import API_KEY, NoWorkers

from isoscribe.benchmarks.server import free_port
from isoscribe.config import load_settings
from isoscribe.service.app import create_app
from isoscribe.service.job_store import JobOptions, JobStore

CHROMEDRIVER = Path("/usr/bin/chromedriver")
DESKTOP = (1280, 900)
PHONE = (390, 844)
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[webdriver.Chrome, Path]]:
    """Chromium saving its downloads into a fresh folder: (driver, that folder)."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(downloads)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def chromium(downloads: Path | None = None, extra_arguments: tuple[str, ...] = ()) -> webdriver.Chrome:
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        raise AssertionError("chromium and chromium-driver are not installed (bash scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
        *extra_arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    if downloads is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    viewport(driver, *DESKTOP)
    return driver


def script_errors(driver: webdriver.Chrome) -> list[str]:
    """Uncaught errors and rejected promises the page's scripts logged (not failed requests: a 409 is news)."""
    return [
        entry["message"] for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") == "javascript"
    ]


def viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def colour_scheme(driver: webdriver.Chrome, scheme: str) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})


def enter_api_key(driver: webdriver.Chrome) -> None:
    key_input = WebDriverWait(driver, 30).until(lambda d: visible(d, "key-input"))
    assert driver.switch_to.active_element == key_input, "the key field should have the focus"
    key_input.send_keys(API_KEY + Keys.ENTER)
    WebDriverWait(driver, 30).until(lambda d: visible(d, "upload-form"))


def visible(driver: webdriver.Chrome, element_id: str):
    found = driver.find_elements(By.ID, element_id)
    return found[0] if found and found[0].is_displayed() else False


def in_viewport(driver: webdriver.Chrome, element_id: str) -> bool:
    """True when the element's top part (its first 40 px) is inside the window without scrolling."""
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.top + Math.min(40, r.height) <= innerHeight && r.left >= 0"
        " && r.right <= innerWidth + 1",
        element_id,
    )


def screenshot_dir() -> Path:
    """WEB_SCREENSHOTS names where the pictures go (docs/screenshots when refreshing them); a temp dir
    otherwise. (Not ISOSCRIBE_*: conftest clears those for every test.)"""
    chosen = os.environ.get("WEB_SCREENSHOTS")
    path = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "isoscribe-web-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    time.sleep(0.3)  # one layout pass at the new size or colour scheme
    path = screenshot_dir() / name
    assert driver.save_screenshot(str(path))
    return path


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (the vendored copy; no network)."""
    if not driver.execute_script("return Boolean(window.axe)"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    results = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));"
    )
    assert isinstance(results, list), results
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:160] for n in v["nodes"][:5]]}
        for v in results
        if v["impact"] in ("serious", "critical")
    ]


class PageServer:
    """The real app with no model workers, on a loopback port in this process; ``add_finished_job`` puts a
    finished job in its store. ``service``: [service] settings."""

    def __init__(self, data_dir: Path, **service: Any) -> None:
        self.data_dir = data_dir
        service = {"data_dir": data_dir, "api_key": API_KEY, "keep_job_audio": True, **service}
        settings = load_settings(overrides={"service": service})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, NoWorkers()), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def add_finished_job(self, audio: Path, transcript: dict[str, Any], options: JobOptions) -> str:
        kept = self.data_dir / "job-audio" / audio.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, kept)
        store = JobStore(self.data_dir / "jobs.sqlite3")
        try:
            job = store.create(kept, options)
            store.claim_next()
            store.succeed(job.id, transcript, None, {})
            return job.id
        finally:
            store.close()

    @contextmanager
    def running(self) -> Iterator[PageServer]:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the page server did not start"
            time.sleep(0.05)
        try:
            yield self
        finally:
            self.server.should_exit = True
            self.thread.join(30)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
