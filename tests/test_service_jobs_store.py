"""Revisions in both job stores (SQLite and Redis): compare-and-set on the base revision, revision 0 and the
newest KEPT_REVISIONS kept, facts (languages, speaker count) following the latest; an old SQLite database
gains the new columns in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from isoscribe.service.job_store import KEPT_REVISIONS, JobOptions, JobStore


def _transcript(text: str, speakers: list[str], languages: list[str]) -> dict:
    return {"text": text, "segments": [{"text": word} for word in text.split()], "speakers": speakers,
            "language": languages[0], "languages": languages}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path: Path) -> Iterator:
    if request.param == "sqlite":
        opened = JobStore(tmp_path / "jobs.sqlite3")
        yield opened
        opened.close()
        return
    from test_distributed import RedisServer

    from isoscribe.service.job_store_redis import RedisJobStore

    redis = RedisServer(tmp_path)
    redis.start()
    opened = RedisJobStore(redis.url(1))
    yield opened
    opened.close()
    redis.stop()


def _succeeded(store, tmp_path: Path) -> str:
    job = store.create(tmp_path / "a.wav", JobOptions(diarize=True))
    store.claim_next()
    assert store.add_revision(job.id, 0, _transcript("too early", [], ["en"])) is None, "only a finished job"
    store.succeed(job.id, _transcript("the model said this", ["SPEAKER_00"], ["en"]), {"overview": "s"}, {})
    return job.id


def test_revisions_are_a_compare_and_set_and_keep_the_original(store, tmp_path: Path) -> None:
    job_id = _succeeded(store, tmp_path)
    job = store.get(job_id)
    assert (job.revision, job.languages, job.speakers) == (0, ["en"], 1)
    assert store.revisions(job_id) == [] and store.transcript_at(job_id, 0) is None, "nothing copied before an edit"
    assert store.add_revision(job_id, 0, _transcript("a person fixed this", ["Ann", "Bob"], ["en", "de"])) == 1
    assert store.add_revision(job_id, 0, _transcript("a stale edit", [], ["en"])) is None
    job = store.get(job_id)
    assert (job.revision, job.languages, job.speakers) == (1, ["en", "de"], 2)
    assert job.transcript["text"] == "a person fixed this" and job.summary == {"overview": "s"}
    assert store.transcript_at(job_id, 0)["text"] == "the model said this"
    assert [(r.revision, r.segments) for r in store.revisions(job_id)] == [(0, 4), (1, 4)]
    assert store.add_revision(job_id, 1, _transcript("renamed", ["Ann"], ["en"]), {"overview": "renamed"}) == 2
    assert store.get(job_id).summary == {"overview": "renamed"}
    assert [job.revision for job in store.recent(5)] == [2], "listed rows carry the revision"


def test_revision_zero_and_the_newest_edits_are_kept(store, tmp_path: Path) -> None:
    job_id = _succeeded(store, tmp_path)
    edits = KEPT_REVISIONS + 3
    for base in range(edits):
        assert store.add_revision(job_id, base, _transcript(f"edit {base + 1}", [], ["en"])) == base + 1
    kept = [r.revision for r in store.revisions(job_id)]
    assert kept == [0, *range(edits - KEPT_REVISIONS + 1, edits + 1)]
    assert store.transcript_at(job_id, 0)["text"] == "the model said this"
    assert store.transcript_at(job_id, 1) is None and store.transcript_at(job_id, edits)["text"] == f"edit {edits}"
    assert store.delete(job_id) and store.revisions(job_id) == [] and store.transcript_at(job_id, 0) is None


def test_an_old_jobs_database_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, "
        "finished_at REAL, progress REAL NOT NULL DEFAULT 0, stage TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL "
        "DEFAULT 0, audio_path TEXT NOT NULL, options TEXT NOT NULL, webhook_url TEXT, error_type TEXT, error TEXT, "
        "timings TEXT NOT NULL DEFAULT '{}', transcript TEXT, summary TEXT)"
    )
    old.execute("INSERT INTO jobs (id, status, created_at, audio_path, options, transcript) VALUES "
                "('job_old', 'succeeded', 1.0, 'a.wav', '{}', '{\"text\": \"hi\", \"segments\": []}')")
    old.commit()
    old.close()
    store = JobStore(path)
    job = store.get("job_old")
    assert (job.revision, job.languages, job.speakers, job.api_key_id) == (0, [], None, "")
    assert store.add_revision("job_old", 0, _transcript("edited", [], ["en"])) == 1
    assert store.transcript_at("job_old", 0) == {"text": "hi", "segments": []}
    store.close()


def test_paging_reaches_every_job_created_in_the_same_instant(store, tmp_path: Path, monkeypatch) -> None:
    """The list's cursor is the last job seen: jobs created at the same time must not fall between two pages."""
    import time

    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    created = {store.create(tmp_path / f"{n}.wav", JobOptions()).id for n in range(3)}
    monkeypatch.undo()
    seen, after = [], None
    while page := store.recent(1, after):
        seen.append(page[0].id)
        after = page[0].id
    assert sorted(seen) == sorted(created) and len(seen) == 3
