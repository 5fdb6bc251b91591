"""The API the web page uses, on the app in-process with no model workers: the job list, the audio with
Range, speaker renaming (persisted into every format and the summary), the batch's formats, purge, the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service_support import NoWorkers

from isoscribe.config import load_settings
from isoscribe.languages import WHISPER_LANGUAGES
from isoscribe.service.app import create_app
from isoscribe.service.job_store import JobOptions, JobStore
from isoscribe.summary.renaming import rename_speakers, rename_summary_speakers
from isoscribe.transcript import ActionItem, Decision, Segment, SourceSpan, SpeakerTurn, Summary, Transcript, Word

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
AUDIO_BYTES = bytes(range(256)) * 8


def _dialogue() -> tuple[Transcript, Summary]:
    first = Segment(0, 0.0, 1.0, " Fix the bug.", [Word(0.0, 0.5, " Fix", 0.9, "SPEAKER_00")], "SPEAKER_00")
    second = Segment(1, 1.0, 2.0, " I will.", [Word(1.0, 1.5, " I", 0.9, "SPEAKER_01")], "SPEAKER_01")
    turns = [SpeakerTurn(0.0, 1.0, "SPEAKER_00"), SpeakerTurn(1.0, 2.0, "SPEAKER_01")]
    transcript = Transcript(
        [first, second], "en", 1.0, 2.0, "tiny.en", ["SPEAKER_00", "SPEAKER_01"], turns, source="meeting.wav"
    )
    source = SourceSpan(1.0, 2.0, "SPEAKER_01", "I will.")
    summary = Summary(
        "SPEAKER_00 asks SPEAKER_01 to fix the bug.",
        action_items=[ActionItem("SPEAKER_01", "SPEAKER_01 fixes the bug", "by Friday", source)],
        decisions=[Decision("SPEAKER_01 owns the bug", source)],
    )
    return transcript, summary


def _succeeded_job(store: JobStore, audio_path: Path) -> str:
    transcript, summary = _dialogue()
    job = store.create(audio_path, JobOptions(model="tiny.en", diarize=True, filename="meeting.wav"))
    store.claim_next()
    store.succeed(job.id, transcript.to_dict(), summary.to_dict(), {})
    return job.id


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, str, Path]]:
    audio_path = tmp_path / "job-audio" / "upload.wav"
    audio_path.parent.mkdir(parents=True)
    audio_path.write_bytes(AUDIO_BYTES)
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_id = _succeeded_job(store, audio_path)
    store.close()
    settings = load_settings(overrides={"service": {"data_dir": tmp_path, "api_key": API_KEY}})
    with TestClient(create_app(settings, NoWorkers())) as client:
        yield client, job_id, audio_path


def test_rename_swaps_labels_everywhere_in_one_pass() -> None:
    transcript, summary = _dialogue()
    names = {"SPEAKER_00": "SPEAKER_01", "SPEAKER_01": "Alice"}
    rename_speakers(transcript, names)
    rename_summary_speakers(summary, names)
    assert [s.speaker for s in transcript.segments] == ["SPEAKER_01", "Alice"]
    assert [w.speaker for s in transcript.segments for w in s.words] == ["SPEAKER_01", "Alice"]
    assert [t.speaker for t in transcript.speaker_turns] == ["SPEAKER_01", "Alice"]
    assert transcript.speakers == ["SPEAKER_01", "Alice"]
    assert summary.overview == "SPEAKER_01 asks Alice to fix the bug."
    item = summary.action_items[0]
    assert (item.owner, item.task, item.source.speaker) == ("Alice", "Alice fixes the bug", "Alice")
    assert summary.decisions[0].text == "Alice owns the bug"


def test_rename_does_not_touch_a_longer_label() -> None:
    transcript, summary = _dialogue()
    summary.overview = "SPEAKER_010 and SPEAKER_01 agree."
    rename_summary_speakers(summary, {"SPEAKER_01": "Bob"})
    assert summary.overview == "SPEAKER_010 and Bob agree."


def test_renamed_speaker_persists_in_every_format(app_client) -> None:
    client, job_id, _ = app_client
    renamed = client.patch(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_01": " Bob "}, headers=AUTH)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["transcript"]["speakers"] == ["SPEAKER_00", "Bob"]

    def result(fmt: str) -> str:
        response = client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt}, headers=AUTH)
        assert response.status_code == 200, (fmt, response.text)
        return response.text

    assert "[Bob] I will." in result("srt")
    assert "<v Bob>I will." in result("vtt")
    assert "Bob: I will." in result("txt")
    tsv_rows = [line.split("\t") for line in result("tsv").splitlines()]
    assert [row[tsv_rows[0].index("speaker")] for row in tsv_rows[1:]] == ["SPEAKER_00", "Bob"]
    assert " Bob <NA> <NA>" in result("rttm")
    assert "SPEAKER_01" not in result("transcript")
    summary_md = result("summary_md")
    assert "- [Bob, by Friday] Bob fixes the bug" in summary_md and "SPEAKER_01" not in summary_md
    assert client.get(f"/v1/jobs/{job_id}/result", params={"format": "summary"}, headers=AUTH).json()[
        "action_items"
    ][0]["owner"] == "Bob"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"SPEAKER_07": "Carol"}, 400),  # no such speaker
        ({"SPEAKER_00": "  "}, 400),  # blank name
        ({"SPEAKER_00": "two\nlines"}, 400),
        ({"SPEAKER_00": "x" * 65}, 400),
        ({}, 400),
        (["SPEAKER_00"], 400),
    ],
)
def test_rename_refuses_a_bad_body(app_client, body, status: int) -> None:
    client, job_id, _ = app_client
    response = client.patch(f"/v1/jobs/{job_id}/speakers", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    transcript = client.get(f"/v1/jobs/{job_id}/result", params={"format": "transcript"}, headers=AUTH).json()
    assert transcript["speakers"] == ["SPEAKER_00", "SPEAKER_01"]


def test_rename_needs_the_key_and_a_known_job(app_client) -> None:
    client, job_id, _ = app_client
    assert client.patch(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_00": "Ann"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.patch(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_00": "Ann"}, headers=wrong).status_code == 401
    missing = client.patch("/v1/jobs/job_nope/speakers", json={"SPEAKER_00": "Ann"}, headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"


def test_job_list_shows_the_uploaded_name(app_client) -> None:
    client, job_id, _ = app_client
    assert client.get("/v1/jobs").status_code == 401
    listed = client.get("/v1/jobs", headers=AUTH).json()
    assert [job["id"] for job in listed["data"]] == [job_id]
    assert listed["data"][0]["options"]["filename"] == "meeting.wav"


def test_audio_is_served_with_range(app_client) -> None:
    client, job_id, _ = app_client
    assert client.get(f"/v1/jobs/{job_id}/audio").status_code == 401
    whole = client.get(f"/v1/jobs/{job_id}/audio", headers=AUTH)
    assert whole.status_code == 200 and whole.content == AUDIO_BYTES
    assert whole.headers["x-content-type-options"] == "nosniff"
    part = client.get(f"/v1/jobs/{job_id}/audio", headers={**AUTH, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == AUDIO_BYTES[100:200]


def test_purge_deletes_the_job_and_its_audio(app_client) -> None:
    client, job_id, audio_path = app_client
    deleted = client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}, headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert not audio_path.exists()
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).status_code == 404
    assert client.get("/v1/jobs", headers=AUTH).json()["data"] == []



def test_page_and_its_files_need_no_key(app_client) -> None:
    client, _, _ = app_client
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path in ("/ui/app.js", "/ui/style.css"):
        assert client.get(path).status_code == 200, path


def test_every_module_the_page_imports_is_served_as_javascript_and_revalidated(app_client) -> None:
    client, _, _ = app_client
    seen, waiting = set(), ["app.js"]
    while waiting:
        name = waiting.pop()
        seen.add(name)
        module = client.get(f"/ui/{name}")
        assert module.status_code == 200, name
        assert module.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript"), name
        assert module.headers["cache-control"] == "no-cache", "a browser must not mix cached and new modules"
        waiting += [m for m in re.findall(r'from "\./([\w.-]+\.js)"', module.text) if m not in seen]
    assert {"app.js", "edits.js", "keys.js", "search.js", "live.js"} <= seen, seen


def test_the_form_offers_a_models_languages(app_client) -> None:
    client, _, _ = app_client
    base = sorted(WHISPER_LANGUAGES - {"yue"})  # Cantonese came with large-v3
    assert client.get("/ui/languages.json", params={"model": "base"}).json() == base
    assert client.get("/ui/languages.json", params={"model": "tiny.en"}).json() == ["en"]
    default = client.get("/ui/languages.json").json()  # whisper-1: the configured model
    assert default == (["en"] if load_settings().asr.model.endswith(".en") else base)
    assert client.get("/ui/languages.json", params={"model": "/tmp/x.en"}).json() == sorted(WHISPER_LANGUAGES)


@pytest.mark.parametrize("name", ["Ann\tLee", "<b>Ann</b>", "Ann\nLee", "42"])
def test_a_speaker_name_that_would_break_a_format_is_refused(app_client, name: str) -> None:
    client, job_id, _ = app_client
    refused = client.patch(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_00": name}, headers=AUTH)
    assert refused.status_code == 400 and "error" in refused.json(), refused.text
    # The web page shows this message as it is: the rule in words, never the validator's pattern.
    error = refused.json()["error"]
    assert error["param"] == "SPEAKER_00"
    assert error["message"] == "invalid name for SPEAKER_00: a speaker name is 1-64 characters on one line, without < or >, not only digits"
