"""The web page's Live mode in a real headless Chromium whose microphone is Chromium's fake capture
device playing jfk.wav: live captions appear as the speech goes on, and the saved recording becomes a
job in the job list. Real server, real models (tiny.en)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from service_support import API_KEY, ServerProcess, base_config, wait_for_job, words

pytestmark = pytest.mark.slow

CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("web-live")
    running = ServerProcess(tmp_path, base_config(tmp_path / "data", max_duration_s=300)).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def browser(shared_data: Path) -> Iterator[webdriver.Chrome]:
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        pytest.fail("chromium and chromium-driver are not installed (bash scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={shared_data / 'jfk' / 'jfk.wav'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).get_attribute("textContent") or ""


def test_live_captions_from_the_microphone_and_the_saved_transcript_in_the_job_list(
    server: ServerProcess, browser: webdriver.Chrome
) -> None:
    driver = browser
    driver.get(server.url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "key-input").is_displayed())
    driver.find_element(By.ID, "key-input").send_keys(API_KEY + Keys.ENTER)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "live-start").is_displayed())

    driver.find_element(By.ID, "live-start").click()
    # jfk.wav loops as the fake microphone: its words arrive as captions while it plays
    WebDriverWait(driver, 120).until(lambda d: {"fellow", "country"} <= set(words(_text(d, "live-captions"))))
    captions = driver.find_elements(By.CSS_SELECTOR, "#live-captions .caption")
    assert len(captions) >= 2, [c.text for c in captions]
    assert "error" not in _text(driver, "live-status").lower(), _text(driver, "live-status")

    driver.find_element(By.ID, "live-stop").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "live-save").is_displayed())
    driver.find_element(By.ID, "live-save").click()
    WebDriverWait(driver, 60).until(lambda d: "Saved as live-" in _text(d, "live-status"))
    job_names = lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#job-list .job-name")]  # noqa: E731
    WebDriverWait(driver, 60).until(lambda d: any(name.startswith("live-") for name in job_names(d)))
    with server.client() as client:
        jobs = client.get("/v1/jobs").json()["data"]
        saved = [job for job in jobs if job["options"]["filename"].startswith("live-")]
        assert len(saved) == 1 and saved[0]["options"]["diarize"], jobs
        assert wait_for_job(client, saved[0]["id"])["status"] == "succeeded"
        text = client.get(f"/v1/jobs/{saved[0]['id']}/result", params={"format": "text"}).text
    assert {"fellow", "country"} <= set(words(text)), text
