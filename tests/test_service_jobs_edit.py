"""Issue 28's editing API, in-process with no model workers, on both job stores (SQLite, and Redis as the
Celery executor uses it): edit a word, merge, split and undo through PUT /v1/jobs/{id}/transcript, then
every download shows exactly the edited text with monotonic subtitle timings; revision 0 stays; a stale
base revision is 409; bad input is 400 naming the field; another key's job is 404 on every new route."""

from __future__ import annotations

import io
import json
import time
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import srt
import webvtt
from docx import Document
from fastapi.testclient import TestClient
from pypdf import PdfReader
from service_support import NoWorkers
from test_transcript_edit import meeting

from isoscribe.config import load_settings
from isoscribe.service.app import create_app
from isoscribe.service.auth import hash_key
from isoscribe.service.job_store import JobOptions, JobStore

ADMIN, KEY_A, KEY_B = "admin-key", "key-of-a", "key-of-b"
DOWNLOADS = ("json", "transcript", "text", "txt", "srt", "vtt", "tsv", "verbose_json", "diarized_json", "docx", "pdf")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


A = _auth(KEY_A)


@pytest.fixture(params=["sqlite", "redis"])
def client_and_job(request, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    service: dict = {"data_dir": tmp_path, "api_key": ADMIN, "api_keys": [KEY_A, KEY_B]}
    settings_overrides: dict = {"service": service}
    redis = None
    if request.param == "redis":
        from test_distributed import RedisServer

        from isoscribe.service.job_store_redis import RedisJobStore

        redis = RedisServer(tmp_path)
        redis.start()
        settings_overrides["celery"] = {"result_backend": redis.url(1), "broker_url": redis.url(0)}
        service["executor"] = "celery"
        store = RedisJobStore(redis.url(1))
    else:
        store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create(tmp_path / "up.wav", JobOptions(model="tiny.en", diarize=True, filename="team meeting.wav"),
                       None, hash_key(KEY_A)[:16])
    store.claim_next()
    store.succeed(job.id, meeting().to_dict(), None, {})
    store.close()
    try:
        with TestClient(create_app(load_settings(overrides=settings_overrides), NoWorkers())) as client:
            yield client, job.id
    finally:
        if redis is not None:
            redis.stop()


def _segments(client: TestClient, job_id: str, revision: int | None = None) -> tuple[int, list[dict]]:
    params = {} if revision is None else {"revision": revision}
    body = client.get(f"/v1/jobs/{job_id}/transcript", params=params, headers=A)
    assert body.status_code == 200, body.text
    data = body.json()
    return data["revision"], [
        {k: s[k] for k in ("start", "end", "speaker", "text", "words")} for s in data["transcript"]["segments"]
    ]


def _put(client: TestClient, job_id: str, base: int, segments: list[dict], key: dict = A):
    return client.put(f"/v1/jobs/{job_id}/transcript", json={"base_revision": base, "segments": segments}, headers=key)


def _edit_merge_split_undo(client: TestClient, job_id: str) -> list[str]:
    """The acceptance sequence; returns the segment texts the transcript should have at the end."""
    base, segments = _segments(client, job_id)
    assert base == 0 and [s["text"].strip() for s in segments] == ["Summary nation is hard.", "I", "will fix it. Then we ship."]
    segments[0]["text"] = "Summarization is hard."  # edit a word
    assert _put(client, job_id, 0, segments).json() == {"revision": 1}
    merged = [segments[0], {**segments[1], "end": segments[2]["end"], "text": "I will fix it. Then we ship.", "words": None}]
    assert _put(client, job_id, 1, merged).json() == {"revision": 2}
    _, merged = _segments(client, job_id)
    split = [merged[0], {**merged[1], "end": 3.6, "text": "I will fix it.", "words": None},
             {**merged[1], "start": 3.6, "text": "Then we ship.", "words": None}]
    assert _put(client, job_id, 2, split).json() == {"revision": 3}
    _, before_split = _segments(client, job_id, revision=2)
    assert _put(client, job_id, 3, before_split).json() == {"revision": 4}  # undo = the page PUTs revision 2 again
    return ["Summarization is hard.", "I will fix it. Then we ship."]


def _download(client: TestClient, job_id: str, fmt: str, **params) -> bytes:
    response = client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt, **params}, headers=A)
    assert response.status_code == 200, (fmt, response.text)
    return response.content


def _texts_in(fmt: str, body: bytes) -> str:
    """The transcript text a download shows, words joined by single spaces."""
    if fmt in ("json", "verbose_json", "diarized_json", "transcript"):
        import json

        text = json.loads(body)["text"]
    elif fmt == "srt":
        text = " ".join(cue.content for cue in srt.parse(body.decode()))
        text = re.sub(r"\[[^\]]+\] ", "", text)
    elif fmt == "vtt":
        text = " ".join(re.sub(r"<v [^>]+>", "", cue.raw_text) for cue in webvtt.from_buffer(io.StringIO(body.decode())))
    elif fmt == "tsv":
        text = " ".join(line.split("\t")[4] for line in body.decode().splitlines()[1:])
    elif fmt == "docx":
        text = " ".join(p.text.split(": ", 1)[1] for p in Document(io.BytesIO(body)).paragraphs if p.text.startswith("["))
    elif fmt == "pdf":
        page_text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
        text = " ".join(re.findall(r"\] SPEAKER_\d\d: (.*?)(?=\s*\[\d\d:|$)", page_text.replace("\n", " ")))
    else:
        text = " ".join(line.split(": ", 1)[-1] for line in body.decode().splitlines())
    return " ".join(text.split())


def test_edit_merge_split_undo_shows_in_every_download(client_and_job) -> None:
    client, job_id = client_and_job
    expected = _edit_merge_split_undo(client, job_id)
    revision, segments = _segments(client, job_id)
    assert revision == 4 and [s["text"].strip() for s in segments] == expected
    assert [s["speaker"] for s in segments] == ["SPEAKER_00", "SPEAKER_01"]
    first_words = [(w["start"], w["end"], w["word"] if "word" in w else w["text"].strip()) for w in segments[0]["words"]]
    assert first_words[1:] == [(0.8, 1.0, "is"), (1.0, 1.6, "hard.")] and first_words[0][:2] == (0.0, 0.8)
    for fmt in DOWNLOADS:
        assert _texts_in(fmt, _download(client, job_id, fmt)) == " ".join(expected), fmt
    for fmt, parse in (("srt", lambda b: [(c.start.total_seconds(), c.end.total_seconds()) for c in srt.parse(b.decode())]),
                       ("vtt", lambda b: [(c.start_in_seconds, c.end_in_seconds)
                                          for c in webvtt.from_buffer(io.StringIO(b.decode()))])):
        times = parse(_download(client, job_id, fmt))
        assert all(start <= end for start, end in times) and times == sorted(times), (fmt, times)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(times, times[1:])), (fmt, times)
    rttm = _download(client, job_id, "rttm").decode().split()
    assert rttm[1] == "team_meeting" and {"SPEAKER_00", "SPEAKER_01"} <= set(rttm)
    assert _texts_in("txt", _download(client, job_id, "txt", revision=0)) == "Summary nation is hard. I will fix it. Then we ship."


def test_revisions_are_listed_and_revision_zero_stays(client_and_job) -> None:
    client, job_id = client_and_job
    listed = client.get(f"/v1/jobs/{job_id}/revisions", headers=A).json()["data"]
    assert [(r["revision"], r["segments"]) for r in listed] == [(0, 3)]
    _edit_merge_split_undo(client, job_id)
    listed = client.get(f"/v1/jobs/{job_id}/revisions", headers=A).json()["data"]
    assert [(r["revision"], r["segments"]) for r in listed] == [(0, 3), (1, 3), (2, 2), (3, 3), (4, 2)]
    assert [r["created_at"] for r in listed] == sorted(r["created_at"] for r in listed)
    original = client.get(f"/v1/jobs/{job_id}/transcript", params={"revision": 0}, headers=A).json()
    assert original["revision"] == 0 and original["revisions"] == 4
    assert original["transcript"]["text"] == "Summary nation is hard. I will fix it. Then we ship."
    assert client.get(f"/v1/jobs/{job_id}", headers=A).json()["revision"] == 4
    missing = client.get(f"/v1/jobs/{job_id}/transcript", params={"revision": 5}, headers=A)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "revision"


def test_a_stale_base_revision_is_409_and_a_rename_is_a_revision(client_and_job) -> None:
    client, job_id = client_and_job
    _, segments = _segments(client, job_id)
    assert _put(client, job_id, 0, segments).json() == {"revision": 1}
    stale = _put(client, job_id, 0, segments)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "revision_conflict", stale.text
    renamed = client.patch(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_01": "Bob"}, headers=A)
    assert renamed.status_code == 200 and renamed.json()["revision"] == 2, renamed.text
    assert renamed.json()["transcript"]["source"] == "team meeting.wav", "the upload's name, no server path"
    assert _put(client, job_id, 1, segments).status_code == 409, "an edit based on the names before the rename"
    assert "Bob: I" in _download(client, job_id, "txt").decode()


@pytest.mark.parametrize(
    ("change", "param"),
    [
        (lambda s: {"base_revision": 0, "segments": []}, "segments"),
        (lambda s: {"base_revision": 0, "segments": [{**s[0], "start": 3.0, "end": 1.0}]}, "segments[0].start"),
        (lambda s: {"base_revision": 0, "segments": [s[0], {**s[1], "speaker": "<b>Eve</b>"}]}, "segments[1].speaker"),
        (lambda s: {"base_revision": 0, "segments": [s[0], {**s[1], "speaker": "Ann\tLee"}]}, "segments[1].speaker"),
        (lambda s: {"base_revision": 0, "segments": [{**s[0], "end": "soon"}]}, "segments[0].end"),
        (lambda s: {"base_revision": -1, "segments": s}, "base_revision"),
        (lambda s: {"segments": s}, "base_revision"),
        (lambda s: {"base_revision": 0, "segments": [{**s[0], "words": [
            {"start": 1.0, "end": 1.2, "text": "Summary"}, {"start": 0.1, "end": 0.2, "text": "nation"},
            {"start": 1.3, "end": 1.4, "text": "is"}, {"start": 1.5, "end": 1.6, "text": "hard."}]}]},
         "segments[0].words[1].start"),
        (lambda s: {"base_revision": 0, "segments": [{**s[0], "language": "klingon"}]}, "segments[0].language"),
    ],
)
def test_bad_input_is_400_naming_the_field(client_and_job, change, param: str) -> None:
    client, job_id = client_and_job
    _, segments = _segments(client, job_id)
    response = client.put(f"/v1/jobs/{job_id}/transcript", json=change(segments), headers=A)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"], error
    assert _segments(client, job_id)[0] == 0, "nothing was saved"


def test_another_key_gets_404_on_every_new_route(client_and_job) -> None:
    client, job_id = client_and_job
    _, segments = _segments(client, job_id)
    b = _auth(KEY_B)
    for response in (
        client.get(f"/v1/jobs/{job_id}/transcript", headers=b),
        client.put(f"/v1/jobs/{job_id}/transcript", json={"base_revision": 0, "segments": segments}, headers=b),
        client.get(f"/v1/jobs/{job_id}/revisions", headers=b),
        client.get(f"/v1/jobs/{job_id}/events", headers=b),
        client.get(f"/v1/jobs/{job_id}/result", params={"format": "docx", "revision": 0}, headers=b),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found", response.text
    assert client.get(f"/v1/jobs/{job_id}/transcript").status_code == 401
    assert client.get(f"/v1/jobs/{job_id}/events").status_code == 401
    assert _segments(client, job_id)[0] == 0, "B's PUT changed nothing"
    assert client.get(f"/v1/jobs/{job_id}/transcript", headers=_auth(ADMIN)).status_code == 200


def test_a_finished_jobs_events_replay_its_segments_then_done(client_and_job) -> None:
    client, job_id = client_and_job
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=A) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
        body = "".join(response.iter_text())
    names = re.findall(r"^event: (\w+)$", body, flags=re.M)
    assert names == ["segment", "segment", "segment", "progress", "done"], body
    assert '"speaker": "SPEAKER_01"' in body and '"status": "succeeded"' in body


def test_a_running_jobs_events_replay_its_segments_so_far_and_follow_it(tmp_path: Path, monkeypatch) -> None:
    import threading

    from isoscribe.service.job_loops import JobLoops

    monkeypatch.setattr(JobLoops, "start", lambda self: None)  # the job runs elsewhere: this test plays it below
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create(tmp_path / "up.wav", JobOptions(filename="a.wav"))
    store.claim_next()
    store.set_progress(job.id, 0.4, "speech", 20.0, 60.0, None, ["en"])
    for index, text in enumerate(["First words.", "Second words."]):
        store.add_partial_segment(job.id, index, {"start": index * 10.0, "end": index * 10.0 + 5, "text": text,
                                                   "language": "en"})

    def finish() -> None:
        time.sleep(1.5)
        store.add_partial_segment(job.id, 2, {"start": 20.0, "end": 25.0, "text": "Third words.", "language": None})
        time.sleep(1.0)
        store.succeed(job.id, meeting().to_dict(), None, {})

    settings = load_settings(overrides={"service": {"data_dir": tmp_path, "api_key": ADMIN}})
    with TestClient(create_app(settings, NoWorkers())) as client:
        finisher = threading.Thread(target=finish)
        finisher.start()
        with client.stream("GET", f"/v1/jobs/{job.id}/events", headers=_auth(ADMIN)) as response:
            body = "".join(response.iter_text())
        finisher.join()
    store.close()
    events = [(m[0], json.loads(m[1])) for m in re.findall(r"^event: (\w+)\ndata: (.*)$", body, flags=re.M)]
    assert [name for name, _ in events[:3]] == ["segment", "segment", "progress"], body
    assert events[0][1] == {"start": 0.0, "end": 5.0, "text": "First words.", "language": "en"}
    assert events[2][1]["status"] == "running" and events[2][1]["audio_done_s"] == 20.0
    assert ("segment", {"start": 20.0, "end": 25.0, "text": "Third words."}) in events, "a segment that came later"
    assert events[-1] == ("done", {"status": "succeeded"})


def test_the_page_finds_docx_and_pdf_among_the_formats(client_and_job) -> None:
    client, job_id = client_and_job
    listed = {f["name"]: f for f in client.get("/v1/formats", headers=A).json()["data"] if "web" in f["where"]}
    assert {"docx", "pdf"} <= set(listed) and listed["docx"]["label"] == "DOCX", listed
    response = client.get(f"/v1/jobs/{job_id}/result", params={"format": "pdf"}, headers=A)
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == "attachment; filename*=UTF-8''team%20meeting.pdf"
