"""The web page's job list beyond its first page, in a real headless Chromium against the real app (no model
runs: the job store already holds 55 finished jobs). The list shows the newest 50; "Show older jobs" lists
the rest, and a link to an older job (#job=ID) opens it, in a fresh tab or in one where the page is open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_web_edit import PARTS, _segment_texts, _transcript
from web_browser import PageServer, browser, enter_api_key, script_errors

from isoscribe.service.job_store import JobOptions, JobStore

pytestmark = pytest.mark.slow

JOBS = 55


def _job_names(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#job-list li.job .job-name')].map(n => n.textContent)")


def test_older_jobs_are_listed_on_request_and_open_from_a_link(tmp_path: Path, shared_data: Path, browser) -> None:
    driver, _ = browser
    server = PageServer(tmp_path / "many-jobs")
    audio = shared_data / "jfk" / "jfk.wav"
    ids = [
        server.add_finished_job(audio, _transcript(), JobOptions(model="tiny.en", diarize=True, filename=f"meeting-{n:02d}.wav"))
        for n in range(JOBS)
    ]
    with server.running():
        driver.get(server.url)
        enter_api_key(driver)
        WebDriverWait(driver, 30).until(lambda d: len(_job_names(d)) == 50)
        more = driver.find_element(By.ID, "jobs-more")
        assert more.is_displayed(), "the five oldest jobs were out of reach"
        more.click()
        WebDriverWait(driver, 30).until(lambda d: len(_job_names(d)) == JOBS)
        assert _job_names(driver) == [f"meeting-{n:02d}.wav" for n in reversed(range(JOBS))]
        assert not more.is_displayed(), "nothing older is left to show"

        driver.get(f"{server.url}/#job={ids[0]}")
        driver.refresh()  # a fresh page lists 50 again: the link alone must bring the oldest job
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "viewer-title").text == "meeting-00.wav")
        WebDriverWait(driver, 30).until(lambda d: len(_segment_texts(d)) == len(PARTS))

        driver.get(f"{server.url}/#job={ids[-1]}")  # another link in the same tab: only the # changes
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "viewer-title").text == f"meeting-{JOBS - 1}.wav")
        WebDriverWait(driver, 30).until(lambda d: len(_segment_texts(d)) == len(PARTS))
        assert script_errors(driver) == []


def test_a_cancelled_job_says_so_without_an_error(tmp_path: Path, shared_data: Path, browser) -> None:
    """It said "This job cancelled: no transcript was made." (or "…: it was cancelled.") in red, as a failure."""
    driver, _ = browser
    server = PageServer(tmp_path / "cancelled")
    upload = tmp_path / "talk.wav"  # the job's own copy: a finished job's upload may be deleted
    shutil.copyfile(shared_data / "jfk" / "jfk.wav", upload)
    store = JobStore(tmp_path / "cancelled" / "jobs.sqlite3")
    try:
        job = store.create(upload, JobOptions(model="tiny.en", filename="talk.wav"))
        assert store.cancel(job.id) == "queued"
    finally:
        store.close()
    with server.running():
        driver.get(server.url)
        enter_api_key(driver)
        WebDriverWait(driver, 30).until(lambda d: _job_names(d) == ["talk.wav"])
        driver.find_element(By.CSS_SELECTOR, "#job-list button[aria-label='Show talk.wav']").click()
        said = driver.find_element(By.ID, "job-error")
        WebDriverWait(driver, 30).until(lambda d: said.text)
        assert said.text == "This job was cancelled before it finished: no transcript was made."
        assert "error" not in said.get_attribute("class")
        assert script_errors(driver) == []
