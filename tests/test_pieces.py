"""A long file on several speech workers: pieces cut at silence, stitched back in order, one set of speakers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from asr_helpers import wer

from isoscribe.benchmarks.asr import make_long_audio
from isoscribe.config import load_settings
from isoscribe.executors import build_executor
from isoscribe.pipeline import FilePipeline, Policy, speech_request
from isoscribe.pipeline.events import Progress, SegmentReady
from isoscribe.pipeline.pieces import piece_layout, stitch_pieces
from isoscribe.pipeline.sequence import _PieceEvents
from isoscribe.transcript import Piece, PieceResult, Segment, SpeakerClusterRequest, SpeakerTurn, Transcript

AUDIO_S = 200.0
PIECE_S = 50.0
JFK_AT_S = [(30.0, 41.0), (127.7, 138.7)]
"""Where make_long_audio puts the JFK clip (after the 30 s pyannote sample) in its first two rounds."""


def _piece(index: int, start_s: float, end_s: float, texts: list[str]) -> PieceResult:
    step = (end_s - start_s) / len(texts)
    segments = [Segment(i, start_s + i * step, start_s + (i + 1) * step, text) for i, text in enumerate(texts)]
    return PieceResult(index, start_s, end_s, Transcript(segments, "en", 0.9, 20.0, "tiny.en", languages=["en"]))


def test_stitching_orders_pieces_renumbers_segments_and_refuses_a_gap() -> None:
    pieces = [_piece(1, 10.0, 20.0, ["c"]), _piece(0, 0.0, 10.0, ["a", "b"])]
    turns = [SpeakerTurn(0.0, 12.0, "SPEAKER_00"), SpeakerTurn(12.0, 20.0, "SPEAKER_01")]
    stitched = stitch_pieces(pieces, turns)
    assert [(s.id, s.text, s.start) for s in stitched.segments] == [(0, "a", 0.0), (1, "b", 5.0), (2, "c", 10.0)]
    assert stitched.speakers == ["SPEAKER_00", "SPEAKER_01"] and stitched.timings_s["pieces"] == 2
    with pytest.raises(ValueError, match="piece 1 starts at 11.0"):
        stitch_pieces([_piece(0, 0.0, 10.0, ["a"]), _piece(1, 11.0, 20.0, ["b"])], [])


def test_segments_of_pieces_finishing_out_of_order_reach_the_listener_in_file_order() -> None:
    """Piece 1 speaks first, piece 0 is retried after a crash and piece 1's last segment comes only
    with its result (as over Celery): the listener still gets a, b, c, d once each, numbered 0-3."""
    received: list = []
    events = _PieceEvents(received.append, 20.0, 2)
    earlier, later = _piece(0, 0.0, 10.0, ["a", "b"]), _piece(1, 10.0, 20.0, ["c", "d"])
    events.listener(1)(SegmentReady(later.transcript.segments[0]))
    events.listener(0)(SegmentReady(earlier.transcript.segments[0]))
    for segment in earlier.transcript.segments:  # the retried piece 0 from its start
        events.listener(0)(SegmentReady(segment))
    events.piece_done(1, later)
    assert [e.segment.text for e in received if isinstance(e, SegmentReady)] == ["a", "b"]
    events.piece_done(0, earlier)
    segments = [e.segment for e in received if isinstance(e, SegmentReady)]
    assert [(s.id, s.text) for s in segments] == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]
    assert [e.done_s for e in received if isinstance(e, Progress)] == [10.0, 20.0]


def test_pieces_are_a_multiple_of_the_workers_and_no_longer_than_piece_s() -> None:
    request = speech_request(load_settings(), "x.wav", piece_s=50.0)
    assert [piece_layout(request, seconds, 1)[0] for seconds in (10.0, 50.0, 50.5, 200.0)] == [1, 1, 2, 4]
    assert piece_layout(request, 50.0, 2) == (1, 50.0), "one piece's worth stays whole"
    assert piece_layout(request, 120.0, 2) == (4, 30.0)
    assert piece_layout(speech_request(load_settings(), "x.wav"), 3600.0, 2) == (12, 300.0)


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return make_long_audio(shared_data, tmp_path_factory.mktemp("long") / "long.wav", AUDIO_S)


@pytest.mark.slow
def test_pieces_on_two_workers_stitch_back_gap_free_with_the_sequential_words_and_speakers(long_audio: Path) -> None:
    settings = load_settings(overrides={
        "asr": {"model": "tiny.en", "device": "cpu", "cpu_threads": 1},
        "diarization": {"enabled": True, "device": "cpu"},
        "batch": {"workers": 2},
    })
    request = speech_request(settings, long_audio, piece_s=PIECE_S)
    executor = build_executor(settings, lazy=True)
    try:
        count, _ = piece_layout(request, AUDIO_S, 2)
        futures = [executor.submit("speech", replace(request, piece=Piece(i, count))) for i in range(count)]
        pieces = [future.result().value for future in futures]
        assert [(p.index, p.start_s) for p in pieces][0] == (0, 0.0) and pieces[-1].end_s == pytest.approx(AUDIO_S)
        for before, after in zip(pieces, pieces[1:]):
            assert after.start_s == before.end_s, "pieces meet exactly: no gap, no overlap"
            assert after.start_s == pytest.approx(PIECE_S * after.index, abs=20.0)
        for piece in pieces:
            assert all(piece.start_s <= s.start <= s.end <= piece.end_s for s in piece.transcript.segments)
        cluster = SpeakerClusterRequest([p.speaker_vectors for p in pieces])
        turns = executor.submit("speech", cluster).result().value
        stitched = stitch_pieces(pieces, turns)
        times = [t for s in stitched.segments for w in s.words for t in (w.start, w.end)]
        assert times == sorted(times), "word times never go back, across piece boundaries too"
        assert [s.id for s in stitched.segments] == list(range(len(stitched.segments)))

        streamed: list = []
        parallel = FilePipeline(executor, Policy(piece_workers=2), streamed.append).transcribe(request)
        sequential = FilePipeline(executor, Policy()).transcribe(request)
    finally:
        executor.shutdown()
    assert parallel.timings_s["pieces"] == count and "pieces" not in sequential.timings_s
    segments = [event.segment for event in streamed if isinstance(event, SegmentReady)]
    assert [s.id for s in segments] == list(range(len(segments)))
    streamed_words = " ".join(s.text for s in segments).split()
    assert streamed_words == " ".join(s.text for s in parallel.segments).split(), "every segment once, in file order"
    assert wer(sequential.text, parallel.text) <= 0.01
    assert parallel.speakers and set(parallel.speakers) == set(sequential.speakers)
    jfk_speakers = [_speaker_over(parallel, start, end) for start, end in JFK_AT_S]
    assert jfk_speakers[0] == jfk_speakers[1], "the same voice in two pieces keeps one label"


def _speaker_over(transcript: Transcript, start_s: float, end_s: float) -> str:
    seconds: dict[str, float] = {}
    for segment in transcript.segments:
        for word in segment.words:
            overlap = min(word.end, end_s) - max(word.start, start_s)
            if overlap > 0 and word.speaker:
                seconds[word.speaker] = seconds.get(word.speaker, 0.0) + overlap
    return max(seconds, key=seconds.get)
