"""Summaries with the real SmolLM2 model: one-shot, map-reduce past n_ctx, and the output cleanup."""

from __future__ import annotations

import json

import pytest

from isoscribe.config import LlmSettings
from isoscribe.llm import LlamaCppBackend
from isoscribe.llm_summary import (
    Summarizer,
    Templates,
    clean_summary,
    pack_lines,
    parse_action_items,
    reported_speech,
)
from summary_fixtures import long_transcript_text, stm_dialogue_text


def _words(text: str) -> int:
    return len(text.split())


def test_pack_lines_fills_chunks_to_the_budget_without_losing_or_reordering_lines():
    lines = [f"SPEAKER_0{i % 2}: line {i} has some words" for i in range(20)]
    chunks = pack_lines(lines, budget_tokens=20, count_tokens=_words)
    assert len(chunks) > 1
    assert "\n".join(chunks).splitlines() == lines
    assert all(sum(_words(line) + 1 for line in chunk.splitlines()) <= 20 for chunk in chunks)


def test_pack_lines_cuts_an_overlong_line_between_words_and_repeats_its_speaker_label():
    line = "Diane: " + " ".join(f"w{i}" for i in range(30))
    chunks = pack_lines([line], budget_tokens=10, count_tokens=_words)
    assert len(chunks) > 1
    assert all(chunk.startswith("Diane: ") for chunk in chunks)
    assert " ".join(chunk.removeprefix("Diane: ") for chunk in chunks) == line.removeprefix("Diane: ")


def test_labelled_lines_reach_the_model_as_reported_speech():
    assert reported_speech("SPEAKER_00: Hello? Anyone there?") == 'SPEAKER_00 said: "Hello? Anyone there?"'
    assert reported_speech("Diane Smith: Hi.") == 'Diane Smith said: "Hi."'
    assert reported_speech("And so, my fellow Americans: ask not") == "And so, my fellow Americans: ask not"


def test_clean_summary_drops_label_repeats_loops_and_a_cut_off_tail():
    raw = (
        "**Summary:** Diane and Sheila meet on a call. Diane and Sheila meet on a call.\n"
        "- They both come from Chicago Chicago Chicago Chicago.\n"
        "They talk about New Jersey and"
    )
    assert clean_summary(raw) == "Diane and Sheila meet on a call. They both come from Chicago."


def test_clean_summary_drops_transcript_lines_the_model_copied_unless_nothing_else_is_left():
    raw = 'Diane said: "Hello? I did not know." Sheila said: "Oh." They are both from Chicago.'
    assert clean_summary(raw) == "They are both from Chicago."
    assert clean_summary('Sheila: "I am from Texas." They are both from Chicago.') == "They are both from Chicago."
    assert clean_summary('Diane said: "Hello."') == 'Diane said: "Hello."'


def test_clean_summary_caps_the_length():
    raw = " ".join(f"Sentence number {i} is here." for i in range(400))
    cleaned = clean_summary(raw)
    assert 0 < len(cleaned) <= 1500 and cleaned.endswith(".")


def test_parse_action_items_reads_bullets_and_numbers_and_skips_none_and_duplicates():
    text = "Here are the items:\n- Send the report to Sheila.\n2. Book a room\n* send the report to sheila\n- None\n"
    assert parse_action_items(text) == ["Send the report to Sheila.", "Book a room"]
    assert parse_action_items("None") == []
    assert parse_action_items("- There are no action items.") == []
    assert parse_action_items('1. Ben said: "I will book the room."') == ["Ben: I will book the room."]
    (long_item,) = parse_action_items("- " + " ".join(f"step{i}" for i in range(100)))
    assert len(long_item) <= 200 and long_item.startswith("step0 step1") and long_item.endswith("…")


def test_templates_must_keep_their_placeholder():
    with pytest.raises(ValueError, match="summary_prompt.*{transcript}"):
        Templates.from_settings(LlmSettings(summary_prompt="Summarize this."))
    custom = Templates.from_settings(LlmSettings(reduce_prompt="Merge: {summaries}"))
    assert custom.reduce == "Merge: {summaries}"


@pytest.fixture(scope="module")
def small_context_backend() -> tuple[LlamaCppBackend, LlmSettings]:
    settings = LlmSettings(n_ctx=512, max_tokens=48, threads=1)
    return LlamaCppBackend(settings), settings


@pytest.mark.slow
def test_smollm2_summarizes_a_real_diarized_dialogue(small_context_backend, shared_data):
    backend, settings = small_context_backend
    summary = Summarizer(backend, settings).summarize(stm_dialogue_text(shared_data))
    assert summary.summary.strip()
    assert summary.warning is None
    assert summary.chunks == 1
    assert summary.model.endswith(".gguf")
    assert summary.prompt_tokens > 100 and 0 < summary.completion_tokens <= 2 * settings.max_tokens
    assert len(summary.summary) <= 1500 and len(summary.model_action_items) <= 10


@pytest.mark.slow
def test_map_reduce_summarizes_a_transcript_longer_than_the_context(small_context_backend, shared_data):
    backend, settings = small_context_backend
    text = long_transcript_text(shared_data)
    assert backend.count_tokens(text) > settings.n_ctx
    summary = Summarizer(backend, settings).summarize(text)
    assert summary.chunks > 1
    assert summary.summary.strip()
    assert summary.prompt_tokens > backend.count_tokens(text)


@pytest.mark.slow
def test_a_context_too_small_for_max_tokens_is_a_clear_error(small_context_backend):
    backend, _ = small_context_backend
    with pytest.raises(ValueError, match="raise n_ctx or lower max_tokens"):
        Summarizer(backend, LlmSettings(n_ctx=512, max_tokens=480)).summarize("Diane: hello")


@pytest.mark.slow
def test_an_empty_transcript_is_not_sent_to_the_model(small_context_backend):
    backend, settings = small_context_backend
    summary = Summarizer(backend, settings).summarize("  \n\n")
    assert summary.summary == "" and summary.chunks == 0 and summary.warning


@pytest.mark.slow
def test_smollm2_finds_the_demo_dialogues_action_items_and_none_in_a_speech(demo_dialogue, shared_data):
    from isoscribe.demo import dialogue_script_path

    settings = LlmSettings(threads=1)
    summarizer = Summarizer(LlamaCppBackend(settings), settings)
    turns = json.loads(dialogue_script_path(demo_dialogue).read_text())["turns"]
    labels = {speaker: f"SPEAKER_{index:02d}" for index, speaker in enumerate(dict.fromkeys(t["speaker"] for t in turns))}
    meeting = "\n".join(f"{labels[t['speaker']]}: {t['text']}" for t in turns)
    items = summarizer.summarize(meeting).model_action_items
    assert any("login" in item.lower() for item in items), items
    assert summarizer.summarize((shared_data / "jfk" / "jfk.txt").read_text()).model_action_items == []
