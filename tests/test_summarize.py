"""The summary stage end to end: stage API, isolated workers, failure semantics and the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isoscribe.config import Settings, load_settings
from isoscribe.executors import PerTaskExecutor
from isoscribe.pipeline import FilePipeline, Policy, StageFinished, stage_specs, summary_request
from isoscribe.cli.summarize import read_transcript
from isoscribe.outputs import to_srt, to_tsv, to_vtt
from isoscribe.subtitles import SubtitleLayout
from isoscribe.summary.digest import build_digest
from isoscribe.summary.text import turns_of
from isoscribe.summary.types import SummaryTurn
from isoscribe.transcript import Segment, Summary, Transcript
from summary_fixtures import stm_dialogue_transcript

TESTS_DIR = Path(__file__).resolve().parent
SMALL_LLM = {"n_ctx": 1024, "max_tokens": 48, "threads": 1}


def _settings(llm: dict | None = None, **isolation) -> Settings:
    return load_settings(overrides={"llm": {**SMALL_LLM, **(llm or {})}, "isolation": isolation})


def _summarize(settings: Settings, transcript: Transcript, listener=None) -> Summary:
    """The pipeline's summary step, a fresh worker for the task."""
    executor = PerTaskExecutor(stage_specs(settings))
    try:
        return FilePipeline(executor, Policy(summarize=True), listener).summarize(transcript)
    finally:
        executor.shutdown()


def test_the_summary_request_holds_one_timed_turn_per_speaker_turn(shared_data):
    turns = summary_request(stm_dialogue_transcript(shared_data)).turns
    assert [(t.speaker, t.text) for t in turns[:3]] == [
        ("Diane", "Hello?"), ("Sheila", "Hello?"), ("Diane", "Oh, hello. I didn't know you were there."),
    ]  # fmt: skip
    assert all(t.start < t.end for t in turns) and all(a.end <= b.start + 1e-6 for a, b in zip(turns, turns[1:]))
    assert all(a.speaker != b.speaker for a, b in zip(turns, turns[1:]))


def test_without_speakers_each_segment_is_a_turn():
    segments = [Segment(id=i, start=i, end=i + 1, text=f" part {i}.") for i in range(3)] + [
        Segment(id=3, start=3, end=4, text="  ")
    ]
    transcript = Transcript(segments=segments, language="en", language_probability=1.0, duration_s=4, model="m")
    turns = summary_request(transcript).turns
    assert [(t.speaker, t.start, t.text) for t in turns] == [(None, 0, "part 0."), (None, 1, "part 1."), (None, 2, "part 2.")]


def test_summary_stage_spec_and_limits_come_from_settings():
    settings = _settings(summary_stage="my.stage", llm_timeout_s=12, hard_rss_mb=900)
    spec, limits = stage_specs(settings)["summary"]
    assert spec.module == "my.stage" and spec.name == "summary" and spec.config is settings
    assert limits.timeout_s == 12 and limits.hard_rss_mb == 900


def test_an_empty_transcript_starts_no_worker():
    class Refuses:
        def submit(self, *args):
            raise AssertionError("no task should be submitted")

    for said in ("  ", "[Music]", " ♪ ♪ ", "Um. ..."):  # silence, or what Whisper writes for music
        empty = Transcript([Segment(0, 0.0, 1.0, said), Segment(1, 1.0, 2.0, " [Music]")], "en", 1.0, 2.0, "m")
        summary = FilePipeline(Refuses(), Policy(summarize=True)).summarize(empty)
        assert summary.overview == "" and summary.warning == "no words in the transcript: nothing to summarize"
    assert build_digest([SummaryTurn(None, 0.0, 1.0, "[Music] ♪")]).warnings == [summary.warning]


@pytest.mark.slow
def test_an_isolated_summary_comes_back_with_the_workers_stats(shared_data):
    events = []
    summary = _summarize(_settings(), stm_dialogue_transcript(shared_data), events.append)
    assert summary.warnings == [] and summary.overview_kind == "extractive"
    assert summary.overview and all(s.supported and s.evidence for s in summary.sentences)
    assert summary.completion_tokens == 0, "the bundled model writes nothing that could be used: it is not asked"
    finished = [event for event in events if isinstance(event, StageFinished) and event.stage == "summary"]
    assert len(finished) == 1 and finished[0].error is None and finished[0].peak_rss_mb > 50


def _assert_extractive_with_logged_cause(summary: Summary, caplog, cause: str) -> None:
    assert summary.overview and summary.overview_kind == "extractive" and summary.topics
    assert cause in summary.warning and "extractive" in summary.warning
    failures = [record.getMessage() for record in caplog.records if "event=summary_failed" in record.getMessage()]
    assert failures and cause in failures[0]
    assert all(
        record.levelno == logging.WARNING for record in caplog.records if "summary_failed" in record.getMessage()
    )


@pytest.mark.slow
def test_a_crashing_summary_worker_gives_the_extractive_digest_and_a_warning(shared_data, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SUMMARY_TEST_FAULT", "segfault")
    settings = _settings(summary_stage="summarize_crash_stage")
    with caplog.at_level(logging.WARNING, logger="isoscribe"):
        summary = _summarize(settings, stm_dialogue_transcript(shared_data))
    _assert_extractive_with_logged_cause(summary, caplog, "WorkerCrashed")
    assert "signal 11" in summary.warning


@pytest.mark.slow
def test_a_hanging_summary_worker_times_out_into_the_extractive_digest(shared_data, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SUMMARY_TEST_FAULT", "hang")
    settings = _settings(summary_stage="summarize_crash_stage", llm_timeout_s=8)
    with caplog.at_level(logging.WARNING, logger="isoscribe"):
        summary = _summarize(settings, stm_dialogue_transcript(shared_data))
    _assert_extractive_with_logged_cause(summary, caplog, "StageTimeout")


@pytest.mark.slow
def test_an_error_in_the_summary_stage_gives_the_extractive_digest_with_its_cause(shared_data, tmp_path, caplog):
    settings = _settings(llm={"model_path": tmp_path / "missing.gguf"})
    with caplog.at_level(logging.WARNING, logger="isoscribe"):
        summary = _summarize(settings, stm_dialogue_transcript(shared_data))
    _assert_extractive_with_logged_cause(summary, caplog, "StageError")
    assert "GGUF model not found" in summary.warning


@pytest.mark.slow
def test_a_summary_worker_past_its_memory_cap_gives_the_extractive_digest(shared_data, caplog):
    settings = _settings(llm={"overview": "abstractive"}, hard_rss_mb=60)
    with caplog.at_level(logging.WARNING, logger="isoscribe"):
        summary = _summarize(settings, stm_dialogue_transcript(shared_data))
    _assert_extractive_with_logged_cause(summary, caplog, "StageOutOfMemory")


def test_read_transcript_reads_json_transcripts_and_plain_text(shared_data, tmp_path):
    json_path = tmp_path / "dialogue.json"
    transcript = stm_dialogue_transcript(shared_data)
    json_path.write_text(json.dumps(transcript.to_dict()))
    assert summary_request(read_transcript(json_path)) == summary_request(transcript)
    jfk = shared_data / "jfk" / "jfk.txt"
    assert " ".join(t.text for t in summary_request(read_transcript(jfk)).turns) == jfk.read_text().strip()
    segment = {"id": 0, "start": 0.0, "end": 1.0, "text": "Hello there."}
    for bad in ({"text": "no segments"}, {"segments": [{**segment, "text": None}]},
                {"segments": [{**segment, "start": "0"}]}, {"segments": [{**segment, "speaker": 7}]},
                {"segments": [{**segment, "end": float("nan")}]}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="not an isoscribe JSON transcript"):
            read_transcript(tmp_path / "bad.json")
    (tmp_path / "notepad.txt").write_bytes("\ufeffAlice: I will send the slides by Friday.\n".encode())
    assert [turn.speaker for turn in read_transcript(tmp_path / "notepad.txt").segments] == ["Alice"]
    (tmp_path / "unicode.txt").write_bytes("Jörg: I will send the slides by Friday.\n".encode("utf-16"))
    assert [(s.speaker, s.text) for s in read_transcript(tmp_path / "unicode.txt").segments] == [
        ("Jörg", "I will send the slides by Friday.")
    ]
    script = "Alice:\nI will send the slides.\nAnd the notes.\n\nBob:\nThanks.\nCarol: Fine.\nSee you.\n"
    (tmp_path / "script.txt").write_text(script)  # a name on a line of its own speaks the lines under it
    assert [(s.speaker, s.text) for s in read_transcript(tmp_path / "script.txt").segments] == [
        ("Alice", "I will send the slides."), ("Alice", "And the notes."), ("Bob", "Thanks."), ("Carol", "Fine."),
        (None, "See you."),
    ]  # fmt: skip
    (tmp_path / "latin1.txt").write_bytes("Jörg: I will send the slides.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 1: b'\\xf6'\)"):
        read_transcript(tmp_path / "latin1.txt")


@pytest.mark.parametrize("suffix", ["srt", "vtt", "tsv", "karaoke.srt", "karaoke.vtt"])
def test_subtitles_and_tsv_are_read_as_timed_speaker_turns(shared_data, tmp_path, suffix):
    """SRT, WebVTT and TSV (isoscribe's own, Whisper's) keep their cues' times and speakers; cue numbers, timings,
    tags and columns are no words of the meeting (they were read as plain-text lines, one per second)."""
    transcript = stm_dialogue_transcript(shared_data)
    layout = SubtitleLayout(highlight_words=suffix.startswith("karaoke"))
    fmt = suffix.rsplit(".", 1)[-1]
    written = {"srt": to_srt, "vtt": to_vtt}[fmt](transcript, layout) if fmt != "tsv" else to_tsv(transcript)
    (tmp_path / f"dialogue.{suffix}").write_text(written)
    read = read_transcript(tmp_path / f"dialogue.{suffix}")
    words = " ".join(segment.text.strip() for segment in transcript.segments).split()
    assert " ".join(segment.text for segment in read.segments).split() == words
    assert [t.speaker for t in turns_of(read)] == [t.speaker for t in turns_of(transcript)]
    assert read.segments[0].start == pytest.approx(transcript.segments[0].start, abs=0.5)
    assert all(segment.start < segment.end and segment.start < transcript.duration_s for segment in read.segments)
    whisper = "start\tend\ttext\n0\t2500\t Alice will send the slides.\n2500\t4000\t Thanks.\n"
    (tmp_path / "whisper.tsv").write_text(whisper)
    assert [(s.start, s.end, s.text) for s in read_transcript(tmp_path / "whisper.tsv").segments] == [
        (0.0, 2.5, "Alice will send the slides."), (2.5, 4.0, "Thanks."),
    ]  # fmt: skip
    (tmp_path / "bad.srt").write_text("1\nno timing here\n")
    with pytest.raises(ValueError, match="bad.srt is not a SRT transcript"):
        read_transcript(tmp_path / "bad.srt")


def test_a_sound_in_brackets_opening_a_cue_is_no_speaker(tmp_path):
    """Whisper and subtitle editors mark sounds as isoscribe marks speakers: "[laughs] ", "[Music] "."""
    cues = ("1\n00:00:01,000 --> 00:00:02,000\n[laughs] that is funny\n\n2\n00:00:02,000 --> 00:00:03,000\n"
            "[Music] la la\n\n3\n00:00:03,000 --> 00:00:04,000\n[Dr. Smith] we agreed\n")  # fmt: skip
    (tmp_path / "sounds.srt").write_text(cues)
    read = read_transcript(tmp_path / "sounds.srt")
    assert [s.speaker for s in read.segments] == [None, None, "Dr. Smith"]
    assert read.segments[0].text == "[laughs] that is funny"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ISOSCRIBE_")}
    env.update(ISOSCRIBE_LLM__N_CTX="1024", ISOSCRIBE_LLM__MAX_TOKENS="48", ISOSCRIBE_LLM__THREADS="1")
    command = [sys.executable, "-m", "isoscribe.cli", "summarize", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _summary_section(markdown: str) -> str:
    """The overview: the text between the title and the first section."""
    assert markdown.startswith("# Summary\n") and "\n> " not in markdown
    return markdown.removeprefix("# Summary\n").split("\n## ")[0].strip()


@pytest.mark.slow
def test_cli_summarizes_a_json_transcript(shared_data, tmp_path):
    json_path = tmp_path / "dialogue.json"
    json_path.write_text(json.dumps(stm_dialogue_transcript(shared_data).to_dict()))
    done = _cli(str(json_path))
    assert done.returncode == 0, done.stderr
    assert _summary_section(done.stdout)
    as_json = _cli(str(json_path), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    expected = {"overview", "sentences", "topics", "decisions", "action_items", "open_questions", "model", "warnings"}
    assert expected <= set(summary) and summary["overview"] and summary["topics"]
    assert all({"text", "supported", "evidence"} <= set(sentence) for sentence in summary["sentences"])


@pytest.mark.slow
def test_cli_summarizes_a_plain_text_file(shared_data):
    done = _cli(str(shared_data / "long" / "michaelandsickmichael.txt"))
    assert done.returncode == 0, done.stderr
    assert _summary_section(done.stdout)


def test_cli_reports_an_unreadable_transcript(tmp_path):
    done = _cli(str(tmp_path / "absent.json"))
    assert done.returncode == 2 and "absent.json" in done.stderr


def test_cli_refuses_an_empty_transcript_as_bad_input(tmp_path):
    """Nothing to summarize is the input's fault: exit 2, as for any bad input (it was 1, as if it had failed)."""
    (tmp_path / "blank.txt").write_text("  \n\n")
    (tmp_path / "music.txt").write_text("[Music]\n♪ ♪\n")
    silence = Transcript(segments=[], language="en", language_probability=1.0, duration_s=30.0, model="tiny.en")
    (tmp_path / "silence.json").write_text(json.dumps(silence.to_dict()))
    for name in ("blank.txt", "music.txt", "silence.json"):
        done = _cli(str(tmp_path / name))
        assert done.returncode == 2 and f"{name}: no words in the transcript" in done.stderr and not done.stdout
