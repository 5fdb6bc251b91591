"""Grounded summaries of the rendered demo dialogue: the real speech and summary stages in isolated
workers, then ``ground_summary`` in this process."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from isoscribe.config import load_settings
from isoscribe.demo import dialogue_script_path
from isoscribe.grounding import Evidence, ground_summary, is_supported, split_sentences
from isoscribe.isolation import Limits, StageSpec, run_isolated
from isoscribe.pipeline import speech_request, summary_text
from isoscribe.speakers import assign_speakers
from isoscribe.transcript import SummaryRequest, Transcript

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dialogue_transcript(demo_dialogue: Path) -> Transcript:
    settings = load_settings(overrides={"diarization": {"enabled": True}})
    request = speech_request(settings, demo_dialogue, diarize=True, num_speakers=2)
    result = run_isolated(StageSpec("isoscribe.stages.speech", settings, "speech"), request, Limits(timeout_s=600))
    return assign_speakers(result.value)


def _label_of(script_speaker: str, demo_dialogue: Path, transcript: Transcript) -> str:
    """The diarized label whose words fall in that scripted speaker's turns."""
    turns = json.loads(dialogue_script_path(demo_dialogue).read_text())["turns"]
    heard = Counter(
        word.speaker
        for turn in turns
        if turn["speaker"] == script_speaker
        for segment in transcript.segments
        for word in segment.words
        if turn["start"] <= (word.start + word.end) / 2 <= turn["end"]
    )
    return heard.most_common(1)[0][0]


def test_owner_and_due_date_come_from_the_rendered_dialogue(dialogue_transcript, demo_dialogue):
    bob = _label_of("bob", demo_dialogue, dialogue_transcript)
    alice = _label_of("alice", demo_dialogue, dialogue_transcript)
    assert bob != alice
    items = ground_summary(None, dialogue_transcript).action_items
    # The date, not its preposition: tiny.en hears this espeak voice's "by Wednesday" as "on Wednesday".
    owners_and_dates = {(item.owner, (item.due or "").lower().split()[-1]) for item in items if item.due}
    assert (bob, "wednesday") in owners_and_dates, items
    assert (alice, "today") in owners_and_dates, items
    login = next(item for item in items if item.owner == bob)
    assert "login" in login.task.lower() and "login" in login.source.quote.lower()
    assert login.source.speaker == alice and login.source.start < login.source.end
    assert all("Friday" not in (item.due or "") for item in items), "shipping on Friday is nobody's task"


def test_a_grounded_model_summary_prints_only_supported_sentences(dialogue_transcript):
    settings = load_settings(overrides={"llm": {"threads": 1}})
    stage = StageSpec("isoscribe.stages.summarize", settings, "summary")
    request = SummaryRequest(transcript_text=summary_text(dialogue_transcript))
    raw = run_isolated(stage, request, Limits(timeout_s=600)).value
    grounded = ground_summary(raw, dialogue_transcript)
    evidence = Evidence.of(dialogue_transcript)
    assert grounded.grounded and grounded.model_action_items == []
    assert grounded.sentences_checked == len(split_sentences(raw.summary))
    assert all(is_supported(sentence, evidence) for sentence in split_sentences(grounded.summary))
    assert len(grounded.action_items) >= 2
