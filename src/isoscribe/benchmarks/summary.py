"""``isoscribe bench summary``: action items and grounded summaries on scripted, rendered meetings.

Five scripted meetings (two or three espeak-ng voices each, a different set per meeting) hold
commitments, requests with owners and deadlines, decisions and distractors: a person talking about
someone else's plan, a declined request, "by the way". Each is rendered with ``demo.render_script``,
run through the real speech stage (transcription + diarization, isolated worker) and the real
summary stage (default model, isolated worker), then ``ground_summary`` in this process. The voices
are espeak-ng's male variants: with its female variants tiny.en drops "by" and "'ll" too often
("please write the release notes my Thursday") for the bench to measure extraction rather than ASR.

Reported:
* action-item precision and recall: a printed item matches a scripted one when its source span
  overlaps the scripted turns, its owner is the diarized label of the scripted speaker (or that
  speaker's name) and its ``due`` names the scripted date (both absent, or the same words once a
  leading "by", "before", "on" or "until" is set aside);
* the share of the model's summary sentences that fail the grounding check (before it drops them),
  and the number of printed sentences, items and decisions that fail it (goal: 0).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isoscribe.action_items import split_sentences
from isoscribe.config import Settings
from isoscribe.demo import dialogue_script_path, render_script
from isoscribe.files import write_atomic
from isoscribe.grounding import Evidence, ground_summary, is_supported
from isoscribe.isolation import StageSpec, WorkerPool
from isoscribe.logs import log_event
from isoscribe.pipeline import speech_request, summary_text
from isoscribe.pipeline.stages import stage_limits
from isoscribe.speakers import assign_speakers
from isoscribe.transcript import ActionItem, Summary, SummaryRequest, Transcript

__all__ = ["main", "MEETINGS", "Meeting", "ScriptedItem", "score_items"]

logger = logging.getLogger("isoscribe.bench.summary")


@dataclass(frozen=True)
class ScriptedItem:
    turns: tuple[int, ...]
    """Script turns the item is said in (a request and its answer, or one commitment)."""
    owner: str
    due: str | None


@dataclass(frozen=True)
class Meeting:
    name: str
    voices: dict[str, tuple[str, int, int]]
    script: tuple[tuple[str, str], ...]
    items: tuple[ScriptedItem, ...]


MEETINGS = (
    Meeting(
        "trade_fair",
        {"alice": ("en-us+m3", 70, 150), "bob": ("en-us+m2", 25, 150), "carol": ("en-us+klatt", 50, 145)},
        (
            ("alice", "Good morning everyone. Let's plan the trade fair stand for next month."),
            ("bob", "Morning Alice. The booth is booked, but we still need posters and a new price list."),
            ("alice", "Bob, can you order the posters by Tuesday?"),
            ("bob", "Yes, I will order them by Tuesday."),
            ("carol", "My sister is going to visit the fair as well. She plans to fly in next week."),
            ("alice", "Nice. Carol, could you update the price list before the end of the month?"),
            ("carol", "Sure, I can do that before the end of the month."),
            ("bob", "Great. So we agreed to keep the stand small this year."),
        ),
        (ScriptedItem((2, 3), "bob", "by Tuesday"), ScriptedItem((5, 6), "carol", "before the end of the month")),
    ),
    Meeting(
        "website",
        {"kate": ("en-us+m2", 60, 150), "tom": ("en-gb+m4", 30, 145)},
        (
            ("kate", "Hi Tom. The new website goes live on Friday."),
            ("tom", "Hi Kate. The contact form still sends emails to the old address."),
            ("kate", "Okay. I will fix the contact form tomorrow."),
            ("tom", "Good. Our designer said she will redo the logo next year, but that is her own project."),
            ("kate", "Fine. Tom, please write the release notes by Thursday."),
            ("tom", "Will do. I'll also send the launch email on Friday morning."),
            ("kate", "Perfect. The plan is to announce it on social media after lunch."),
            ("tom", "Kate, can you also check the mobile layout?"),
            ("kate", "No, sorry, I am on holiday next week."),
        ),
        (
            ScriptedItem((2,), "kate", "tomorrow"),
            ScriptedItem((4, 5), "tom", "by Thursday"),
            ScriptedItem((5,), "tom", "on Friday morning"),
        ),
    ),
    Meeting(
        "budget",
        {"sarah": ("en-us+m3", 70, 150), "mark": ("en-us+m6", 45, 150), "emma": ("en-us+m2", 25, 150)},
        (
            ("sarah", "Thanks for joining. We need to close the budget for the third quarter."),
            ("mark", "The travel costs are two thousand euros over the plan."),
            ("emma", "I can check the travel invoices by Wednesday."),
            ("sarah", "Thank you Emma. Mark, could you prepare a short report for the board?"),
            ("mark", "Sure, I will prepare it."),
            ("emma", "By the way, my manager wants to move the office next year, but that is not our topic."),
            ("sarah", "Right. We decided to freeze new travel until January."),
        ),
        (ScriptedItem((2,), "emma", "by Wednesday"), ScriptedItem((3, 4), "mark", None)),
    ),
    Meeting(
        "hiring",
        {"grace": ("en-us+klatt", 50, 150), "henry": ("en-us+m2", 25, 150)},
        (
            ("grace", "Hello Henry. We have three candidates for the developer job."),
            ("henry", "Hello Grace. I liked the second candidate the most."),
            ("grace", "Me too. Could you invite her for a second interview next week?"),
            ("henry", "Yes, I will do that."),
            ("grace", "Good. I will write the job offer by the end of the week."),
            ("henry", "Our old colleague Peter said he will apply too, but he is joking."),
            ("grace", "Then let's go with the second candidate if the interview goes well."),
        ),
        (ScriptedItem((2, 3), "henry", "next week"), ScriptedItem((4,), "grace", "by the end of the week")),
    ),
    Meeting(
        "office_move",
        {"anna": ("en-us", 50, 150), "frank": ("en-us+m3", 70, 150), "lucy": ("en-gb+m4", 30, 145)},
        (
            ("anna", "Let's talk about the office move in March."),
            ("frank", "I will book the moving company by Monday."),
            ("lucy", "Frank, the movers also need the new address. Can you send them the floor plan?"),
            ("frank", "Sure, I'll send it today."),
            ("anna", "I heard that the other team is going to move in April."),
            ("lucy", "I will pack the meeting room next week."),
            ("anna", "Good. We agreed that everyone packs their own desk."),
        ),
        (
            ScriptedItem((1,), "frank", "by Monday"),
            ScriptedItem((2, 3), "frank", "today"),
            ScriptedItem((5,), "lucy", "next week"),
        ),
    ),
)


def main(quick: bool, results_dir: Path, settings: Settings) -> dict[str, Any]:
    meetings = MEETINGS[:2] if quick else MEETINGS
    with tempfile.TemporaryDirectory(prefix="isoscribe-bench-summary-") as temp:
        runs = _run_meetings(settings, meetings, Path(temp))
    results = _totals(runs)
    results.update(mode="quick" if quick else "full", asr_model=settings.asr.model, meetings=runs)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(results_dir / "summary.json", _json(results))
    return {key: value for key, value in results.items() if key != "meetings"}


def _run_meetings(settings: Settings, meetings: tuple[Meeting, ...], temp: Path) -> list[dict[str, Any]]:
    iso = settings.isolation
    speech = StageSpec("isoscribe.stages.speech", settings, "speech")
    summary = StageSpec("isoscribe.stages.summarize", settings, "summary")
    speech_limits, summary_limits = stage_limits(iso, iso.asr_timeout_s), stage_limits(iso, iso.llm_timeout_s)
    runs = []
    with (
        WorkerPool(speech, size=1, limits=speech_limits) as speech_pool,
        WorkerPool(summary, size=1, limits=summary_limits) as summary_pool,
    ):
        for meeting in meetings:
            audio = render_script(temp / f"{meeting.name}.wav", meeting.script, meeting.voices)
            request = speech_request(settings, audio, diarize=True, num_speakers=len(meeting.voices))
            transcript = assign_speakers(speech_pool.submit(request).result().value)
            raw = summary_pool.submit(SummaryRequest(transcript_text=summary_text(transcript))).result().value
            runs.append(_evaluate(meeting, audio, transcript, raw))
            log_event(logger, "bench_meeting", name=meeting.name, **runs[-1]["counts"])
    return runs


def _evaluate(meeting: Meeting, audio: Path, transcript: Transcript, raw: Summary) -> dict[str, Any]:
    turns = json.loads(dialogue_script_path(audio).read_text(encoding="utf-8"))["turns"]
    labels = _speaker_labels(turns, transcript)
    grounded = ground_summary(raw, transcript)
    matched = score_items(meeting.items, turns, labels, grounded.action_items)
    evidence = Evidence.of(transcript)
    raw_sentences = split_sentences(raw.summary)
    printed = split_sentences(grounded.summary) + [item.task for item in grounded.action_items]
    printed += [decision.text for decision in grounded.decisions]
    return {
        "name": meeting.name,
        "speaker_labels": labels,
        "raw_summary": raw.summary,
        "printed_summary": grounded.summary,
        "action_items": [_item_line(item) for item in grounded.action_items],
        "decisions": [decision.text for decision in grounded.decisions],
        "counts": {
            "scripted_items": len(meeting.items),
            "printed_items": len(grounded.action_items),
            "matched_items": matched,
            "raw_sentences": len(raw_sentences),
            "raw_ungrounded": sum(1 for s in raw_sentences if not is_supported(s, evidence)),
            "printed_ungrounded": sum(1 for text in printed if not is_supported(text, evidence)),
        },
    }


def score_items(
    scripted: tuple[ScriptedItem, ...], turns: list[dict], labels: dict[str, str], printed: list[ActionItem]
) -> int:
    """How many printed items match a scripted one (span overlap, owner, due), each used at most once."""
    unmatched = list(scripted)
    matched = 0
    for item in printed:
        for expected in unmatched:
            if _matches(item, expected, turns, labels):
                unmatched.remove(expected)
                matched += 1
                break
    return matched


def _matches(item: ActionItem, expected: ScriptedItem, turns: list[dict], labels: dict[str, str]) -> bool:
    overlaps = any(item.source.start < turns[i]["end"] and item.source.end > turns[i]["start"] for i in expected.turns)
    owner = (item.owner or "").lower() in (expected.owner, labels.get(expected.owner, "").lower())
    return overlaps and owner and _due_key(item.due) == _due_key(expected.due)


def _due_key(due: str | None) -> str:
    """The date of a deadline: "by Thursday" and "Thursday" (ASR often hears "by" as "my") are one date."""
    words = " ".join(re.findall(r"\w+", (due or "").lower()))
    return re.sub(r"^(?:by|before|on|until|till|no later than)\s+", "", words)


def _speaker_labels(turns: list[dict], transcript: Transcript) -> dict[str, str]:
    """Scripted speaker → the diarized label that overlaps that speaker's turns most."""
    overlap: dict[str, dict[str, float]] = {}
    for turn in turns:
        for spoken in transcript.speaker_turns:
            seconds = min(turn["end"], spoken.end) - max(turn["start"], spoken.start)
            if seconds > 0:
                by_label = overlap.setdefault(turn["speaker"], {})
                by_label[spoken.speaker] = by_label.get(spoken.speaker, 0.0) + seconds
    return {speaker: max(by_label, key=by_label.__getitem__) for speaker, by_label in overlap.items()}


def _totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    total = {key: sum(run["counts"][key] for run in runs) for key in runs[0]["counts"]}
    return {
        "action_item_precision": _ratio(total["matched_items"], total["printed_items"]),
        "action_item_recall": _ratio(total["matched_items"], total["scripted_items"]),
        "ungrounded_share_before_check": _ratio(total["raw_ungrounded"], total["raw_sentences"]),
        "ungrounded_printed": total["printed_ungrounded"],
        "counts": total,
    }


def _item_line(item: ActionItem) -> str:
    return f"[{item.owner}, {item.due}] {item.task} ({item.source.start:.1f}-{item.source.end:.1f} s)"


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"
