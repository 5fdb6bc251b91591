"""Beyond the engine's defaults: language per segment, repetition loops cut, on real model output.

The recordings are rendered with espeak-ng (``isoscribe.benchmarks.meetings``); the multilingual
``base`` model decodes them. ``isoscribe bench accuracy`` runs the longer comparison.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from isoscribe.benchmarks.accuracy import loops_in
from isoscribe.benchmarks.meetings import MIXED_LANGUAGE_SCRIPT, make_mixed_language
from isoscribe.config import load_settings
from isoscribe.outputs import to_json, to_tsv
from isoscribe.repetition import find_loop, words_of
from isoscribe.openai_shapes import verbose_json
from isoscribe.stages import transcribe, vad
from isoscribe.stages.loops import LoopGuard, truncate
from isoscribe.stages.options import transcription_options
from isoscribe.transcript import SpeechRequest, Transcript

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model():
    return transcribe.load(load_settings(overrides={"asr": {"model": "base", "device": "cpu"}}))


def _with(model: transcribe.Transcriber, **asr: object) -> transcribe.Transcriber:
    return transcribe.Transcriber(
        model.whisper, model.model_name, model.device, model.compute_type, model.english_only,
        model.asr.model_copy(update=asr),
    )


def test_loop_finder_flags_decoder_loops_not_speech() -> None:
    assert find_loop(words_of("As met a nolshun, midden, arbe, me, me, me, me, me, me, me, me, me, me.")) is not None
    zook = "I am very happy to have a meal, my dear Zook, I am very happy to have a meal, my dear Zook, I am very happy"
    loop = find_loop(words_of(zook))
    assert loop is not None and (loop.start, loop.period, loop.repeats_from) == (0, 11, 11)
    for speech in ("here's some more words words words words um", "thank you, thank you, thank you", "no no no no"):
        assert find_loop(words_of(speech)) is None, speech


def test_language_switch_keeps_both_languages_in_their_own_words(base_model, tmp_path: Path) -> None:
    script = MIXED_LANGUAGE_SCRIPT[1:5]
    audio_path = make_mixed_language(tmp_path / "switch.wav", script)
    from isoscribe.audio import decode_audio

    streamed = []
    result = transcribe.transcribe(
        base_model, decode_audio(audio_path), SpeechRequest(str(audio_path)), on_segment=streamed.append
    )
    turns = json.loads(audio_path.with_suffix(".script.json").read_text())["turns"]
    switch_s = turns[2]["start"]
    english = [s for s in result.segments if s.end <= switch_s]
    german = [s for s in result.segments if s.start >= switch_s - 0.5]
    print([(round(s.start, 1), s.language, s.text) for s in result.segments])
    assert result.languages == ["en", "de"]
    assert english and {s.language for s in english} == {"en"}
    assert german and {s.language for s in german} == {"de"}
    german_words = set(words_of(" ".join(s.text for s in german)))
    assert "hamburg" in german_words
    assert len({"wir", "mit", "dem", "und", "den", "aber", "einen", "nehmen"} & german_words) >= 4
    assert "permission" in words_of(" ".join(s.text for s in english))
    assert [s.id for s in streamed] == [s.id for s in result.segments]
    rows = list(csv.DictReader(io.StringIO(to_tsv(result)), delimiter="\t"))
    assert [row["language"] for row in rows] == [s.language for s in result.segments]
    assert {s.get("language") for s in verbose_json(result)["segments"]} == {"english", "german"}
    assert Transcript.from_dict(json.loads(to_json(result))).segments[-1].language == "de"


def test_language_per_segment_off_decodes_one_language(base_model, tmp_path: Path) -> None:
    audio_path = make_mixed_language(tmp_path / "switch.wav", MIXED_LANGUAGE_SCRIPT[2:4])
    from isoscribe.audio import decode_audio

    result = transcribe.transcribe(
        _with(base_model, language_per_segment=False), decode_audio(audio_path), SpeechRequest(str(audio_path))
    )
    assert len(result.languages) == 1 and {s.language for s in result.segments} == set(result.languages)


def test_a_looping_decode_is_cut_and_reported(base_model, tmp_path: Path) -> None:
    """German (after one English sentence) read as English without VAD: faster-whisper loops ("me, me, me, …")."""
    audio_path = make_mixed_language(tmp_path / "german.wav", MIXED_LANGUAGE_SCRIPT[2:])
    from isoscribe.audio import decode_audio

    audio = decode_audio(audio_path)
    request = SpeechRequest(str(audio_path), language="en", word_timestamps=False)
    unguarded = transcribe.transcribe(_with(base_model, vad_filter=False, loop_detection=False), audio, request)
    print([s.text for s in unguarded.segments])
    assert loops_in([s.text for s in unguarded.segments]) >= 1, "the clip no longer makes the model loop"
    guarded = transcribe.transcribe(_with(base_model, vad_filter=False), audio, request)
    print([s.text for s in guarded.segments], guarded.warnings)
    assert loops_in([s.text for s in guarded.segments]) == 0
    assert guarded.warnings and all(" s: " in w for w in guarded.warnings)
    assert guarded.segments and all(s.text for s in guarded.segments)


def test_english_only_model_reports_english_per_segment(shared_data: Path) -> None:
    model = transcribe.load(load_settings(overrides={"asr": {"model": "tiny.en", "device": "cpu"}}))
    result = transcribe.run(model, SpeechRequest(str(shared_data / "jfk" / "jfk.wav")))
    assert model.english_only
    assert result.languages == ["en"] and {s.language for s in result.segments} == {"en"}
    assert result.warnings == []


def test_a_loop_that_survives_decoding_again_is_cut_after_its_first_copy() -> None:
    from isoscribe.transcript import Segment, Word

    texts = [" As", " met", " a", " nolshun,"] + [" me,"] * 10
    words = [Word(float(i), i + 0.5, text, 0.5) for i, text in enumerate(texts)]
    segment = Segment(0, 0.0, 14.0, "".join(texts).strip(), words, language="en")
    loop = find_loop(words_of(segment.text))
    cut = truncate(segment, loop.repeats_from)
    assert cut.text == "As met a nolshun, me,"
    assert [w.text for w in cut.words] == texts[:5] and cut.end == 4.5


def test_hallucination_silence_threshold_only_with_word_timestamps() -> None:
    asr = load_settings().asr
    assert transcription_options(asr, SpeechRequest("a.wav")).hallucination_silence_threshold == 2.0
    no_words = SpeechRequest("a.wav", word_timestamps=False)
    assert transcription_options(asr, no_words).hallucination_silence_threshold is None
    off = asr.model_copy(update={"hallucination_silence_threshold_s": 0})
    assert transcription_options(off, SpeechRequest("a.wav")).hallucination_silence_threshold is None


@pytest.fixture(scope="module")
def tiny_model():
    return transcribe.load(load_settings(overrides={"asr": {"model": "tiny.en", "device": "cpu"}}))


@pytest.fixture(scope="module")
def acoustic_corpus(shared_data: Path, manifest: list[dict]):
    """27 s of one speaker, first word at 1.05 s (MFA TextGrid), "thanks" last at 25.25 s."""
    from isoscribe.audio import decode_audio

    path = shared_data / "long" / "acoustic_corpus.wav"
    reference = next(c["reference_text"] for c in manifest if c["path"] == "long/acoustic_corpus.wav")
    return path, decode_audio(path), reference


def test_only_silence_worth_cutting_is_cut_before_decoding(acoustic_corpus) -> None:
    import numpy as np

    _, audio, _ = acoustic_corpus
    speech = vad.detect(audio)
    chunks, onset = speech.decoder_chunks(0, audio.size, keep_start=True, keep_end=True)
    assert chunks == [{"start": 0, "end": audio.size}], "a 0.7 s lead is no silence worth cutting"
    assert onset / 16000 == pytest.approx(1.05, abs=0.2)
    at_a_cut, _ = speech.decoder_chunks(0, audio.size, keep_start=False, keep_end=True)
    assert at_a_cut[0]["start"] / 16000 == pytest.approx(0.65, abs=0.2), "after a piece cut, the lead is cut"
    silence = np.zeros(3 * 16000, dtype=np.float32)
    padded = np.concatenate([silence, audio, silence])
    chunks, onset = vad.detect(padded).decoder_chunks(0, padded.size, True, True)
    assert chunks[0]["start"] / 16000 == pytest.approx(3.7, abs=0.2) and onset / 16000 == pytest.approx(4.05, abs=0.2)
    assert chunks[-1]["end"] < audio.size + 6 * 16000 - 16000


def test_speech_the_decoder_skipped_is_decoded_again(tiny_model, acoustic_corpus) -> None:
    """Conditioned on the text before it, tiny.en takes the last word ("thanks") for silence."""
    from isoscribe.benchmarks.accuracy import wer

    path, audio, reference = acoustic_corpus
    ours = transcribe.transcribe(tiny_model, audio, SpeechRequest(str(path)))
    without = transcribe.transcribe(_with(tiny_model, recover_skipped_speech=False), audio, SpeechRequest(str(path)))
    direct, _ = tiny_model.whisper.transcribe(audio)
    print(ours.text, "|", without.text)
    assert words_of(ours.text)[-1] == "thanks" and words_of(without.text)[-1] != "thanks"
    assert wer(reference, ours.text) <= wer(reference, " ".join(s.text for s in direct))
    assert ours.segments[0].words[0].start == pytest.approx(1.05, abs=0.2), "the first word starts with the speech"
    assert [s.id for s in ours.segments] == list(range(len(ours.segments)))
    assert all(a.end <= b.start for a, b in zip(ours.segments, ours.segments[1:]))


def test_a_long_clause_repeated_as_the_next_segment_is_decoded_again() -> None:
    from isoscribe.transcript import Segment

    guard = LoopGuard(None)
    clause = "Am Montag fahren wir mit dem Zug nach Hamburg."
    assert guard._suspicion(Segment(0, 0.0, 5.0, clause)) is None
    guard._remember([Segment(0, 0.0, 5.0, clause)])
    assert guard._suspicion(Segment(1, 5.0, 10.0, clause)) == "repeated_segment"
    guard._remember([Segment(2, 10.0, 11.0, "Thank you very much.")])
    assert guard._suspicion(Segment(3, 11.0, 12.0, "Thank you very much.")) is None, "a short phrase may come twice"


def _recovered(tiny_model, audio, path) -> list:
    """The segments only a transcript made with skipped-speech recovery has, and that transcript."""
    ours = transcribe.transcribe(tiny_model, audio, SpeechRequest(str(path)))
    without = transcribe.transcribe(_with(tiny_model, recover_skipped_speech=False), audio, SpeechRequest(str(path)))
    main = {(s.start, s.end, s.text) for s in without.segments}
    return [s for s in ours.segments if (s.start, s.end, s.text) not in main], ours


def test_the_demo_transcript_is_its_script_without_stray_fragments(demo_dialogue: Path) -> None:
    """The default pipeline's speech stage and speaker assignment (tiny.en, diarization into two speakers
    as ``isoscribe demo``): one segment per turn, each starting with its turn and given its speaker, no
    recovered fragment ("More." before Bob's "Morning Alice" was one). Whisper's own segments may join two
    turns (on AVX2 kernels it joins the last two): the split at the speaker change is part of the pipeline."""
    from isoscribe.benchmarks.accuracy import wer
    from isoscribe.pipeline import speech_request
    from isoscribe.speakers import assign_speakers
    from isoscribe.stages import speech

    settings = load_settings(overrides={"asr": {"device": "cpu"}, "diarization": {"enabled": True, "device": "cpu"}})
    models = speech.load(settings)
    request = speech_request(settings, demo_dialogue, diarize=True, num_speakers=2)
    transcript = assign_speakers(speech.run(models, request))
    without_recovery = _with(models.transcriber, recover_skipped_speech=False)
    without = assign_speakers(speech.run(speech.SpeechModels(settings, without_recovery, models.diarizer), request))
    turns = json.loads(demo_dialogue.with_suffix(".script.json").read_text())["turns"]
    print([(round(s.start, 2), s.text) for s in transcript.segments])
    assert [s.text for s in transcript.segments] == [s.text for s in without.segments], "nothing recovered"
    assert "more" not in words_of(transcript.text)
    assert len(transcript.segments) == len(turns)
    for segment, turn in zip(transcript.segments, turns):
        assert wer(turn["text"], segment.text) <= 0.3, (turn["text"], segment.text)
        assert segment.words[0].start == pytest.approx(turn["start"], abs=0.17), "the first word starts with the turn"
    assert wer(" ".join(t["text"] for t in turns), transcript.text) <= 0.12
    assert len(transcript.speakers) == 2
    assert len(set(zip((t["speaker"] for t in turns), (s.speaker for s in transcript.segments)))) == 2


def test_recovered_fragments_never_repeat_their_neighbours_on_the_shared_clips(
    tiny_model, shared_data: Path, manifest: list[dict]
) -> None:
    """Every shared real clip with a reference: what recovery adds shares no word (nor a piece of one)
    with the words decoded within 1 s of it; acoustic_corpus's final "thanks" is still recovered."""
    from isoscribe.audio import decode_audio

    recovered_texts = {}
    for clip in (c for c in manifest if c["reference_text"]):
        audio = decode_audio(shared_data / clip["path"])
        fragments, ours = _recovered(tiny_model, audio, shared_data / clip["path"])
        recovered_texts[clip["path"]] = [s.text for s in fragments]
        decoded = [w for s in ours.segments if s not in fragments for w in s.words]
        for fragment in fragments:
            near = {t for w in decoded if w.end >= fragment.start - 1 and w.start <= fragment.end + 1 for t in words_of(w.text)}
            for word in words_of(fragment.text):
                assert not any(word in other for other in near), (clip["path"], fragment.text, near)
    print(recovered_texts)
    assert recovered_texts["long/acoustic_corpus.wav"] == ["Thanks."]


def test_a_stray_fragment_is_told_from_new_speech(demo_dialogue: Path, acoustic_corpus) -> None:
    """The issue's "More." (6.70-6.72 s, before "Good morning" decoded from 7.00 s) and acoustic_corpus's
    "Thanks." (24.94-25.20 s, after "that should be all"), judged against the real VAD of each file."""
    from isoscribe.audio import decode_audio
    from isoscribe.stages.recovery import stray_reason, with_onsets
    from isoscribe.transcript import Segment, Word

    speech = vad.detect(decode_audio(demo_dialogue))
    friday = Word(5.30, 5.78, " Friday.", 0.9)
    good, morning = Word(7.00, 7.14, " Good", 0.9), Word(7.14, 7.50, " morning,", 0.9)
    more = Segment(1, 6.70, 6.72, "More.", [Word(6.70, 6.72, " More.", 0.9)])
    assert stray_reason(more, [friday, good, morning], speech) == "repeats the words around it"
    more_alone = Segment(1, 6.70, 6.72, "Yes.", [Word(6.70, 6.72, " Yes.", 0.9)])
    assert stray_reason(more_alone, [friday, good, morning], speech) == "one short word run into the speech around it"
    inside = Segment(1, 6.85, 7.10, "Yes.", [Word(6.85, 7.10, " Yes.", 0.9)])
    assert stray_reason(inside, [friday, good, morning], speech).startswith("inside the decoded word")
    [moved] = with_onsets(iter([Segment(0, 7.00, 7.50, "Good morning,", [good, morning])]), speech, 5.78)
    assert moved.start == moved.words[0].start == pytest.approx(6.8, abs=0.05), "starts where the VAD hears speech"

    _, audio, _ = acoustic_corpus
    corpus_speech = vad.detect(audio)
    be, all_ = Word(24.30, 24.60, " be", 0.9), Word(24.60, 24.94, " all", 0.9)
    thanks = Segment(4, 24.94, 25.20, "Thanks.", [Word(24.94, 25.20, " Thanks.", 0.87)])
    assert stray_reason(thanks, [be, all_], corpus_speech) is None
    unsure = Segment(4, 24.94, 25.20, "Thanks.", [Word(24.94, 25.20, " Thanks.", 0.45)])
    assert stray_reason(unsure, [be, all_], corpus_speech) == "unsure of its words"
