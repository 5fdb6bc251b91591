"""Diarization on real audio (pyannote sample vs its RTTM, the espeak-ng dialogue) and speaker assignment."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from asr_helpers import der

from isoscribe.config import load_settings
from isoscribe.demo import dialogue_script_path
from isoscribe.pipeline import speech_request
from isoscribe.speakers import assign_speakers
from isoscribe.speakers import assign_speakers, split_at_speaker_changes
from isoscribe.stages import clustering, diarize, speech
from isoscribe.transcript import Segment, SpeakerTurn, Transcript, Word

SAMPLE_DER_MAX = 0.15
"""pyannote's own pipeline scores a few percent on this 30 s, two-speaker call. A resemblyzer
d-vector every 0.4 s over Whisper's word regions misses short back-channel turns and misplaces
boundaries by a window, and Whisper's regions miss a little speech (missed detection counts in
DER); 20 % still fails if one speaker is split in two or the two are merged (either gives ≥ 40 %).
The measured value is printed by the test."""


@pytest.fixture(scope="module")
def speech_models():
    settings = load_settings(overrides={"asr": {"model": "tiny.en", "device": "cpu"}, "diarization": {"enabled": True}})
    return settings, speech.load(settings)


def test_pyannote_sample_der_and_speaker_count(speech_models, shared_data: Path) -> None:
    settings, models = speech_models
    transcript = speech.run(models, speech_request(settings, shared_data / "diarization" / "sample.wav"))
    transcript = assign_speakers(transcript)
    error = der(shared_data / "diarization" / "sample.rttm", transcript.speaker_turns)
    print(f"sample.wav DER (collar 0.25 s each side): {error:.3f}; speakers {transcript.speakers}")
    assert transcript.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert error <= SAMPLE_DER_MAX
    assert "diarize" in transcript.timings_s


def test_espeak_dialogue_two_speakers_turns_in_order(speech_models, demo_dialogue: Path) -> None:
    settings, models = speech_models
    transcript = assign_speakers(speech.run(models, speech_request(settings, demo_dialogue)))
    script = json.loads(dialogue_script_path(demo_dialogue).read_text())["turns"]
    assert transcript.speakers == ["SPEAKER_00", "SPEAKER_01"]
    heard = []
    for turn in script:
        words = [
            w for s in transcript.segments for w in s.words if turn["start"] <= (w.start + w.end) / 2 <= turn["end"]
        ]
        assert words, f"no words recognised in turn {turn['text']!r}"
        heard.append(Counter(w.speaker for w in words).most_common(1)[0][0])
    voice_of = dict(zip([t["speaker"] for t in script], heard))
    assert heard == [voice_of[t["speaker"]] for t in script], f"turn speakers {heard}"
    assert len(set(voice_of.values())) == 2
    assert heard[0] == "SPEAKER_00"


def test_single_speaker_clip_gets_one_speaker(speech_models, shared_data: Path) -> None:
    settings, models = speech_models
    transcript = assign_speakers(speech.run(models, speech_request(settings, shared_data / "jfk" / "jfk.wav")))
    assert transcript.speakers == ["SPEAKER_00"]
    assert {w.speaker for s in transcript.segments for w in s.words} == {"SPEAKER_00"}


def test_fixed_num_speakers_is_honoured(speech_models, shared_data: Path) -> None:
    settings, models = speech_models
    request = speech_request(settings, shared_data / "diarization" / "sample.wav", num_speakers=3)
    transcript = diarize.run(models.get_diarizer(), request)
    assert transcript.speakers == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]


def test_diarize_stage_alone_uses_vad_regions(speech_models, shared_data: Path) -> None:
    settings, models = speech_models
    request = speech_request(settings, shared_data / "diarization" / "sample.wav")
    transcript = diarize.run(models.get_diarizer(), request)
    assert transcript.segments == [] and transcript.speakers == ["SPEAKER_00", "SPEAKER_01"]
    error = der(shared_data / "diarization" / "sample.rttm", transcript.speaker_turns)
    print(f"sample.wav DER, diarize stage alone (Silero VAD regions): {error:.3f}")
    assert error <= SAMPLE_DER_MAX


def test_clustering_memory_stays_linear() -> None:
    """60 minutes at one window per 0.4 s is 9000 windows; clustering them must not build a 9000² matrix."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 256))
    points = centres[rng.integers(0, 2, 9000)] + 0.3 * rng.normal(size=(9000, 256))
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    tracemalloc.start()
    labels = clustering.cluster_embeddings(points, None, 1, 8)
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak_bytes < 9000 * 9000 * 8 / 4, f"peak {peak_bytes / 1e6:.0f} MB"
    assert len(np.unique(labels)) == 2


def _word(start: float, end: float, text: str) -> Word:
    return Word(start, end, text, 0.9)


def test_words_get_the_most_overlapping_turn_and_segments_split_at_changes() -> None:
    words = [_word(0.0, 0.4, " Hello"), _word(0.5, 0.9, " there."), _word(1.0, 1.4, " Hi"), _word(1.5, 2.0, " Bob.")]
    transcript = Transcript(
        segments=[Segment(0, 0.0, 2.0, "Hello there. Hi Bob.", words)],
        language="en", language_probability=1.0, duration_s=2.0, model="tiny.en",
        speaker_turns=[SpeakerTurn(0.0, 0.95, "SPEAKER_00"), SpeakerTurn(0.95, 2.0, "SPEAKER_01")],
    )
    result = assign_speakers(transcript)
    assert [s.text for s in result.segments] == ["Hello there.", "Hi Bob."]
    assert [s.speaker for s in result.segments] == ["SPEAKER_00", "SPEAKER_01"]
    assert [s.id for s in result.segments] == [0, 1]
    assert result.segments[0].start == 0.0 and result.segments[1].end == 2.0
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]


def test_word_outside_every_turn_takes_the_nearest() -> None:
    words = [_word(0.0, 0.3, " a"), _word(2.0, 2.2, " b"), _word(9.0, 9.5, " c")]
    segments = [Segment(0, 0.0, 9.5, "a b c", words)]
    transcript = Transcript(
        segments=segments, language="en", language_probability=1.0, duration_s=10.0, model="m",
        speaker_turns=[SpeakerTurn(0.0, 1.0, "SPEAKER_00"), SpeakerTurn(8.0, 9.6, "SPEAKER_01")],
    )
    result = assign_speakers(transcript)
    assert [w.speaker for s in result.segments for w in s.words] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]


def test_split_leaves_single_speaker_segments_alone() -> None:
    words = [_word(0.0, 0.4, " one"), _word(0.5, 0.9, " two")]
    for word in words:
        word.speaker = "SPEAKER_00"
    segment = Segment(3, 0.0, 1.0, "one two", words, speaker="SPEAKER_00")
    assert split_at_speaker_changes([segment]) == [segment]
