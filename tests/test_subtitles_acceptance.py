"""Issue 26's subtitle acceptance on real transcripts: with the default layout, on a held-out rendered
three-voice meeting and on a 10-minute file of real speech, every cue is at most 2 lines of 42 characters, 7 s and
20 characters per second, and no cue has two speakers; the karaoke variants parse with ``srt`` and
``webvtt-py``. The batch (``isoscribe run``) transcribes and diarizes both files once, with the real models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import srt
from asr_helpers import run_cli
from subtitle_checks import SRT_LABEL, check_readable, srt_blocks, vtt_captions

from isoscribe.benchmarks.asr import make_long_audio
from isoscribe.benchmarks.meetings import make_meeting
from isoscribe.outputs import to_srt, to_vtt
from isoscribe.subtitles import SubtitleLayout, layout_cues
from isoscribe.transcript import Transcript

pytestmark = pytest.mark.slow

RECORDINGS = ("meeting", "ten_minutes")
MEETING_SEED = 200
"""A held-out meeting: no threshold was chosen on seed 200 (the diarizer's count rule is chosen on rendered
seeds 100-104, formerly 0-7); the README's subtitle figures come from it."""
LONG_S = 600.0


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The batch's json, srt and vtt of both recordings (in ``out/NAME/``)."""
    folder = tmp_path_factory.mktemp("subtitle-acceptance")
    meeting = make_meeting(folder / "meeting.wav", speakers=3, seed=MEETING_SEED)
    long_file = make_long_audio(shared_data, folder / "ten_minutes.wav", LONG_S)
    out = folder / "out"
    result = run_cli(
        "run", str(meeting), str(long_file), "--out", str(out), "--diarize", "--no-summarize",
        "--formats", "json,srt,vtt", "--no-progress", "--workers", "1", cwd=folder, timeout_s=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _transcript(batch_out: Path, stem: str) -> Transcript:
    return Transcript.from_dict(json.loads((batch_out / stem / f"{stem}.json").read_text()))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("stem", RECORDINGS)
def test_default_cues_are_readable_and_each_has_one_speaker(batch_out: Path, stem: str) -> None:
    transcript = _transcript(batch_out, stem)
    assert len(transcript.speakers) >= 2, transcript.speakers
    if stem == "ten_minutes":
        assert transcript.duration_s >= LONG_S - 1
    blocks = srt_blocks((batch_out / stem / f"{stem}.srt").read_text())
    check_readable(blocks, audio_end_s=transcript.duration_s)
    labels = [SRT_LABEL.findall(text) for *_, text in blocks]
    assert all(len(found) == 1 for found in labels), [b for b, found in zip(blocks, labels) if len(found) != 1]
    assert all(text.count("[") == 1 for *_, text in blocks)
    captions = vtt_captions((batch_out / stem / f"{stem}.vtt").read_text())
    assert len(captions) == len(blocks)
    assert all(c.voice in transcript.speakers and c.raw_text.count("<v ") == 1 for c in captions)
    assert [c.voice for c in captions] == [found[0] for found in labels]
    cues = layout_cues(transcript)
    assert all(len({word.speaker for word in cue.words}) == 1 for cue in cues), "a cue mixes speakers"
    spoken = "".join(word.text for segment in transcript.segments for word in segment.words).split()
    assert " ".join(cue.text for cue in cues).split() == spoken, "the cues say the words, in order, each once"
    widest = max(len(line) for *_, text in blocks for line in text.splitlines())
    longest_s = max(end - start for start, end, _ in blocks)
    fastest = max(len(SRT_LABEL.sub("", " ".join(text.splitlines()))) / (end - start) for start, end, text in blocks)
    print(f"{stem}: {transcript.duration_s:.0f} s, {len(transcript.speakers)} speakers, {len(blocks)} cues; "
          f"widest line {widest} chars, longest cue {longest_s:.2f} s, fastest {fastest:.1f} chars/s")


@pytest.mark.timeout(1800)
def test_karaoke_cues_of_a_real_meeting_parse_with_srt_and_webvtt(batch_out: Path) -> None:
    transcript = _transcript(batch_out, "meeting")
    karaoke = SubtitleLayout(highlight_words=True)
    cues = layout_cues(transcript, karaoke)
    cue_words = sum(len(cue.words) for cue in cues)
    frames = list(srt.parse(to_srt(transcript, karaoke)))
    # a frame per word, but none for a word without time of its own (Whisper gives some zero length)
    assert 0.9 * cue_words <= len(frames) <= cue_words, "one SRT frame per word that lasts"
    assert all(frame.end > frame.start for frame in frames)
    assert all(len(re.findall(r"<u>.+?</u>", frame.content)) == 1 for frame in frames)
    captions = vtt_captions(to_vtt(transcript, karaoke))
    assert len(captions) == len(cues)
    timestamps = [re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", caption.raw_text) for caption in captions]
    assert 0.9 * (cue_words - len(captions)) <= sum(map(len, timestamps)) <= cue_words - len(captions), (
        "a timestamp before each word but a cue's first"
    )
    assert all(stamps == sorted(set(stamps)) for stamps in timestamps), "each later than the one before"
