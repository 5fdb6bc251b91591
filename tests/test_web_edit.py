"""The web page as the place a transcript is finished, in a real headless Chromium against the real app
(no model runs: the job store already holds a finished job over jfk.wav; its last part is marked German
so the page's language marks show). Editing, undo, autosave and every download; search; the keys, and
that they do nothing while a field has the focus; axe-core in both colour schemes; screenshots."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from web_browser import (
    DESKTOP, PHONE, PageServer, axe_violations, browser, colour_scheme, enter_api_key, in_viewport, screenshot,
    script_errors, viewport,
)

from isoscribe.service.job_store import JobOptions

pytestmark = pytest.mark.slow

PARTS = [  # (start, end, speaker, language, words as (start, end, text))
    (0.0, 3.0, "SPEAKER_00", "en", [(0.3, 0.6, " And"), (0.6, 0.9, " so"), (0.9, 1.2, " my"), (1.2, 1.7, " fellow"), (1.7, 2.8, " Americans,")]),
    (3.0, 4.4, "SPEAKER_01", "en", [(3.2, 3.8, " ask"), (3.8, 4.3, " not")]),
    (4.4, 7.6, "SPEAKER_00", "en", [(4.6, 5.0, " what"), (5.0, 5.3, " your"), (5.3, 5.9, " country"), (5.9, 6.2, " can"),
                                     (6.2, 6.5, " do"), (6.5, 6.8, " for"), (6.8, 7.4, " you,")]),
    (7.6, 11.0, "SPEAKER_01", "de", [(7.8, 8.2, " ask"), (8.2, 8.5, " what"), (8.5, 8.8, " you"), (8.8, 9.1, " can"),
                                      (9.1, 9.4, " do"), (9.4, 9.7, " for"), (9.7, 10.0, " your"), (10.0, 10.8, " country.")]),
]
EDITED = ["And so my fellow citizens,", "ask not what your country can do for you,", "ask what you can do for your country."]
NO_TEXT = {"rttm", "summary_md"}


def _transcript() -> dict:
    segments = []
    for index, (start, end, speaker, language, words) in enumerate(PARTS):
        segments.append({
            "id": index, "start": start, "end": end, "text": "".join(w[2] for w in words), "speaker": speaker,
            "language": language, "words": [{"start": s, "end": e, "text": t, "probability": 0.9, "speaker": speaker} for s, e, t in words],
        })
    text = "".join(s["text"] for s in segments).strip()
    turns = [{"start": s["start"], "end": s["end"], "speaker": s["speaker"]} for s in segments]
    return {"schema_version": 1, "text": text, "segments": segments, "language": "en", "language_probability": 0.99,
            "duration_s": 11.0, "model": "tiny.en", "speakers": ["SPEAKER_00", "SPEAKER_01"], "speaker_turns": turns,
            "timings_s": {}, "source": "jfk.wav", "languages": ["en", "de"], "warnings": []}


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[PageServer, Path]]:
    server = PageServer(tmp_path_factory.mktemp("web-edit"))
    with server.running():
        yield server, shared_data / "jfk" / "jfk.wav"


@pytest.fixture
def job(page_server) -> str:
    """A fresh finished job for each test: edits of one test do not leak into another."""
    server, audio = page_server
    options = JobOptions(model="tiny.en", diarize=True, filename="jfk.wav")
    return server.add_finished_job(audio, _transcript(), options)


def _open(driver: webdriver.Chrome, server: PageServer, job_id: str) -> None:
    driver.get(f"{server.url}/#job={job_id}")
    enter_api_key(driver)
    WebDriverWait(driver, 30).until(lambda d: len(_segment_texts(d)) == len(PARTS))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('player').readyState >= 1"))


def _segment_texts(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#transcript .segment')].map(s => {"
        " const area = s.querySelector('textarea'); return (area ? area.value : s.querySelector('.words').textContent).trim(); })"
    )


def _segment_button(driver: webdriver.Chrome, index: int, action: str):
    return driver.find_element(By.CSS_SELECTOR, f"#transcript .segment[data-index='{index}'] [data-action='{action}']")


def _edit_text(driver: webdriver.Chrome, index: int, text: str) -> None:
    area = _type_without_enter(driver, index, text)
    area.send_keys(Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#transcript textarea"))


def _type_without_enter(driver: webdriver.Chrome, index: int, text: str):
    """Open part ``index``'s editor and type ``text`` in place of its own; the editor stays open."""
    _segment_button(driver, index, "edit").click()
    area = driver.find_element(By.ID, f"segment-text-{index}")
    assert driver.switch_to.active_element == area, "Edit should put the focus in the text"
    area.clear()
    area.send_keys(text)
    return area


def _split(driver: webdriver.Chrome, index: int, after_text: str) -> None:
    _segment_button(driver, index, "edit").click()
    area = driver.find_element(By.ID, f"segment-text-{index}")
    caret = area.get_attribute("value").index(after_text) + len(after_text)
    driver.execute_script("arguments[0].setSelectionRange(arguments[1], arguments[1])", area, caret)
    _segment_button(driver, index, "split").click()


def _press(driver: webdriver.Chrome, *keys: str) -> None:
    chain = ActionChains(driver)
    modifiers = [key for key in keys[:-1]]
    for key in modifiers:
        chain.key_down(key)
    chain.send_keys(keys[-1])
    for key in reversed(modifiers):
        chain.key_up(key)
    chain.perform()


def _wait_saved(driver: webdriver.Chrome) -> None:
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "save-status").text in ("All changes saved",) or "Not saved" in d.find_element(By.ID, "save-status").text
    )
    assert driver.find_element(By.ID, "save-status").text == "All changes saved"


def test_edit_merge_split_undo_and_every_download_holds_the_edited_text(page_server, job, browser) -> None:
    server, _ = page_server
    driver, downloads = browser
    _open(driver, server, job)

    _edit_text(driver, 0, "And so my fellow citizens,")
    _segment_button(driver, 1, "merge").click()
    assert _segment_texts(driver)[1] == EDITED[1]
    _split(driver, 2, "ask what you can do")
    assert _segment_texts(driver)[2:] == ["ask what you can do", "for your country."]
    driver.find_element(By.TAG_NAME, "h1").click()  # the focus leaves the buttons: the keys are the page's
    _press(driver, Keys.CONTROL, "z")
    assert _segment_texts(driver) == EDITED
    _wait_saved(driver)

    with server.client() as client:
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
        original = client.get(f"/v1/jobs/{job}/transcript", params={"revision": 0}).json()
        formats = [f for f in client.get("/v1/formats").json()["data"] if "web" in f["where"]]
    assert [s["text"].strip() for s in latest["transcript"]["segments"]] == EDITED
    assert [s["text"].strip() for s in original["transcript"]["segments"]] == [_words_text(p[4]) for p in PARTS]
    assert latest["revision"] >= 1

    expected_words = " ".join(EDITED).split()
    names = {f["name"] for f in formats}
    assert {"txt", "srt", "vtt", "tsv", "transcript", "docx", "pdf"} <= names, names
    driver.find_element(By.CSS_SELECTOR, ".downloads-menu summary").click()
    for fmt in formats:
        if fmt["needs_summary"]:
            continue
        content = _download(driver, downloads, fmt["label"], fmt["extension"])
        if fmt["name"] in NO_TEXT:
            continue
        assert _spoken_words(fmt["name"], content) == expected_words, fmt["name"]
        if fmt["name"] in ("srt", "vtt"):
            _assert_monotonic(content.decode())
    assert script_errors(driver) == []


def test_a_download_is_named_after_the_upload_in_any_script(page_server, browser) -> None:
    """The page names a download after the upload as the API's Content-Disposition does: letters of any
    script stay (they all became "_": 会議.wav gave _.txt, so every such job's downloads collided)."""
    server, audio = page_server
    driver, downloads = browser
    options = JobOptions(model="tiny.en", diarize=True, filename="Réunion été 会議.wav")
    _open(driver, server, server.add_finished_job(audio, _transcript(), options))
    driver.find_element(By.CSS_SELECTOR, ".downloads-menu summary").click()
    _download(driver, downloads, "Text", "txt")
    assert [path.name for path in downloads.iterdir()] == ["Réunion_été_会議.txt"]
    assert driver.find_element(By.ID, "download-status").text == "Downloaded Réunion_été_会議.txt."


def test_a_one_speaker_job_says_1_speaker(page_server, browser) -> None:
    server, audio = page_server
    driver, _ = browser
    transcript = _transcript()
    for segment in transcript["segments"]:
        segment["speaker"] = "SPEAKER_00"
    transcript["speakers"] = ["SPEAKER_00"]
    _open(driver, server, server.add_finished_job(audio, transcript, JobOptions(model="tiny.en", diarize=True)))
    facts = driver.find_element(By.ID, "viewer-facts").text
    assert facts.startswith("0:11 · 1 speaker · English, German"), facts


def _choose(driver: webdriver.Chrome, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def _words_text(words) -> str:
    return "".join(w[2] for w in words).strip()


def _download(driver: webdriver.Chrome, downloads: Path, label: str, extension: str) -> bytes:
    before = set(downloads.iterdir())
    driver.find_element(By.CSS_SELECTOR, f"#downloads button[aria-label='Download {label}']").click()

    def arrived(_driver):
        new = [p for p in set(downloads.iterdir()) - before if p.name.endswith(f".{extension}")]
        return new[0] if new else False

    path = WebDriverWait(driver, 30).until(arrived)
    return path.read_bytes()


def _spoken_words(name: str, content: bytes) -> list[str]:
    """The words of a download in order, without times, cue numbers and speaker labels."""
    if name == "transcript":
        return " ".join(s["text"] for s in json.loads(content)["segments"]).split()
    if name == "tsv":
        rows = csv.DictReader(io.StringIO(content.decode()), delimiter="\t")
        return " ".join(row["text"] for row in rows).split()
    if name == "docx":
        import docx

        paragraphs = [p.text for p in docx.Document(io.BytesIO(content)).paragraphs]
        return _without_labels("\n".join(paragraphs[1:]))  # after the title
    if name == "pdf":
        from pypdf import PdfReader

        text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
        return _without_labels(text.replace("Transcript of jfk.wav", "", 1))
    return _without_labels(content.decode())


def _without_labels(text: str) -> list[str]:
    text = re.sub(r"<v [^>]*>|</?[a-z]+>", " ", text)
    text = re.sub(r"\[?SPEAKER_\d\d\]?:?", " ", text)
    text = re.sub(r"\[?\d{1,2}:\d{2}(:\d{2})?([.,]\d{1,3})?\]?", " ", text)
    text = text.replace("-->", " ").replace("WEBVTT", " ")
    return [token for token in text.split() if not token.isdigit() and token != "-"]


def _assert_monotonic(subtitles: str) -> None:
    cues = re.findall(r"(\d+):(\d\d):(\d\d)[.,](\d\d\d) --> (\d+):(\d\d):(\d\d)[.,](\d\d\d)", subtitles)
    assert cues, subtitles
    times = [(_seconds(c[:4]), _seconds(c[4:])) for c in cues]
    for (start, end), (next_start, _) in zip(times, times[1:] + [(float("inf"), None)]):
        assert start <= end <= next_start, (times, subtitles)


def _seconds(parts) -> float:
    hours, minutes, seconds, millis = map(int, parts)
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def test_search_finds_every_occurrence_and_steps_through_them(page_server, job, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    text = " ".join(_words_text(p[4]) for p in PARTS).lower()
    search = driver.find_element(By.ID, "search-input")
    for query in ("can", "country", "you", "ask what", "zebra"):
        search.clear()
        search.send_keys(query)
        expected = len(re.findall(re.escape(query), text))
        assert int(search.get_attribute("data-matches")) == expected, query
        highlighted = driver.execute_script("return CSS.highlights.get('search').size")
        assert highlighted == expected, query
        marked = driver.execute_script("return [...CSS.highlights.get('search')].map(r => r.toString().toLowerCase())")
        assert marked == [query] * expected, marked
    search.clear()
    search.send_keys("you")
    counts = []
    for _ in range(4):
        driver.find_element(By.ID, "search-next").click()
        counts.append(driver.find_element(By.ID, "search-count").text)
    total = len(re.findall("you", text))
    assert counts == [f"{(i + 1) % total + 1} of {total}" for i in range(4)], counts
    driver.find_element(By.ID, "search-previous").click()
    assert driver.find_element(By.ID, "search-count").text == counts[-2]


def test_keys_work_and_do_nothing_while_a_field_has_the_focus(page_server, job, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    paused = lambda d: d.execute_script("return document.getElementById('player').paused")  # noqa: E731
    position = lambda d: d.execute_script("return document.getElementById('player').currentTime")  # noqa: E731
    scroll = lambda d: d.execute_script("return scrollY")  # noqa: E731

    driver.find_element(By.TAG_NAME, "h1").click()
    _press(driver, " ")
    WebDriverWait(driver, 10).until(lambda d: not paused(d))
    _press(driver, " ")
    WebDriverWait(driver, 10).until(paused)
    assert scroll(driver) == 0, "Space should pause, not scroll the page"
    driver.execute_script("document.getElementById('player').currentTime = 2")
    _press(driver, Keys.ARROW_RIGHT)
    assert position(driver) == pytest.approx(7, abs=0.05)
    _press(driver, Keys.ARROW_LEFT)
    _press(driver, Keys.ARROW_LEFT)
    assert position(driver) == pytest.approx(0, abs=0.05), "a skip back stops at the start"
    _segment_button(driver, 0, "merge").click()
    driver.find_element(By.TAG_NAME, "h1").click()
    merged = _segment_texts(driver)
    assert len(merged) == len(PARTS) - 1
    _press(driver, Keys.CONTROL, "z")
    assert len(_segment_texts(driver)) == len(PARTS)
    _press(driver, Keys.CONTROL, Keys.SHIFT, "z")
    assert _segment_texts(driver) == merged

    for field_id in ("search-input", "speaker-name-0"):
        field = driver.find_element(By.ID, field_id)
        field.click()
        before = (position(driver), _segment_texts(driver), field.get_attribute("value"))
        for keys in ((" ",), (Keys.ARROW_RIGHT,), ("l",)):
            _press(driver, *keys)
        assert field.get_attribute("value") != before[2], "the keys should have gone into the field"
        _press(driver, Keys.CONTROL, "z")  # the field's own undo (Chromium's undo may move the focus)
        time.sleep(0.3)
        assert paused(driver), "Space in a field should type, not play"
        assert position(driver) == before[0] and _segment_texts(driver) == before[1]
        driver.find_element(By.ID, field_id).send_keys(Keys.CONTROL, "a", Keys.DELETE)  # a rename re-renders the field
    # The autosave of the redo above re-renders the transcript with the server's words: find the button again then.
    WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: _segment_button(d, 0, "edit").click() or True
    )
    _press(driver, Keys.CONTROL, "z")
    _press(driver, " ")
    time.sleep(0.3)
    assert paused(driver) and len(_segment_texts(driver)) == len(PARTS) - 1
    assert script_errors(driver) == []


def test_layout_languages_accessibility_and_screenshots(page_server, job, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    facts = driver.find_element(By.ID, "viewer-facts").text
    assert "English, German" in facts, facts
    marks = driver.execute_script(
        "return [...document.querySelectorAll('#transcript .segment')].map(s => s.querySelector('.language')?.textContent || '')"
    )
    assert marks == ["English", "", "", "German"], marks
    _choose(driver, "model", "tiny.en")
    options = driver.execute_script("return [...document.getElementById('language').options].map(o => o.value)")
    assert options == ["", "en"], "tiny.en is English-only: the drop-down offers English alone"

    for scheme in ("light", "dark"):
        colour_scheme(driver, scheme)
        for width, height in (DESKTOP, PHONE):
            viewport(driver, width, height)
            driver.execute_script("scrollTo(0, 0)")
            assert in_viewport(driver, "viewer-title"), (scheme, width)
            found = axe_violations(driver)
            assert found == [], (scheme, width, found)
    colour_scheme(driver, "light")
    viewport(driver, *DESKTOP)
    driver.find_element(By.ID, "search-input").send_keys("country")
    driver.execute_script("scrollTo(0, 0)")
    screenshot(driver, "desktop.png")
    driver.execute_script("scrollTo(0, 400)")
    assert in_viewport(driver, "player"), "the player should stay in view while the transcript scrolls"
    viewport(driver, *PHONE)
    driver.execute_script("scrollTo(0, 300)")
    assert in_viewport(driver, "player"), "the player should stay in view on a phone too"
    driver.execute_script("scrollTo(0, 0)")
    screenshot(driver, "phone.png")
    colour_scheme(driver, "dark")
    viewport(driver, *DESKTOP)
    driver.execute_script("scrollTo(0, 0)")
    screenshot(driver, "dark.png")

    driver.find_element(By.ID, "close-viewer").click()  # the empty main pane with the keys' help
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "viewer-empty").is_displayed())
    assert axe_violations(driver) == []
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()  # the key panel
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "key-input").is_displayed())
    for scheme in ("dark", "light"):
        colour_scheme(driver, scheme)
        assert axe_violations(driver) == [], scheme


def test_a_refused_upload_is_said_plainly_in_red_and_the_file_stays_chosen(tmp_path: Path, shared_data: Path, browser) -> None:
    driver, _ = browser
    server = PageServer(tmp_path / "small", max_upload_mb=0.1)  # jfk.wav is 0.35 MB
    with server.running():
        driver.get(server.url)
        enter_api_key(driver)
        driver.find_element(By.ID, "file-input").send_keys(str(shared_data / "jfk" / "jfk.wav"))
        driver.find_element(By.ID, "submit-upload").click()
        status = driver.find_element(By.ID, "upload-status")
        WebDriverWait(driver, 30).until(lambda d: "Not sent" in status.text)
        chosen = driver.execute_script("return [...document.getElementById('file-input').files].map(f => f.name)")
        colour, danger = driver.execute_script(
            "const s = document.getElementById('upload-status');"
            "return [getComputedStyle(s).color, getComputedStyle(document.querySelector('.error')).color]"
        )
    assert "jfk.wav: Upload larger than the limit of 0.1 MB" in status.text, status.text
    assert chosen == ["jfk.wav"], "the refused file should stay chosen, to send again"
    assert "error" in status.get_attribute("class") and colour == danger and colour != "rgb(91, 100, 117)", colour


def test_a_job_whose_audio_was_not_kept_says_why_it_cannot_play(tmp_path: Path, shared_data: Path, browser) -> None:
    """keep_job_audio is off by default: the player was hidden and every "Play from" did nothing, without a word."""
    driver, _ = browser
    server = PageServer(tmp_path / "no-audio", keep_job_audio=False)
    job_id = server.add_finished_job(shared_data / "jfk" / "jfk.wav", _transcript(), JobOptions(model="tiny.en", diarize=True))
    (tmp_path / "no-audio" / "job-audio" / "jfk.wav").unlink()  # a finished job keeps no audio then
    with server.running():
        driver.get(f"{server.url}/#job={job_id}")
        enter_api_key(driver)
        status = driver.find_element(By.ID, "player-status")
        WebDriverWait(driver, 30).until(lambda d: status.text)
        assert status.text.startswith("The server did not keep this job's audio (its keep_job_audio setting is off)")
        assert not driver.find_element(By.ID, "player").is_displayed()
        assert axe_violations(driver) == []


def test_the_form_remembers_the_last_settings(page_server, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    driver.get(server.url)
    enter_api_key(driver)
    _choose(driver, "model", "base")
    WebDriverWait(driver, 10).until(lambda d: len(d.find_element(By.ID, "language").find_elements(By.TAG_NAME, "option")) > 50)
    _choose(driver, "language", "de")
    driver.find_element(By.ID, "diarize").click()
    driver.find_element(By.ID, "summarize").click()
    driver.refresh()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "language").get_attribute("value") == "de")
    form = driver.execute_script(
        "const v = id => document.getElementById(id);"
        "return [v('model').value, v('diarize').checked, v('summarize').checked, v('num-speakers').disabled]"
    )
    assert form == ["base", False, True, True], form


def test_an_edit_on_a_revision_changed_elsewhere_is_not_saved_and_says_so(page_server, job, browser) -> None:
    server, _ = page_server
    driver, downloads = browser
    _open(driver, server, job)
    with server.client() as client:  # another tab saves first
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
        segments = [{k: s[k] for k in ("start", "end", "speaker", "text")} for s in latest["transcript"]["segments"]]
        segments[1]["text"] = " ask now"
        body = {"base_revision": latest["revision"], "segments": segments}
        assert client.put(f"/v1/jobs/{job}/transcript", json=body).status_code == 200
    _segment_button(driver, 2, "merge").click()
    status = driver.find_element(By.ID, "save-status")
    WebDriverWait(driver, 30).until(lambda d: "Not saved" in status.text)
    assert status.text.startswith("Not saved: the transcript was changed somewhere else"), status.text
    assert "error" in status.get_attribute("class")
    with server.client() as client:
        kept = client.get(f"/v1/jobs/{job}/transcript").json()["transcript"]["segments"]
    assert [s["text"].strip() for s in kept][1] == "ask now" and len(kept) == len(PARTS), "the other tab's save stays"
    # A download holds what the page shows or nothing: the other tab's text is not passed off as this one's.
    driver.find_element(By.CSS_SELECTOR, ".downloads-menu summary").click()
    driver.find_element(By.CSS_SELECTOR, "#downloads button[aria-label='Download Text']").click()
    download_status = driver.find_element(By.ID, "download-status")
    WebDriverWait(driver, 30).until(lambda d: download_status.text)
    assert download_status.text.startswith("Not downloaded: Revision 0 is not the latest"), download_status.text
    assert "error" in download_status.get_attribute("class")
    assert list(downloads.iterdir()) == []


def test_an_edit_made_just_before_the_page_is_left_is_saved(page_server, job, browser) -> None:
    """A reload inside the autosave's second dropped the edit without a word (revision 0 stayed)."""
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    _edit_text(driver, 0, EDITED[0])
    driver.refresh()
    WebDriverWait(driver, 30).until(lambda d: len(_segment_texts(d)) == len(PARTS))
    with server.client() as client:
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
    assert latest["revision"] == 1 and latest["transcript"]["segments"][0]["text"].strip() == EDITED[0]
    WebDriverWait(driver, 30).until(lambda d: _segment_texts(d)[0] == EDITED[0])


def test_text_typed_in_an_editor_still_open_is_saved_when_the_page_is_left(page_server, job, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    _type_without_enter(driver, 3, "ask what you can do.")
    driver.refresh()
    WebDriverWait(driver, 30).until(lambda d: len(_segment_texts(d)) == len(PARTS))
    with server.client() as client:
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
    assert latest["revision"] == 1 and latest["transcript"]["segments"][3]["text"].strip() == "ask what you can do."


def test_a_download_holds_the_text_typed_in_an_editor_still_open(page_server, job, browser) -> None:
    """Text typed without Enter shows on the page: the download had the text from before it."""
    server, _ = page_server
    driver, downloads = browser
    _open(driver, server, job)
    _type_without_enter(driver, 0, EDITED[0])
    driver.find_element(By.CSS_SELECTOR, ".downloads-menu summary").click()
    text = _download(driver, downloads, "Text", "txt").decode()
    assert text.splitlines()[0] == f"SPEAKER_00: {EDITED[0]}", text
    assert _segment_texts(driver)[0] == EDITED[0]


def test_a_rename_of_a_speaker_renamed_in_another_tab_shows_the_names_as_they_are_now(page_server, job, browser) -> None:
    """It said "No speaker SPEAKER_00 in this transcript" and kept showing SPEAKER_00."""
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    with server.client() as client:  # another tab renames first
        assert client.patch(f"/v1/jobs/{job}/speakers", json={"SPEAKER_00": "Alice"}).status_code == 200
    field = driver.find_element(By.CSS_SELECTOR, "#speaker-fields input[data-label='SPEAKER_00']")
    field.clear()
    field.send_keys("Ann")
    driver.find_element(By.CSS_SELECTOR, "#speakers-form button[type='submit']").click()
    status = driver.find_element(By.ID, "speakers-status")
    WebDriverWait(driver, 30).until(lambda d: status.text)
    assert status.text == "Not saved: the speakers were renamed somewhere else; these are their names now."
    assert _segment_speakers(driver) == ["Alice", "SPEAKER_01", "Alice", "SPEAKER_01"]
    fields = driver.execute_script("return [...document.querySelectorAll('#speaker-fields input')].map(i => i.value)")
    assert fields == ["Alice", "SPEAKER_01"]
    assert script_errors(driver) == []


def test_an_edit_whose_save_met_a_refused_key_is_saved_once_the_key_is_given(page_server, job, browser) -> None:
    """The key stops being accepted (here: the tab's key is changed) as an edit is saved: the page asks for
    the key, and once it is given the edit is saved (it was marked saved and lost)."""
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    driver.execute_script("sessionStorage.setItem('isoscribe.apiKey', 'no-longer-valid')")
    _edit_text(driver, 0, EDITED[0])
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "key-input").is_displayed())
    time.sleep(1.5)  # the job list's poll may ask for the key first: the autosave (after 1 s) is refused by now
    enter_api_key(driver)
    WebDriverWait(driver, 30).until(lambda d: _segment_texts(d) and _segment_texts(d)[0] == EDITED[0])
    with server.client() as client:
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
    assert latest["revision"] == 1 and latest["transcript"]["segments"][0]["text"].strip() == EDITED[0]


def test_text_typed_in_an_open_editor_survives_another_parts_speaker_change_and_merge(page_server, job, browser) -> None:
    """Another part's speaker choice redrew the editor with the old text; a merge closed it: the typed text was lost."""
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    for typed, use_another_part in (
        ("ask what you can do.", lambda: _choose(driver, "segment-speaker-0", "SPEAKER_01")),
        ("ask what you can do!", lambda: _segment_button(driver, 0, "merge").click()),
    ):
        _type_without_enter(driver, len(_segment_texts(driver)) - 1, typed)
        use_another_part()
        assert _segment_texts(driver)[-1] == typed
    assert _segment_texts(driver)[0] == "And so my fellow Americans, ask not"
    assert _segment_speakers(driver)[0] == "SPEAKER_01"
    _wait_saved(driver)


def test_a_part_moves_to_a_new_speaker_and_an_older_version_comes_back(page_server, job, browser) -> None:
    server, _ = page_server
    driver, _ = browser
    _open(driver, server, job)
    _choose(driver, "segment-speaker-1", "<new>")  # the "New speaker" choice
    assert _segment_speakers(driver) == ["SPEAKER_00", "SPEAKER_02", "SPEAKER_00", "SPEAKER_01"]
    _wait_saved(driver)
    field = driver.find_element(By.CSS_SELECTOR, "#speaker-fields input[data-label='SPEAKER_02']")
    field.clear()
    field.send_keys("Carol")
    driver.find_element(By.CSS_SELECTOR, "#speakers-form button[type='submit']").click()
    WebDriverWait(driver, 30).until(lambda d: "Carol" in _segment_speakers(d))
    with server.client() as client:
        latest = client.get(f"/v1/jobs/{job}/transcript").json()
    assert [s["speaker"] for s in latest["transcript"]["segments"]] == ["SPEAKER_00", "Carol", "SPEAKER_00", "SPEAKER_01"]
    assert "Carol" in latest["transcript"]["speakers"]

    WebDriverWait(driver, 30).until(lambda d: _versions(d)[0][0] == latest["revision"])
    versions = _versions(driver)
    assert [revision for revision, _, _ in versions] == list(range(latest["revision"], -1, -1)), versions
    assert versions[0][2] is False and all(restorable for _, _, restorable in versions[1:]), "all but the one shown"
    assert versions[-1][1].startswith("Original · ") and "4 parts" in versions[-1][1], versions[-1]
    assert axe_violations(driver) == [], "the Versions list with its Restore buttons"
    driver.find_element(By.CSS_SELECTOR, "#versions li[data-revision='0'] button").click()
    WebDriverWait(driver, 10).until(lambda d: _segment_speakers(d) == [part[2] for part in PARTS])
    assert driver.find_element(By.ID, "versions-status").text == "Original restored; Undo takes it back."
    _wait_saved(driver)
    with server.client() as client:
        restored = client.get(f"/v1/jobs/{job}/transcript").json()
    assert restored["revision"] == latest["revision"] + 1, "a restore is saved as the newest revision"
    assert [(s["speaker"], s["text"].strip()) for s in restored["transcript"]["segments"]] == [
        (part[2], _words_text(part[4])) for part in PARTS
    ]
    WebDriverWait(driver, 30).until(lambda d: _versions(d)[0][0] == restored["revision"])
    driver.find_element(By.ID, "undo").click()
    assert _segment_speakers(driver) == ["SPEAKER_00", "Carol", "SPEAKER_00", "SPEAKER_01"]
    _wait_saved(driver)
    assert script_errors(driver) == []


def _segment_speakers(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#transcript select.speaker-name')].map(s => s.value)")


def _versions(driver: webdriver.Chrome) -> list[tuple[int, str, bool]]:
    """(revision, its line, whether it has a Restore button), as listed: newest first."""
    return [
        (int(row["revision"]), row["text"], row["restorable"])
        for row in driver.execute_script(
            "return [...document.querySelectorAll('#versions li')].map(li => ({revision: li.dataset.revision,"
            " text: li.querySelector('span').textContent, restorable: !!li.querySelector('button')}))"
        )
    ]
